"""Topic cues of the default taxonomy: each matches what it means and not the common words
that share its letters once folded (stems, accents, function words)."""

from __future__ import annotations

import pytest

from pipeline.tagging.tagger import Tagger, is_unspaced_script, load_taxonomy


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(load_taxonomy())


def _cue_topics(tagger: Tagger, text: str) -> set[str]:
    return {h.key.removeprefix("cue:") for h in tagger.find(text) if not h.entity}


def test_a_star_is_only_a_cues_last_character() -> None:
    # A star inside a cue is a literal character: "прав* человека" never matched anything.
    inner = [c for t in load_taxonomy().topics for c in t.cues + t.exclude if "*" in c.rstrip("*")]
    assert inner == []


def test_no_cue_of_chinese_japanese_or_korean_is_one_character_but_a_rare_one() -> None:
    # One character matches inside any word holding it: 核 in 核心 ("core"), 港 in 香港.
    allowed = {"铀", "钚", "娘", "딸", "妹"}  # uranium, plutonium; daughter; sister
    short = {
        c
        for t in load_taxonomy().topics
        for c in t.cues
        if is_unspaced_script(c) and len(c.rstrip("*")) == 1 and c not in allowed
    }
    assert short == set()


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("Gaza", "china-russia"),  # Polish gaz* (gas)
        ("gazeta", "china-russia"),
        ("газета", "china-russia"),  # Russian and Ukrainian газ*
        ("kolejny", "nk-russia"),  # Polish kolej* (railway): "next"
        ("stosunkowo", "us-nk"),  # Polish stosunk* (relations): "relatively"
        ("robot", "nk-cyber"),  # Spanish robo* (theft)
        ("Грузия", "russia-far-east"),  # Russian груз* (cargo): Georgia
        ("портфель", "russia-far-east"),  # порт* (port)
        ("наступного", "russia-ukraine-war"),  # Ukrainian наступ* (offensive): "next"
        ("наступний", "nk-leadership"),  # наступни* (successor)
        ("листопада", "us-nk"),  # Ukrainian лист* (letter): "November"
        ("письменник", "us-nk"),  # Russian письм* (letter): "writer"
        ("zbieg okoliczności", "nk-human-rights"),  # Polish zbieg* (fugitive): "coincidence"
        ("frente a", "russia-ukraine-war"),  # function words ("facing", "at the head of"), not the front
        ("à frente de", "russia-ukraine-war"),
        ("tuyên bố", "russia-far-east"),  # Vietnamese tuyến (route), folded
        ("càng", "russia-far-east"),  # cảng (port), folded
        ("thủ tướng", "us-nk"),  # thư (letter), folded
        ("lĩnh vực", "nk-troops-russia"),  # lính (soldier), folded
        ("về tình hình", "nk-missiles-nuclear"),  # vệ tinh (satellite), folded
        ("phòng thủ", "nk-missiles-nuclear"),  # phóng thử (test launch), folded
        ("핵심", "nk-missiles-nuclear"),  # 핵 (nuclear): "core"
        ("核心", "nk-missiles-nuclear"),
        ("香港", "russia-far-east"),  # 港 (port): Hong Kong
        ("高橋", "nk-russia"),  # 橋 (bridge): a surname
        ("便利", "russia-far-east"),  # 便 (flight): "convenient"
        ("военные учения", "nk-troops-russia"),  # any "military" is not troops sent to Russia
    ],
)
def test_a_cue_does_not_match_a_common_word_sharing_its_letters(
    tagger: Tagger, text: str, topic: str
) -> None:
    assert topic not in _cue_topics(tagger, text)


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("права человека", "nk-human-rights"),
        ("prawa człowieka", "nk-human-rights"),
        ("военной помощи", "arms-transfers"),
        ("ограничительных мер", "sanctions"),
        ("газопровод", "china-russia"),
        ("поставки газа", "china-russia"),
        ("kolejowy", "nk-russia"),
        ("stosunki", "us-nk"),
        ("sur le front", "russia-ukraine-war"),
        ("конфликт", "russia-ukraine-war"),
        ("핵실험", "nk-missiles-nuclear"),
        ("核兵器", "nk-missiles-nuclear"),
        ("核试验", "nk-missiles-nuclear"),
        ("vệ tinh do thám", "nk-missiles-nuclear"),
        ("bức thư", "us-nk"),
        ("cảng biển", "russia-far-east"),
        ("военнослужащих", "nk-troops-russia"),
    ],
)
def test_a_cue_still_matches_what_it_means(tagger: Tagger, text: str, topic: str) -> None:
    assert topic in _cue_topics(tagger, text)


def test_korean_peninsula_security_needs_more_than_any_us_mention(tagger: Tagger) -> None:
    rule = next(t for t in load_taxonomy().topics if t.id == "korean-peninsula-security")
    assert "country:US" not in rule.all_of[1], "Washington named beside Pyongyang and 'security' is not it"
    assert {"country:KR", "usfk", "pentagon"} <= set(rule.all_of[1])
