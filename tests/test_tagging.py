"""Tagging quality on hand-checked sentences in the languages the taxonomy covers."""

from __future__ import annotations

import pytest

from pipeline.tagging.tagger import (
    _RESIZING,
    Tagger,
    TaxonomyError,
    _fold_char,
    _fold_run,
    fold,
    fold_with_offsets,
    load_taxonomy,
    parse_taxonomy,
)


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(load_taxonomy())


def ids(tagger: Tagger, text: str) -> set[str]:
    return {e.id for e in tagger.tag("", text)[0]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sergueï Choïgou est arrivé.", {"sergei-shoigu"}),
        ("Serguei Choigou est arrivé.", {"sergei-shoigu"}),
        ("Sergej Schoigu traf ein.", {"sergei-shoigu"}),
        ("Szojgu przyjechał.", {"sergei-shoigu"}),
        ("쇼이구 장관이 도착했다.", {"sergei-shoigu"}),
        ("Kim Jong Un spoke.", {"kim-jong-un"}),
        ("Kim Jong-oun a parlé.", {"kim-jong-un"}),
        ("Ким Чен Ыном", {"kim-jong-un"}),
        ("金正恩出席", {"kim-jong-un"}),
        ("Pjöngjang", {"pyongyang"}),
        ("в Пхеньяне", {"pyongyang"}),
        ("평양에서", {"pyongyang"}),
        ("России и Россией", {"russia"}),
        ("Путиным", {"vladimir-putin"}),
        ("Rosji i Korei Północnej", {"russia", "north-korea"}),
        ("러시아와 북한은", {"russia", "north-korea"}),
        ("Vladimir Poutine", {"vladimir-putin"}),
    ],
)
def test_aliases_across_languages_and_inflections(tagger: Tagger, text: str, expected: set[str]) -> None:
    assert ids(tagger, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "A Kimono shop in Kyoto.",  # "Kim" is no alias; no partial word matches
        "Putinism is a term.",  # a non-stem English alias needs a word boundary
        "Prussian history.",  # "Russian" inside another word
        "Nga cafe menu.",  # the Vietnamese short form for Russia is not an alias
    ],
)
def test_no_matches_inside_other_words(tagger: Tagger, text: str) -> None:
    assert ids(tagger, text) == set()


def test_offsets_point_into_text(tagger: Tagger) -> None:
    text = "Today, Kim Jong-un met Sergei Shoigu."
    entities, _, _ = tagger.tag("Title without names", text)
    by_id = {e.id: e for e in entities}
    offset = by_id["sergei-shoigu"].first_offset
    assert offset is not None and text[offset:].startswith("Sergei Shoigu")
    title_only, _, _ = tagger.tag("Kim Jong-un", "No names here.")
    assert title_only[0].first_offset is None


def test_nk_russia_needs_both_sides_linked_in_one_paragraph(tagger: Tagger) -> None:
    roundup = (
        "North Korea held a party congress this week.\n"
        "In other news, Russia reported strong grain exports and talks with Brazil."
    )
    assert "nk-russia" not in {t.id for t in tagger.tag("World roundup", roundup)[1]}
    linked = "Russia and North Korea held talks on arms supplies in Pyongyang."
    topics = {t.id: t for t in tagger.tag("", linked)[1]}
    assert "nk-russia" in topics
    assert topics["nk-russia"].evidence == (linked,)  # the sentence stating the relation


def test_score_grows_with_supporting_paragraphs(tagger: Tagger) -> None:
    para = "Russia and North Korea held talks in Pyongyang."
    one = {t.id: t.score for t in tagger.tag("", para)[1]}["nk-russia"]
    three = {t.id: t.score for t in tagger.tag("", "\n".join([para] * 3))[1]}["nk-russia"]
    assert 0 < one < three <= 1


def test_taxonomy_errors_name_the_problem() -> None:
    with pytest.raises(TaxonomyError, match="missing key `version`"):
        parse_taxonomy({})
    with pytest.raises(TaxonomyError, match="unknown entity 'nobody'"):
        parse_taxonomy({"version": "1", "topics": [{"id": "t", "all_of": [["nobody"]]}]})
    with pytest.raises(TaxonomyError, match="type must be one of"):
        parse_taxonomy(
            {"version": "1", "entities": [{"id": "x", "type": "planet", "aliases": {"en": ["X"]}}]}
        )


def test_default_taxonomy_is_consistent() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.version
    assert len(taxonomy.entities) >= 150
    topic_ids = {t.id for t in taxonomy.topics}
    assert len(topic_ids) >= 15
    assert {"nk-russia", "russia-ukraine-war", "nk-missiles-nuclear", "sanctions"} <= topic_ids
    languages = {a.language for e in taxonomy.entities for a in e.aliases}
    assert {"en", "fr", "de", "es", "it", "pt", "pl", "ru", "uk", "ko", "ja", "zh", "vi"} <= languages


def test_tagger_survives_pickling(tagger: Tagger) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(tagger))
    text = "Putin met Kim Jong Un."
    assert clone.tag("", text) == tagger.tag("", text)


SMALL = {
    "version": "t1",
    "ignore": {"en": ["FC Seoul", "Kim Kardashian"]},
    "entities": [
        {
            "id": "kim-jong-un",
            "type": "person",
            "country": "KP",
            "aliases": {"en": ["Kim Jong Un"]},
            "weak_aliases": {"en": ["Kim"]},
        },
        {
            "id": "kim-yo-jong",
            "type": "person",
            "country": "KP",
            "aliases": {"en": ["Kim Yo Jong"]},
            "weak_aliases": {"en": ["Kim"]},
        },
        {"id": "seoul", "type": "place", "country": "KR", "aliases": {"en": ["Seoul"]}},
        {
            "id": "russia",
            "type": "country",
            "country": "RU",
            "aliases": {"vi": ["Liên bang Nga"]},
            "exact_aliases": {"vi": ["Nga"]},
        },
    ],
    "topics": [
        {
            "id": "seoul-politics",
            "all_of": [["seoul"]],
            "cues": {"en": ["election"]},
            "exclude": {"en": ["football", "goal*"]},
        }
    ],
}


@pytest.fixture(scope="module")
def small() -> Tagger:
    return Tagger(parse_taxonomy(SMALL))


def test_a_word_two_aliases_spell_is_one_mention(tagger: Tagger) -> None:
    # "Российский" is both "Росси*" and "российск*"; "Xi Jinping" a word and a stem.
    text = "Российский министр прибыл в Пекин. Си Цзиньпин и Xi Jinping. Минобороны России."
    entities = tagger.tag("", text)[0]
    assert {(e.id, e.mentions) for e in entities} >= {("russia", 2), ("xi-jinping", 2)}
    stems = parse_taxonomy(
        {
            "version": "t",
            "entities": [
                {
                    "id": "russia",
                    "type": "country",
                    "aliases": {"en": ["Russ*", "Russian", "Russian Federation"]},
                }
            ],
            "topics": [{"id": "visits", "all_of": [["russia"]], "cues": {"en": ["minist*", "minister"]}}],
        }
    )
    hits = Tagger(stems).find("The Russian minister. The Russian Federation.")
    assert [(h.key, h.start, h.end) for h in hits] == [
        ("russia", 4, 11),
        ("cue:visits", 12, 20),
        ("russia", 26, 44),  # the longer alias still wins over the stem inside it
    ]


def test_an_exact_alias_spelling_a_full_one_is_one_mention() -> None:
    twice = parse_taxonomy(
        {
            "version": "t",
            "entities": [
                {
                    "id": "russia",
                    "type": "country",
                    "aliases": {"vi": ["Nga"]},
                    "exact_aliases": {"vi": ["Nga"]},
                },
            ],
        }
    )
    assert [(e.id, e.mentions) for e in Tagger(twice).tag("", "Tổng thống Nga đã đến.", "vi")[0]] == [
        ("russia", 1)
    ]


def test_weak_alias_counts_only_beside_a_full_mention(small: Tagger) -> None:
    assert ids(small, "Kim scored twice for the national team.") == set()
    entities = small.tag("", "Kim Jong Un arrived. Later, Kim spoke.")[0]
    assert [(e.id, e.mentions) for e in entities] == [("kim-jong-un", 2)]


def test_weak_alias_shared_by_two_named_entities_is_dropped(small: Tagger) -> None:
    entities = small.tag("", "Kim Jong Un and Kim Yo Jong arrived. Kim spoke.")[0]
    assert {(e.id, e.mentions) for e in entities} == {("kim-jong-un", 1), ("kim-yo-jong", 1)}


def test_exact_alias_needs_case_accents_and_language(small: Tagger) -> None:
    def vi(text: str, language: str | None = "vi") -> set[str]:
        return {e.id for e in small.tag("", text, language)[0]}

    assert vi("Tổng thống Nga đã đến.") == {"russia"}
    assert vi("Ngà voi bị cấm buôn bán.") == set()  # ivory, not Russia
    assert vi("chim ngã xuống") == set()
    assert vi("nga") == set()
    assert vi("Tổng thống Nga đã đến.", "en") == set()


def test_ignore_phrase_shadows_the_alias_it_overlaps(small: Tagger) -> None:
    assert ids(small, "FC Seoul won at home.") == set()
    assert ids(small, "Kim Kardashian visited Seoul.") == {"seoul"}


def test_exclude_cue_vetoes_a_topic_in_its_passage(small: Tagger) -> None:
    def topics(text: str) -> set[str]:
        return {t.id for t in small.tag("", text)[1]}

    assert topics("Seoul votes in the mayoral election.") == {"seoul-politics"}
    assert topics("Seoul election day football final ends with a late goal.") == set()
    assert topics("Seoul votes in the election.\nA football match ended 1-0.") == {"seoul-politics"}


def test_taxonomy_refuses_unknown_keys_and_bad_countries() -> None:
    base = {"id": "x", "type": "place", "aliases": {"en": ["X"]}}
    with pytest.raises(TaxonomyError, match="unknown key `alias`"):
        parse_taxonomy({"version": "1", "entities": [{**base, "alias": {}}]})
    with pytest.raises(TaxonomyError, match="ISO 3166-1"):
        parse_taxonomy({"version": "1", "entities": [{**base, "country": "Korea"}]})
    with pytest.raises(TaxonomyError, match="weak_aliases.en"):
        parse_taxonomy({"version": "1", "entities": [{**base, "weak_aliases": {"en": "Kim"}}]})


def test_fold_keeps_offsets_when_a_character_widens(tagger: Tagger) -> None:
    text = "Straße ﬁnal: Sergei Shoigu arrived."
    entities = tagger.tag("", text)[0]
    offset = {e.id: e.first_offset for e in entities}["sergei-shoigu"]
    assert offset is not None and text[offset:].startswith("Sergei Shoigu")


@pytest.mark.parametrize(
    ("text", "russia"),
    [
        ("Tổng thống Nga Vladimir Putin phát biểu.", True),
        ("Tại Nga, giá dầu tăng.", True),
        ("Quan hệ giữa Việt Nam và Nga được củng cố.", True),
        ("Ca sĩ Thúy Nga ra mắt album mới.", False),  # a singer's given name
        ("Vận động viên Nguyễn Thị Nga giành huy chương vàng.", False),
        ("Công ty có địa chỉ tại huyện Nga Sơn, tỉnh Thanh Hóa.", False),  # a district, via [ignore]
    ],
)
def test_vietnamese_nga_is_russia_only_outside_a_longer_name(tagger: Tagger, text: str, russia: bool) -> None:
    assert ("russia" in {e.id for e in tagger.tag("", text, "vi")[0]}) is russia


PASSAGES = {
    "version": "t2",
    "entities": [
        {"id": "pyongyang", "type": "place", "country": "KP", "aliases": {"en": ["Pyongyang"]}},
        {"id": "moscow", "type": "place", "country": "RU", "aliases": {"en": ["Moscow"]}},
    ],
    "topics": [  # one cue shared by three topics of different scopes
        {"id": "para", "all_of": [["country:KP"], ["country:RU"]], "cues": {"en": ["talks"]}},
        {
            "id": "sent",
            "all_of": [["country:KP"], ["country:RU"]],
            "cues": {"en": ["talks"]},
            "scope": "sentence",
            "min_weight": 1,
        },
        {
            "id": "doc",
            "all_of": [["moscow", "country:KP"], ["pyongyang"]],
            "cues": {"en": ["talks"]},
            "scope": "document",
        },
        {
            "id": "sent-treaty",
            "all_of": [["country:KP"], ["country:RU"]],
            "cues": {"en": ["treaty"]},
            "exclude": {"en": ["football"]},
            "scope": "sentence",
            "min_weight": 1,
        },
    ],
}


@pytest.fixture(scope="module")
def passages() -> Tagger:
    return Tagger(parse_taxonomy(PASSAGES))


def scores(tagger: Tagger, text: str, title: str = "") -> dict[str, float]:
    return {t.id: t.score for t in tagger.tag(title, text)[1]}


def test_a_cue_shared_by_topics_counts_for_each(passages: Tagger) -> None:
    text = "Pyongyang and Moscow held talks."
    assert scores(passages, text) == {"para": 0.333, "sent": 0.5, "doc": 0.333}
    cues = [(h.key, text[h.start : h.end]) for h in passages.find(text) if not h.entity]
    assert cues == [("cue:doc", "talks"), ("cue:para", "talks"), ("cue:sent", "talks")]


def test_lead_is_the_first_non_blank_paragraph(passages: Tagger) -> None:
    linked = "Pyongyang and Moscow held talks."
    assert scores(passages, f"\n\n{linked}\nMore later.")["para"] == 0.333  # lead: weight 2
    # One passage outside the lead weighs 1: below `para`'s min_weight of 2.
    assert "para" not in scores(passages, f"An opening line.\n{linked}")
    assert scores(passages, f"An opening line.\n{linked}")["sent"] == 0.25
    # A linked title counts as lead too.
    assert scores(passages, f"Nothing here.\n{linked}", title="Pyongyang, Moscow talks")["para"] == 0.5


def test_sentence_scope_needs_both_sides_in_one_sentence(passages: Tagger) -> None:
    assert "sent" not in scores(passages, "Pyongyang waited. Moscow held talks.")
    assert "para" in scores(passages, "Pyongyang waited. Moscow held talks.")
    assert "sent" in scores(passages, "Pyongyang waited.Moscow held talks.")  # no space: one sentence


def test_an_exclusion_cue_vetoes_only_its_own_sentence(passages: Tagger) -> None:
    vetoed = "Pyongyang and Moscow signed a treaty after football."
    assert "sent-treaty" not in scores(passages, vetoed)
    # The paragraph holds the exclusion cue, yet its other sentence meets the rule.
    text = "Pyongyang and Moscow signed a treaty. Pyongyang and Moscow also played football."
    topic = next(t for t in passages.tag("", text)[1] if t.id == "sent-treaty")
    assert topic.evidence == ("Pyongyang", "Moscow", "treaty")
    assert "sent-treaty" in scores(passages, f"Moscow played football.\n{text}")


def test_document_scope_weighs_as_its_earliest_evidence(passages: Tagger) -> None:
    assert "doc" in scores(passages, "Pyongyang waited.\nLater.\nMoscow held talks.")
    assert "doc" not in scores(passages, "An opening line.\nPyongyang waited.\nMoscow held talks.")
    # Evidence: each group's first selector present, in the group's order (moscow before KP).
    topic = next(t for t in passages.tag("", "Pyongyang waited.\nMoscow held talks.")[1] if t.id == "doc")
    assert topic.evidence == ("Moscow", "Pyongyang", "talks")


@pytest.mark.parametrize(
    "text",
    [
        "Größe, Straße — ﬁnal",
        "İstanbul: Kim Jong-un and Шойгу",
        "ß",
        "ẞ at the start, Choïgou at the end: ß",
        "ǄǅǆĲ ½ Pjöngjang",
    ],
)
def test_fold_with_offsets_maps_each_folded_character_to_its_source(text: str) -> None:
    folded, offsets = fold_with_offsets(text)
    assert offsets is not None and len(offsets) == len(folded)
    # Character by character folding is the definition; the fast path must agree.
    assert folded == "".join(fold(c) for c in text)
    for i, source in enumerate(offsets):
        assert folded[i] in fold(text[source])
    assert offsets == sorted(offsets) and set(offsets) <= set(range(len(text)))


def test_fold_table_agrees_with_folding_by_regex_on_every_bmp_character() -> None:
    wrong = []
    for unit in range(0x10000):
        if 0xD800 <= unit <= 0xDFFF:
            continue
        c = chr(unit)
        expected = _fold_char(c) if _RESIZING.match(c) else _fold_run(c)
        if fold(c) != expected:
            wrong.append((hex(unit), fold(c), expected))
    assert wrong == []


def test_characters_beyond_the_bmp_fold_and_keep_offsets(tagger: Tagger) -> None:
    text = "🚀 Kim Jong-un a reçu Sergueï Choïgou à Pyongyang 🇰🇵"
    folded, offsets = fold_with_offsets(text)
    assert folded == "🚀 kim jong un a recu serguei choigou a pyongyang 🇰🇵"
    assert offsets is None and len(folded) == len(text)
    first = {e.id: e.first_offset for e in tagger.tag("", text)[0]}
    assert text[first["kim-jong-un"] :].startswith("Kim Jong-un")
    assert text[first["sergei-shoigu"] :].startswith("Sergueï Choïgou")
    assert text[first["pyongyang"] :].startswith("Pyongyang")


def test_rule_memos_stay_bounded_and_answer_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.tagging.tagger as tagging

    monkeypatch.setattr(tagging, "_MEMO_SIZE", 3)
    texts = [
        "Pyongyang and Moscow held talks.",
        "Pyongyang waited. Moscow held talks.",
        "Moscow signed a treaty with Pyongyang after football.",
        "Pyongyang and Moscow signed a treaty.\nMoscow held talks in Pyongyang.",
        "Moscow held talks.",
    ]
    bounded = Tagger(parse_taxonomy(PASSAGES))
    for _ in range(2):
        for text in texts:
            assert bounded.tag("", text) == Tagger(parse_taxonomy(PASSAGES)).tag("", text)
    memos = [bounded._rules.scopes, *bounded._rules.satisfied.values()]
    assert max(len(memo) for memo in memos) <= 3
    assert bounded._rules.scopes  # the memo was used, not bypassed
