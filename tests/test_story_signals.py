"""Story signatures and the same-story rule (pipeline/stories), on sentences written here.

The last test reads the labelled pairs (tests/eval/stories/pairs.jsonl) with the real
texts beside the project (../shared/realnews) and holds the rule's figures on the test
half to floors a little under what bench/stories_baseline.py measured, so a change that
costs linking quality fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pipeline.stories.evaluate import DEFAULT_PAIRS, linking_figures, load_pairs, rule_figures, split_pairs
from pipeline.stories.link import (
    MAX_GAP,
    THRESHOLD,
    Rarity,
    compare,
    evidence,
    linked,
    same_story,
    score,
    weigh,
)
from pipeline.stories.signals import (
    event_days,
    name_key,
    names,
    numbers,
    signature,
    terms,
)
from pipeline.tagging.evaluate import DEFAULT_REAL_TEXTS

# The real texts beside the project, as for tests/test_real_set.py: CI has them; without
# them these tests fail with "no such folder of real articles" rather than pass unchecked.
REALNEWS = DEFAULT_REAL_TEXTS

# Two reports of one invented event in two languages, and a report of another event.
EN_TITLE = "Dockers strike at the port of Gdansk, 1,250 workers walk out"
EN_TEXT = (
    "About 1,250 dock workers stopped work on Saturday at the port, the union leader "
    "Oleksandr Kovalenko said. Ships waited at anchor while managers from Hamburg flew in."
)
UK_TITLE = "У порту Гданська страйкують 1250 докерів"
UK_TEXT = (
    "У суботу роботу припинили 1 250 працівників порту, повідомив лідер профспілки "
    "Олександр Коваленко. Менеджери з Гамбурга прилетіли на переговори."
)
OTHER_TITLE = "City council approves a new tram line"
OTHER_TEXT = "The council voted 31 to 9 on Tuesday for a tram line to the airport, the mayor said."


def _sig(
    title: str, text: str, language: str, published: str | None, entities: tuple[str, ...] = ("poland",)
):
    return signature(title, text, language, published, entities)


# --- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latin", "others"),
    [
        ("Zelensky", ["Зеленський", "Зеленский", "Zełenski", "Zelenskyy"]),
        ("Trump", ["Трамп", "Трампа", "Trumpa", "Трампом"]),
        ("Tillerson", ["Тиллерсон", "Тіллерсон"]),
        ("Macron", ["Макрон", "Μακρόν", "Makron"]),
        ("Helsinki", ["Хельсинки", "Гельсінкі", "Helsinkach"]),
        ("Kovalenko", ["Коваленко"]),
    ],
)
def test_cyrillic_greek_and_inflected_names_share_the_key_of_the_latin_spelling(
    latin: str, others: list[str]
) -> None:
    assert name_key(latin) is not None
    for other in others:
        assert name_key(other) == name_key(latin), other


def test_different_names_keep_different_keys() -> None:
    keys = {name_key(n) for n in ("Trump", "Biden", "Macron", "Merkel", "Putin", "Tillerson")}
    assert len(keys) == 6
    assert name_key("Al") is None  # too short to mean anything


def test_names_skip_words_that_only_start_sentences() -> None:
    found = names("The mayor met Anna Novak in Lviv. Later the talks ended. Novak left.")
    assert {name_key("Anna"), name_key("Novak"), name_key("Lviv")} <= found
    assert name_key("The") not in found and name_key("Later") not in found
    assert not names("这是一个没有拉丁字母的句子。")  # no cased script, no names


# --- numbers -------------------------------------------------------------------------


def test_numbers_agree_across_digit_grouping_and_scale_words() -> None:
    assert numbers("1,723 people") == numbers("1.723 osób") == numbers("1 723 осіб") == {"1.72e+03"}
    assert numbers("136,000 marched") == numbers("13,6万人") == numbers("136 тис. людей") == {"1.36e+05"}
    assert numbers("1.5 million euros") == numbers("1,5 mln euro") == {"1.5e+06"}
    assert numbers("10.000 millones") == numbers("10 billion") == {"1e+10"}


def test_numbers_leave_out_years_times_small_counts_and_days_of_dates() -> None:
    assert not numbers("In 2018 at 19:24 they said 3 things on 8 December and on 12月8日.")
    assert numbers("Police counted 8000 people in 2019") == {"8e+03"}


# --- event days and the date gate ---------------------------------------------------------


def test_event_days_resolve_dates_and_weekdays_against_the_publication_date() -> None:
    monday = date(2018, 12, 10)
    saturday = date(2018, 12, 8).toordinal()
    assert event_days("Protesters marched on 8 December.", monday) == {saturday}
    assert event_days("Protesters marched on Saturday.", monday) == {saturday}
    assert event_days("Demonstranci wyszli w sobotę.", monday) == {saturday}
    assert event_days("示威者12月8日再次上街。周六", monday) == {saturday}
    assert event_days("The movement began on 17 November.", monday) == set()  # background, weeks back
    assert event_days("Protesters marched on Saturday.", None) == set()  # undated: nothing to resolve


def test_publication_dates_more_than_max_gap_apart_are_never_linked() -> None:
    a = _sig(EN_TITLE, EN_TEXT, "en", "2018-12-08")
    same_day = _sig(UK_TITLE, UK_TEXT, "uk", "2018-12-08")
    next_day = _sig(UK_TITLE, UK_TEXT, "uk", "2018-12-09")
    too_late = _sig(UK_TITLE, UK_TEXT, "uk", f"2018-12-{8 + MAX_GAP + 1:02d}")
    undated = _sig(UK_TITLE, UK_TEXT, "uk", None)
    assert same_story(a, same_day) > same_story(a, next_day) > 0
    assert same_story(a, too_late) == 0.0
    assert 0 < same_story(a, undated) < same_story(a, same_day)  # undated costs, but is not gated


# --- the rule --------------------------------------------------------------------------


def test_two_languages_reporting_one_event_are_linked_and_another_event_is_not() -> None:
    en = _sig(EN_TITLE, EN_TEXT, "en", "2018-12-08")
    uk = _sig(UK_TITLE, UK_TEXT, "uk", "2018-12-09")
    other = _sig(OTHER_TITLE, OTHER_TEXT, "en", "2018-12-08")
    e = evidence(en, uk)
    assert e.names > 0 and e.numbers > 0 and e.days == 1 and e.terms == 0.0  # names count across languages
    assert linked(en, uk)
    assert same_story(en, uk) >= THRESHOLD
    assert not linked(en, other)
    assert not linked(uk, other)


def test_terms_count_within_one_language_only() -> None:
    a = _sig(EN_TITLE, EN_TEXT, "en", "2018-12-08")
    b = _sig(EN_TITLE, EN_TEXT + " More ships arrived.", "en", "2018-12-08")
    assert evidence(a, b).terms > 0.9 and evidence(a, b).names == 0.0
    assert dict(terms("Strajk w porcie")) == {"strajk": 1.0, "porcie": 1.0}


def test_everything_is_deterministic_and_symmetric() -> None:
    args = (EN_TITLE, EN_TEXT, "en", "2018-12-08", ("poland", "germany"))
    first, second = signature(*args), signature(*args)
    assert first == second and hash(first) == hash(second)
    uk = _sig(UK_TITLE, UK_TEXT, "uk", "2018-12-09")
    other = _sig(OTHER_TITLE, OTHER_TEXT, "en", "2018-12-08")
    forward = Rarity.of([first, uk, other])
    backward = Rarity.of([other, uk, first])
    assert forward == backward
    assert same_story(first, uk, forward) == same_story(uk, first, backward)
    weighed = {id(s): weigh(s, forward) for s in (first, uk)}
    assert score(weighed[id(first)], weighed[id(uk)]) == same_story(first, uk, forward)
    assert compare(weighed[id(first)], weighed[id(uk)]) == evidence(first, uk, forward)


def test_entities_accept_the_taggers_mentions_and_weigh_the_lead_more() -> None:
    class Mention:  # what the tagger returns: schemas.records.EntityMention
        def __init__(self, id: str, mentions: int, first_offset: int | None) -> None:
            self.id, self.mentions, self.first_offset = id, mentions, first_offset

    sig = signature("t", "x" * 2000, "en", None, [Mention("france", 3, 10), Mention("iran", 1, 1500)])
    weights = dict(sig.entities)
    assert weights["france"] > weights["iran"] > 0
    assert dict(signature("t", "x", "en", None, ["france"]).entities) == {"france": 2.0}


# --- the labelled pairs -----------------------------------------------------------------


def test_the_split_keeps_related_pairs_together_and_is_balanced() -> None:
    pairs = load_pairs(DEFAULT_PAIRS)
    split = split_pairs(pairs)
    assert split == split_pairs(list(pairs))
    assert abs(split.count("dev") - split.count("test")) <= 10
    half_of: dict[tuple[str, str], str] = {}
    for p, half in zip(pairs, split, strict=True):
        for article in (p["a"], p["b"]):
            assert half_of.setdefault((p["candidate"], article), half) == half


def test_rule_figures_on_the_test_half_of_the_real_pairs() -> None:
    figures = rule_figures(REALNEWS, DEFAULT_PAIRS)
    test = figures["test"]
    assert (test.same_total, test.cross_total, test.different_total) == (35, 23, 95)
    # measured 2026-12-08 at THRESHOLD 0.7: same-language 26/35 = 0.74, cross-language
    # 17/23 = 0.74, different stories linked 4/95 = 0.042 (all pairs: 48/59, 37/52, 8/195);
    # the floors allow about two pairs of slack for changes elsewhere (the tagger's entities)
    assert test.recall_same >= 0.68
    assert test.recall_cross >= 0.65
    assert test.different_rate <= 0.07
    every = figures["all"]
    assert every.recall_same >= 0.75 and every.recall_cross >= 0.65 and every.different_rate <= 0.06
    assert json.dumps(figures["dev"].__dict__)  # plain numbers only


def test_newsbeam_eval_stories_prints_pair_precision_and_recall_per_split(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    cli = [sys.executable, "-m", "pipeline.cli", "eval", "--stories"]
    done = subprocess.run([*cli, "--split", "test"], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| test | pair rule |")]
    assert len(rows) == 1, done.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    recall_same, recall_cross, different = (float(cells[i].split()[0]) for i in (3, 5, 6))
    assert recall_same >= 0.68 and recall_cross >= 0.65 and different <= 0.07, rows[0]
    missing = subprocess.run([*cli, "--texts", str(tmp_path)], cwd=root, capture_output=True, text=True)
    assert missing.returncode == 2 and "no text in" in missing.stderr


def test_stories_built_from_the_pairs_articles_keep_most_same_story_pairs_together() -> None:
    _, stories = linking_figures(REALNEWS, DEFAULT_PAIRS)
    every = stories["all"]
    # measured 2026-12-08: 50/59 same-language and 41/52 cross-language same-story pairs in
    # one story, 16/195 different-story pairs too (single links chain a week of reports)
    assert every.recall_same >= 0.80 and every.recall_cross >= 0.72
    assert every.different_rate <= 0.10
