"""Quality floors on the labelled evaluation set (tests/eval/tagging).

The floors sit a little under what the default taxonomy measures (`newsbeam
eval --split all`), so a taxonomy or engine change that costs quality fails here.
"""

from __future__ import annotations

import pytest

from pipeline.tagging.evaluate import Report, evaluate, load_eval_set
from pipeline.tagging.tagger import Tagger, load_taxonomy


@pytest.fixture(scope="module")
def report() -> Report:
    return evaluate(Tagger(load_taxonomy()), load_eval_set())


def test_nk_russia_f1_floor(report: Report) -> None:
    nk_russia = report.by_topic["nk-russia"]
    assert nk_russia.tp + nk_russia.fn >= 60  # the set still has its positives
    assert nk_russia.f1 >= 0.92, (nk_russia.precision, nk_russia.recall)


def test_all_topics_micro_f1_floor(report: Report) -> None:
    micro = report.micro()
    assert micro.f1 >= 0.80, (micro.precision, micro.recall)


def test_every_default_topic_is_found_somewhere(report: Report) -> None:
    assert len(report.by_topic) >= 15
    assert all(counts.tp > 0 for counts in report.by_topic.values())


def test_hard_negative_entities_stay_untagged(report: Report) -> None:
    forbidden = [m for m in report.mistakes if m.kind == "forbidden_entity"]
    assert len(forbidden) <= 1, forbidden
    assert report.entities.recall >= 0.92


def test_evaluate_counts_each_decision(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        '{"id": "en-1", "language": "en", "split": "dev", "title": "Putin meets Kim Jong Un",'
        ' "text": "Russia and North Korea held talks in Pyongyang.", "topics": ["nk-russia"],'
        ' "entities": ["vladimir-putin", "xi-jinping"], "not_entities": ["kim-jong-un"]}',
        '{"id": "en-2", "language": "en", "split": "test", "title": "Weather",'
        ' "text": "Rain in Lyon.", "topics": ["nk-russia"]}',
    ]
    (tmp_path / "en.jsonl").write_text("\n".join(rows), encoding="utf-8")
    report = evaluate(Tagger(load_taxonomy()), load_eval_set(tmp_path))
    counts = report.by_topic["nk-russia"]
    assert (counts.tp, counts.fp, counts.fn) == (1, 0, 1)
    assert counts.precision == 1.0 and counts.recall == 0.5
    assert (report.entities.tp, report.entities.fn, report.entities.fp) == (1, 1, 1)
    assert len(load_eval_set(tmp_path, "test")) == 1
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_eval_set(tmp_path)
