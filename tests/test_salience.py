"""Bilateral topics that are bilateral: salience features, the calibrated score, its data."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.tagging.calibrate import best_threshold, fit, without_calibration
from pipeline.tagging.salience import FEATURES, Calibration
from pipeline.tagging.tagger import Tagger, load_taxonomy
from pipeline.tagging.taxonomy import TaxonomyError, parse_taxonomy
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(load_taxonomy())


@pytest.fixture(scope="module")
def uncalibrated() -> Tagger:
    return Tagger(without_calibration(load_taxonomy(), "nk-russia"))


def _topics(tagger: Tagger, title: str, text: str, language: str | None = None) -> set[str]:
    return {t.id for t in tagger.tag(title, text, language)[1]}


LISTS = [
    (
        "en",
        "Sanctions",
        "Washington announced measures against Russia, Iran and North Korea after talks in Brussels.",
    ),
    (
        "fr",
        "Sanctions",
        "Washington vise la Russie, l'Iran et la Corée du Nord après des entretiens à Bruxelles.",
    ),
    ("ru", "Санкции", "Конгресс США одобрил санкции против России, Ирана и КНДР после переговоров в сенате."),
]


@pytest.mark.parametrize(("language", "title", "text"), LISTS)
def test_a_list_of_states_is_no_relation(
    tagger: Tagger, uncalibrated: Tagger, language: str, title: str, text: str
) -> None:
    assert "nk-russia" in _topics(uncalibrated, title, text, language), "the bare rule fires on it"
    assert "nk-russia" not in _topics(tagger, title, text, language)
    found = tagger.salience(title, text, "nk-russia", language)
    assert found["list_share"] == 1.0 and found["relation_sentences"] == 0.0


def test_a_passing_mention_deep_in_a_long_article_is_not_the_topic(
    tagger: Tagger, uncalibrated: Tagger
) -> None:
    body = "\n".join(
        [f"Paragraph {n} of a long analysis of Japan's economy, exports and the yen." for n in range(12)]
        + ["Elsewhere, Russia and North Korea held talks, analysts noted.", "The yen fell again on Friday."]
    )
    assert "nk-russia" in _topics(uncalibrated, "Japan's economy", body)
    assert "nk-russia" not in _topics(tagger, "Japan's economy", body)


def test_a_reported_relation_is_kept_with_its_sentences_as_evidence(tagger: Tagger) -> None:
    lead = (
        "Vladimir Putin and Kim Jong Un signed a treaty on strategic partnership in Pyongyang on Wednesday."
    )
    text = f"{lead}\nThe treaty commits Russia and North Korea to mutual assistance."
    [match] = [t for t in tagger.tag("Putin and Kim sign treaty", text)[1] if t.id == "nk-russia"]
    assert match.score >= 0.9
    assert match.evidence[0] == "Putin and Kim sign treaty"
    assert lead in match.evidence


def test_features_are_bounded_and_named(tagger: Tagger) -> None:
    found = tagger.salience("", "Russia and North Korea held talks in Pyongyang.", "nk-russia")
    assert tuple(found) == FEATURES
    assert 0 <= found["pair_share"] <= 1 and 0 <= found["list_share"] <= 1
    with pytest.raises(ValueError, match="not a bilateral topic"):
        tagger.salience("", "text", "nk-leadership")


def test_the_logistic_layer_scores_and_thresholds() -> None:
    calibration = Calibration(bias=-1.0, weights={"title_pair": 2.0}, threshold=0.5)
    assert calibration.score({"title_pair": 0.0}) == pytest.approx(0.2689, abs=1e-4)
    assert calibration.score({"title_pair": 1.0}) == pytest.approx(0.7311, abs=1e-4)
    assert 0.0 < calibration.score({"title_pair": 1e9}) <= 1.0  # no overflow


def test_fit_separates_separable_data_and_picks_the_best_threshold() -> None:
    import numpy as np

    x = np.array([[0.0], [0.1], [0.2], [0.8], [0.9], [1.0]])
    y = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    bias, weights = fit(x, y, l2=0.1)
    scores = 1 / (1 + np.exp(-(bias + x @ weights)))
    assert weights[0] > 0 and scores[:3].max() < 0.5 < scores[3:].min()
    threshold, f1 = best_threshold(scores, y, missed=0)
    assert f1 == 1.0 and scores[:3].max() < threshold <= scores[3:].min()
    assert best_threshold(scores, y, missed=3)[1] == pytest.approx(2 * 3 / (2 * 3 + 3))


def _bilateral(calibration: object, groups: list[list[str]] | None = None) -> dict[str, object]:
    topic = {"id": "t", "all_of": groups or [["country:KP"], ["country:RU"]], "calibration": calibration}
    return {"version": "1", "topics": [topic]}


@pytest.mark.parametrize(
    ("calibration", "groups", "problem"),
    [
        ({"bias": 0, "threshold": 0.5, "weights": {}}, [["country:KP"]], "needs a bilateral rule"),
        ({"bias": 0, "threshold": 0.5}, None, "must be a table of"),
        ({"bias": 0, "threshold": 1.5, "weights": {}}, None, "between 0 and 1"),
        ({"bias": float("nan"), "threshold": 0.5, "weights": {}}, None, "finite number"),
        ({"bias": 0, "threshold": 0.5, "weights": {"length": 1}}, None, "keys must be among"),
    ],
)
def test_calibration_data_is_checked(
    calibration: object, groups: list[list[str]] | None, problem: str
) -> None:
    with pytest.raises(TaxonomyError, match=problem):
        parse_taxonomy(_bilateral(calibration, groups))


def test_the_default_taxonomy_calibrates_nk_russia() -> None:
    [rule] = [t for t in load_taxonomy().topics if t.id == "nk-russia"]
    assert rule.calibration is not None and set(rule.calibration.weights) == set(FEATURES)
    stripped = without_calibration(load_taxonomy(), "nk-russia")
    assert dataclasses.replace(rule, calibration=None) in stripped.topics


def _newsbeam_tag(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "tag", *args],
        input=stdin,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_newsbeam_tag_explain_shows_why_a_topic_was_kept_or_not() -> None:
    listed = (
        "EU sanctions\nThe EU extended sanctions on Russia, Iran and North Korea after talks in Brussels.\n"
    )
    done = _newsbeam_tag("--explain", "--language", "en", stdin=listed)
    assert done.returncode == 0, done.stderr
    assert "nk-russia: calibrated score" in done.stdout and "(not kept)" in done.stdout
    assert re.search(r"^  list_share\s+1\.000 x ", done.stdout, re.M)
    assert "topics:\n  none" in done.stdout or "  nk-russia  score" not in done.stdout

    treaty = "Vladimir Putin and Kim Jong Un signed a treaty in Pyongyang."
    done = _newsbeam_tag("--explain", "--title", "Putin and Kim sign treaty", stdin=treaty)
    assert "(kept)" in done.stdout and f"    - {treaty}" in done.stdout


def test_newsbeam_tag_prints_json_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "article.txt"
    path.write_text(
        "Kim Jong Un receives Sergei Shoigu\nKim Jong Un and Sergei Shoigu discussed military cooperation.\n",
        encoding="utf-8",
    )
    done = _newsbeam_tag(str(path), stdin="")
    tagged = json.loads(done.stdout)
    assert {e["id"] for e in tagged["entities"]} >= {"kim-jong-un", "sergei-shoigu"}
    assert "nk-russia" in {t["id"] for t in tagged["topics"]}
    missing = _newsbeam_tag(str(tmp_path / "absent.txt"), stdin="")
    assert missing.returncode == 2 and "absent.txt" in missing.stderr
