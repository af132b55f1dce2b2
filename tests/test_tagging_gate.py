"""The salience gate of topics without a calibration: its data, its features, what it keeps."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from pipeline.tagging.calibrate import best_mean_threshold, gate_examples, without_gates
from pipeline.tagging.evaluate import LabelledArticle
from pipeline.tagging.salience import GATE_FEATURES, Calibration
from pipeline.tagging.tagger import Tagger, load_taxonomy
from pipeline.tagging.taxonomy import TaxonomyError, digest, parse_taxonomy
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(load_taxonomy())


@pytest.fixture(scope="module")
def ungated() -> Tagger:
    return Tagger(without_gates(load_taxonomy()))


def _topics(tagger: Tagger, title: str, text: str, language: str | None = "en") -> dict[str, Any]:
    return {t.id: t for t in tagger.tag(title, text, language)[1]}


GATE = {"bias": -1.0, "threshold": 0.5, "weights": {"title": 3.0}}
ENTITIES = [{"id": "pyongyang", "type": "place", "country": "KP", "aliases": {"en": ["Pyongyang"]}}]


def _taxonomy(topic: dict[str, Any], gate: object = GATE) -> dict[str, Any]:
    rule = {"id": "t", "all_of": [["country:KP"]], "cues": {"en": ["missile"]}, "min_weight": 1, **topic}
    data: dict[str, Any] = {"version": "1", "entities": ENTITIES, "topics": [rule]}
    if gate is not None:
        data["gate"] = gate
    return data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_taxonomy({}, gate={"bias": 0, "threshold": 0.5}), "must be a table of"),
        (_taxonomy({}, gate={"bias": 0, "threshold": 1.0, "weights": {}}), "between 0 and 1"),
        (_taxonomy({}, gate={"bias": 0, "threshold": 0.5, "weights": {"mentions": 1}}), "keys must be among"),
        (_taxonomy({"gate": {"bias": "x", "threshold": 0.5, "weights": {}}}), "finite number"),
        (
            _taxonomy(
                {
                    "all_of": [["country:KP"], ["country:KP"]],
                    "calibration": {"bias": 0, "threshold": 0.5, "weights": {}},
                    "gate": GATE,
                }
            ),
            "a calibrated topic takes no `gate`",
        ),
    ],
)
def test_gate_data_is_checked(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(TaxonomyError, match=problem):
        parse_taxonomy(data)


def test_the_taxonomys_gate_is_every_uncalibrated_topics_unless_it_has_its_own_or_none() -> None:
    own = {"bias": 0.0, "threshold": 0.3, "weights": {"weight": 1.0}}
    data = _taxonomy({})
    data["topics"] += [
        {**data["topics"][0], "id": "own", "gate": own},
        {**data["topics"][0], "id": "none", "gate": False},
    ]
    gates = {t.id: t.gate for t in parse_taxonomy(data).topics}
    assert gates["t"] == Calibration(bias=-1.0, weights={"title": 3.0}, threshold=0.5)
    assert gates["own"] == Calibration(bias=0.0, weights={"weight": 1.0}, threshold=0.3)
    assert gates["none"] is None
    default = load_taxonomy()
    assert default.gate is not None and set(default.gate.weights) == set(GATE_FEATURES)
    for topic in default.topics:
        assert topic.gate == (None if topic.calibration else default.gate), topic.id


def test_a_taxonomy_without_gates_digests_as_before_they_existed() -> None:
    plain = parse_taxonomy(_taxonomy({}, gate=None))
    before = hashlib.sha256(repr(dataclasses.replace(plain, source="")).encode("utf-8")).hexdigest()[:16]
    assert digest(plain) == before
    assert digest(parse_taxonomy(_taxonomy({}))) != before, (
        "a gate changes the rules: the version must change"
    )


def test_a_gate_keeps_or_drops_a_topic_and_scores_it() -> None:
    gated = Tagger(parse_taxonomy(_taxonomy({})))
    plain = Tagger(parse_taxonomy(_taxonomy({}, gate=None)))
    body = "Pyongyang tested a missile."
    assert set(_topics(plain, "", body)) == {"t"}
    assert set(_topics(gated, "", body)) == set(), "no title: 1 / (1 + e) is below 0.5"
    [match] = gated.tag("Pyongyang missile test", body)[1]
    assert match.score == round(1 / (1 + np.exp(-2.0)), 3)
    assert match.evidence == ("Pyongyang", "missile"), "the spans of the first supporting passage"


PADDING = [
    f"Paragraph {n} of a long analysis of Japan's economy: exports, wages, the yen and what the "
    "central bank may do next, with the views of economists, exporters and shop owners." * 2
    for n in range(20)
]


def test_a_passing_mention_deep_in_a_long_article_is_gated(tagger: Tagger, ungated: Tagger) -> None:
    mention = "Elsewhere, North Korea fired a ballistic missile. North Korea's missile flew 600 km."
    body = "\n".join([*PADDING[:16], mention, *PADDING[16:]])
    assert "nk-missiles-nuclear" in _topics(ungated, "Japan's economy", body), "the bare rule fires on it"
    assert "nk-missiles-nuclear" not in _topics(tagger, "Japan's economy", body)


@pytest.mark.parametrize(
    ("language", "title", "text", "topic"),
    [
        (
            "en",
            "North Korea fires ballistic missile into the sea",
            "North Korea fired a ballistic missile into the sea on Wednesday, state media said.",
            "nk-missiles-nuclear",
        ),
        (
            "ko",
            "북한, 탄도미사일 발사",
            "북한이 동해상으로 탄도미사일을 발사했다고 보도했다.",
            "nk-missiles-nuclear",
        ),
        (
            "en",
            "Xi Jinping and Vladimir Putin hold talks in Beijing",
            "China and Russia signed a gas pipeline deal after talks in Beijing.",
            "china-russia",
        ),
        (
            "fr",
            "Sanctions",
            "Les États-Unis ont annoncé de nouvelles sanctions contre la Corée du Nord.\n"
            "Les sanctions visent des banques nord-coréennes.",
            "sanctions",
        ),
    ],
)
def test_a_short_report_on_the_topic_is_kept_with_its_gate_score(
    tagger: Tagger, language: str, title: str, text: str, topic: str
) -> None:
    match = _topics(tagger, title, text, language)[topic]
    rule = next(t for t in tagger.taxonomy.topics if t.id == topic)
    assert rule.gate is not None
    features = tagger.gate_salience(title, text, language)[topic]
    assert match.score == round(rule.gate.score(features), 3) >= rule.gate.threshold
    assert match.evidence and all(span in f"{title}\n{text}" for span in match.evidence)


def test_gate_features_are_named_and_bounded(tagger: Tagger) -> None:
    twice = "North Korea fired a missile. North Korea's missile fell into the sea."
    body = "\n".join([*PADDING[:3], twice, *PADDING[3:6]])
    found = tagger.gate_salience("Economy", body, "en")
    assert set(found) == {"nk-missiles-nuclear"}, "calibrated topics have no gate features"
    features = found["nk-missiles-nuclear"]
    assert tuple(features) == GATE_FEATURES
    assert features["title"] == 0.0 and features["lead"] == 0.0
    assert 0.0 < features["first"] < 1.0 and features["share"] == pytest.approx(1 / 7)
    assert features["weight"] == pytest.approx(np.log(2)) == pytest.approx(features["passages"])
    assert features["length"] == pytest.approx(np.log1p(len(f"Economy\n{body}") / 1000))


def test_the_gate_threshold_is_the_best_mean_of_the_two_sets() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.9, 0.6, 0.4])
    y = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    sets = np.array(["real"] * 4 + ["written"] * 3)
    threshold, mean = best_mean_threshold(scores, y, sets, {"real": 0, "written": 0})
    # real is perfect from 0.31 to 0.80; written needs 0.4 kept and 0.6 dropped, which it cannot
    # have: keeping all three (F1 0.8) beats any cut above 0.4 (0.667).
    assert 0.31 <= threshold <= 0.40 and mean == pytest.approx((1.0 + 0.8) / 2)


def test_gate_examples_are_the_pairs_where_an_ungated_topic_fires(ungated: Tagger) -> None:
    def article(n: int, title: str, text: str, topics: set[str]) -> LabelledArticle:
        return LabelledArticle(f"a-{n}", "en", "dev", title, text, frozenset(topics))

    sets = {
        "written": [
            article(1, "North Korea fires missile", "North Korea fired a missile.", {"nk-missiles-nuclear"})
        ],
        "real": [
            article(2, "Weather", "Rain in Lyon.", {"nk-cyber"}),
            article(3, "North Korea fires missile", "North Korea fired a missile.", set()),
        ],
    }
    x, y, names, topics, missed = gate_examples(ungated, sets)
    assert x.shape == (2, len(GATE_FEATURES))
    assert list(y) == [1.0, 0.0] and list(names) == ["written", "real"]
    assert list(topics) == ["nk-missiles-nuclear"] * 2
    assert missed == {"written": 0, "real": 1}


def test_newsbeam_tag_explain_shows_the_gate() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "tag", "--explain", "--language", "en"],
        input="North Korea fires ballistic missile\nNorth Korea fired a ballistic missile into the sea.\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "nk-missiles-nuclear: gate score" in done.stdout and "(kept)" in done.stdout
    assert "  length " in done.stdout and "  title " in done.stdout
