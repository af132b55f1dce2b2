"""A per-article story signature: what two reports of one event tend to share.

`signature(title, text, language, published, entities)` is computed once per article
from what the pipeline already has (the tagger's entities included). All but the
entities are read from the title and lead (the first `LEAD_CHARS` characters of the
body), where a report says what happened:

- `entities`: taxonomy entity ids, weighted by salience (1 + ln mentions, doubled when
  the title or lead names them). Language-independent by construction.
- `names`: capitalised words in Latin, Cyrillic or Greek script that occur other than
  at the start of a sentence, transliterated to ASCII (`anyascii`) and reduced to a
  spelling-tolerant key (`name_key`): "Зеленський", "Zełenski" and "Zelensky" share
  one, as do the inflected "Trumpa"/"Трампа" and "Trump". Chinese, Japanese and
  Korean have no case to find names by; there only the taxonomy, numbers and dates link.
- `numbers`: counts and amounts (≥ 10), normalised to 3 significant digits across
  digit grouping and scale words ("136,000" = "136 000" = "13,6万" = "13.6万";
  "1.5 million" = "1,5 mln"); years, times and the days of dates are left out.
- `days`: event days: dates ("8 December", "8 grudnia", "12月8日", "ngày 8/12") and
  weekdays ("Saturday", "w sobotę", "周六") resolved against the publication date
  (about a week back, a day or two ahead). Empty when undated.
- `terms`: language-specific terms (6-letter word prefixes; character bigrams for
  Chinese and Japanese), compared only between articles of one language.

Pure and deterministic: no model, nothing downloaded, no state besides a bounded
cache of name keys.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import repeat
from typing import Any

from anyascii import anyascii

__all__ = [
    "LEAD_CHARS",
    "StorySignature",
    "event_days",
    "name_key",
    "names",
    "numbers",
    "signature",
    "terms",
]

# Everything is read from the title and the first LEAD_CHARS characters of the body:
# what happened is said there, the rest is background (earlier events, other figures).
# On the labelled pairs this separates better than the full text (and costs a third).
LEAD_CHARS = 600
DATE_BACK, DATE_AHEAD = 7, 2  # days a named date may lie before/after publication
WEEKDAY_BACK, WEEKDAY_AHEAD = 5, 1  # a 7-day window: each weekday names exactly one day


@dataclass(frozen=True, slots=True)
class StorySignature:
    """What `pipeline.stories.link` compares. Immutable; equal inputs give equal signatures."""

    language: str | None
    day: int | None  # publication date as a proleptic ordinal (date.toordinal), None if undated
    entities: tuple[tuple[str, float], ...]  # (entity id, salience weight), sorted by id
    names: frozenset[str]
    numbers: frozenset[str]
    days: frozenset[int]  # event days as ordinals
    terms: tuple[tuple[str, float], ...]  # (term, 1 + ln count), in order of first occurrence


# --- names -------------------------------------------------------------------------

# A word starting with a letter of a cased script (Latin with its extensions and
# Vietnamese, Greek, Cyrillic) that may be a capital; `names` checks that it is one.
_CAPITALISED = re.compile(
    r"(?<![^\W\d_])[A-Z\u00c0-\u00de\u0100-\u024f\u0370-\u03ff\u0400-\u042f\u0460-\u052f\u1e00-\u1fff]"
    r"[^\W\d_]*(?:['’][^\W\d_]+)*"
)
# The same words where they start a sentence (or the text): after . ! ? … : ; or a
# line break, and perhaps quotes, brackets, dashes or bullets.
_SENTENCE_START = re.compile(
    r"(?:^|[.!?…:;\n\r])[\s\"'«»„“”‘’()\[\]\-–—*•]*(" + _CAPITALISED.pattern[len(r"(?<![^\W\d_])") :] + ")"
)
# Case endings of Slavic names (transliterated), longest first: Trumpa, Trampom, Bidenem.
_ENDING_WORDS = "owie ami ach ego emu owi ov ow om em im ym iv ykh ikh ah am ie ei ej iu ia ii yi iy"
_ENDINGS = tuple(sorted(_ENDING_WORDS.split(), key=len, reverse=True))
_SOUNDS = (
    ("shch", "s"),
    ("szcz", "s"),
    ("sch", "s"),
    ("dzh", "g"),
    ("zh", "z"),
    ("kh", "h"),
    ("ch", "h"),
    ("sh", "s"),
    ("sz", "s"),
    ("cz", "c"),
    ("ts", "c"),
    ("tz", "c"),
    ("rz", "z"),
    ("ph", "f"),
    ("ck", "k"),
    ("x", "ks"),
    ("w", "v"),
    ("q", "k"),
    ("j", "i"),
    ("y", "i"),
    ("g", "h"),
)
_NOT_ASCII_LETTER = re.compile(r"[^a-z]")
_HARD_C = re.compile(r"c(?=[aoulr]|$)")
_VOWELS = re.compile(r"[aeiou]")
_DOUBLED = re.compile(r"(.)\1+")


@lru_cache(maxsize=65536)
def name_key(word: str) -> str | None:
    """A spelling-tolerant key of one name: transliterated to ASCII, a case ending
    dropped, sounds that scripts spell differently merged (kh/ch/h, sz/sh/s, w/v,
    j/y/i, g/h), then the first letter and the consonants (at most 5 letters).
    None for words shorter than 3 letters or keys shorter than 3."""
    s = _NOT_ASCII_LETTER.sub("", anyascii(word).lower())
    if len(s) < 3:
        return None
    for ending in _ENDINGS:
        if len(s) - len(ending) >= 4 and s.endswith(ending):
            s = s[: -len(ending)]
            break
    for spelled, sound in _SOUNDS:
        s = s.replace(spelled, sound)
    s = _HARD_C.sub("k", s)
    key = _DOUBLED.sub(r"\1", s[0] + _VOWELS.sub("", s[1:]))[:5]
    if len(key) < 3:  # short names (Kyiv, Iran): the merged spelling, vowels kept
        key = _DOUBLED.sub(r"\1", s)[:5]
    return key if len(key) >= 3 else None


def names(text: str) -> frozenset[str]:
    """Keys of the capitalised words of cased scripts that occur at least once other
    than at the start of a sentence (where any word is capitalised)."""
    counts = Counter(_CAPITALISED.findall(text))
    counts.subtract(_SENTENCE_START.findall(text))
    keys = (name_key(w) for w, n in counts.items() if n > 0 and w[0].isupper())
    return frozenset(k for k in keys if k)


# --- dates ---------------------------------------------------------------------------

_MONTH_WORDS = (
    "january jan enero janvier januar gennaio janeiro stycznia styczeń января январь січня січень",
    "february feb febrero février fevrier februar febbraio fevereiro lutego luty февраля февраль "
    "лютого лютий",
    "march mar marzo mars märz marz março marca marzec марта март березня березень",
    "april apr abril avril aprile kwietnia kwiecień апреля апрель квітня квітень",
    "may mayo mai maggio maio maja maj мая май травня травень",
    "june jun junio juin juni giugno junho czerwca czerwiec июня июнь червня червень",
    "july jul julio juillet juli luglio julho lipca lipiec июля июль липня липень",
    "august aug agosto août aout sierpnia sierpień августа август серпня серпень",
    "september sep sept septiembre septembre settembre setembro września wrzesień сентября сентябрь "
    "вересня вересень",
    "october oct octubre octobre oktober ottobre outubro października październik октября октябрь "
    "жовтня жовтень",
    "november nov noviembre novembre novembro listopada listopad ноября ноябрь листопада листопад",
    "december dec diciembre décembre decembre dezember dicembre dezembro grudnia grudzień декабря декабрь "
    "грудня грудень",
)
_MONTHS = {w: n for n, words in enumerate(_MONTH_WORDS, start=1) for w in words.split()}
_DIGITS = re.compile(r"\d+")
_THEN_MONTH = re.compile(
    r"(?:st|nd|rd|th|er|º|\.)?\s{1,3}(?:de\s+)?([^\W\d_]+)"
)  # 8 December, 8 de diciembre
_MONTH_BEFORE = re.compile(r"([^\W\d_]+)\.?\s{1,3}$")  # December 8
_NOT_MONTH_DAY = re.compile(r"(?:st|nd|rd|th)?[\d:,.]\d")  # December 2018, Dec 8,000
_CJK_THEN_DAY = re.compile(r"\s*[月월]\s*(\d{1,2})\s*[日号號일]")  # 12月8日, 12월 8일
_VI_THEN_MONTH = re.compile(r"\s*/\s*(\d{1,2})(?![\d/])|\s+tháng\s+(\d{1,2})(?!\d)", re.IGNORECASE)
_VI_DAY_WORD = re.compile(r"ngày\s+$", re.IGNORECASE)
_THEN_MONTH_YEAR = re.compile(r"\.(\d{1,2})\.((?:19|20)\d\d)(?!\d)")  # 08.12.2018
_THEN_ISO = re.compile(r"-(\d\d)-(\d\d)(?!\d)")  # 2018-12-08

_WEEKDAY_WORDS = (
    "monday lunes lundi montag lunedì segunda-feira poniedziałek понедельник понеділок понеділка",
    "tuesday martes mardi dienstag martedì terça-feira wtorek wtorku вторник вівторок вівторка",
    "wednesday miércoles miercoles mercredi mittwoch mercoledì quarta-feira środa środę среда среду "
    "середа середу",
    "thursday jueves jeudi donnerstag giovedì quinta-feira czwartek czwartku четверг четвер четверга",
    "friday viernes vendredi freitag venerdì sexta-feira piątek piątku пятница пятницу п'ятниця п'ятницю "
    "п’ятниця п’ятницю",
    "saturday sábado sabado samedi samstag sabato sobota sobotę субботу суббота субботы субота суботу суботи",
    "sunday domingo dimanche sonntag domenica niedziela niedzielę воскресенье неділя неділю",
)
_WEEKDAYS = {w: n for n, words in enumerate(_WEEKDAY_WORDS) for w in words.split()}
_LETTERS = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_CJK_WEEKDAY_HINT = re.compile(r"[周星礼禮曜요]")
_CJK_WEEKDAY = re.compile(
    r"(?:周|星期|礼拜|禮拜)([一二三四五六日天])|([月火水木金土日])曜日|([월화수목금토일])요일"
)
_CJK_WEEKDAYS = dict(
    zip(
        "一二三四五六日天月火水木金土日월화수목금토일",
        (0, 1, 2, 3, 4, 5, 6, 6, *range(7), *range(7)),
        strict=True,
    )
)


def _date_mentions(text: str) -> tuple[list[tuple[int | None, int, int]], list[tuple[int, int]]]:
    """(year or None, month, day) of each date the text names, and their spans.

    Anchored on digit runs (a date has one), so the month names are looked up in a
    dict beside the few numbers of a text, not matched at every word."""
    found: list[tuple[int | None, int, int]] = []
    spans: list[tuple[int, int]] = []
    for m in _DIGITS.finditer(text):
        start, end = m.span()
        digits = m.group()
        if len(digits) == 4:
            iso = _THEN_ISO.match(text, end)
            if iso:
                found.append((int(digits), int(iso.group(1)), int(iso.group(2))))
                spans.append((start, iso.end()))
            continue
        if len(digits) > 2:
            continue
        number = int(digits)
        cjk = _CJK_THEN_DAY.match(text, end)
        if cjk:
            found.append((None, number, int(cjk.group(1))))
            spans.append((start, cjk.end()))
            continue
        dotted = _THEN_MONTH_YEAR.match(text, end)
        if dotted:
            found.append((int(dotted.group(2)), int(dotted.group(1)), number))
            spans.append((start, dotted.end()))
            continue
        word = _THEN_MONTH.match(text, end)
        if word and word.group(1).lower() in _MONTHS:
            found.append((None, _MONTHS[word.group(1).lower()], number))
            spans.append((start, word.end()))
            continue
        vi = _VI_THEN_MONTH.match(text, end)
        if vi and (vi.group(2) or _VI_DAY_WORD.search(text, max(0, start - 8), start)):
            found.append((None, int(vi.group(1) or vi.group(2)), number))
            spans.append((start, vi.end()))
            continue
        before = _MONTH_BEFORE.search(text, max(0, start - 16), start)
        if before and before.group(1).lower() in _MONTHS and not _NOT_MONTH_DAY.match(text, end):
            found.append((None, _MONTHS[before.group(1).lower()], number))
            spans.append((before.start(), end))
    return found, spans


def event_days(
    text: str,
    published: date | None,
    mentions: list[tuple[int | None, int, int]] | None = None,
    words: list[str] | None = None,
) -> frozenset[int]:
    """Ordinals of the days `text` names (dates and weekdays), resolved against
    `published`: a date from `DATE_BACK` days before to `DATE_AHEAD` after it (others
    are background: a movement's start, a deadline next month), a weekday to its one
    occurrence from `WEEKDAY_BACK` days before to `WEEKDAY_AHEAD` after.
    `mentions` and `words`: the text's `_date_mentions` and `_split` words, when known."""
    if published is None:
        return frozenset()
    out = set()
    if mentions is None:
        mentions = _date_mentions(text)[0]
    if words is None:
        words = _split(text)[1]
    for year, month, day in mentions:
        for y in (year,) if year else (published.year - 1, published.year, published.year + 1):
            try:
                when = date(y, month, day)
            except ValueError:
                continue
            if -DATE_BACK <= (when - published).days <= DATE_AHEAD:
                out.add(when.toordinal())
    weekdays = {_WEEKDAYS[w] for w in words if w in _WEEKDAYS}
    if _CJK_WEEKDAY_HINT.search(text):
        weekdays.update(_CJK_WEEKDAYS[next(g for g in m.groups() if g)] for m in _CJK_WEEKDAY.finditer(text))
    for weekday in weekdays:
        for offset in range(-WEEKDAY_BACK, WEEKDAY_AHEAD + 1):
            when = published + timedelta(days=offset)
            if when.weekday() == weekday:
                out.add(when.toordinal())
    return frozenset(out)


# --- numbers -------------------------------------------------------------------------

_SCALES = {
    1e3: "тис тисяч тисячі тыс тысяч тысячи tys tysięcy tysiące thousand thousands mil nghìn ngàn 千 천",
    1e4: "万 萬 만",
    1e6: "mln млн million millions millones millón millon milion miliony milionów mio millionen milioni "
    "milhões triệu 百万",
    1e8: "亿 億 억",
    1e9: "mld млрд billion billions bn milliard milliards miliard miliardy miliardów mrd miliardi "
    "bilhões tỷ tỉ",
}
_SCALE_OF = {w: v for v, words in _SCALES.items() for w in words.split()}
_SCALE = "|".join(sorted(map(re.escape, _SCALE_OF), key=len, reverse=True))
_CASED_LETTER = r"A-Za-z\u00c0-\u024f\u0370-\u052f\u1e00-\u1fff"
_NUMBER = re.compile(
    rf"(?<![0-9{_CASED_LETTER}.,:/-])(\d{{1,3}}(?:[,.\u00a0\u202f ]\d{{3}})+|\d+)(?:[.,](\d+))?(?![\d:/])"
    rf"(?:\s*({_SCALE})(?![{_CASED_LETTER}]))?",
    re.IGNORECASE,
)
_NOT_A_COUNT_AFTER = frozenset("年月日号號년월일:")


def numbers(text: str, date_spans: list[tuple[int, int]] | None = None) -> frozenset[str]:
    """Counts and amounts of at least 10, as 3 significant digits ("1.36e+05").

    A group of exactly three digits after a dot or comma is a thousands group
    (1,723 = 1.723 = 1723), any other fraction a decimal; a scale word multiplies.
    Left out: 4-digit years (1900-2100) without a scale, times, parts of dates."""
    if date_spans is None:
        date_spans = _date_mentions(text)[1]
    out = set()
    for m in _NUMBER.finditer(text):
        if any(start <= m.start() < end for start, end in date_spans):
            continue
        whole, fraction, scale = m.group(1), m.group(2), m.group(3)
        if not scale and text[m.end() : m.end() + 1] in _NOT_A_COUNT_AFTER:
            continue
        digits = re.sub(r"\D", "", whole)
        if fraction is not None and len(fraction) == 3 and not scale:
            digits, fraction = digits + fraction, None
        value = float(digits) + (float("0." + fraction) if fraction else 0.0)
        if scale:
            value *= _SCALE_OF[scale.lower()]
        elif fraction is None and len(digits) == 4 and 1900 <= value <= 2100:
            continue
        if value >= 10:
            out.add(f"{value:.3g}")
    return frozenset(out)


# --- terms -------------------------------------------------------------------------

_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def _split(lead: str) -> tuple[list[str], list[str]]:
    """The Chinese/Japanese runs and the other words of `lead`, lowercased, with
    typographic apostrophes made plain (п’ятниця = п'ятниця)."""
    lowered = lead.lower().replace("’", "'")
    runs = _CJK_RUN.findall(lowered)
    return runs, _LETTERS.findall(_CJK_RUN.sub(" ", lowered) if runs else lowered)


def terms(lead: str) -> tuple[tuple[str, float], ...]:
    """Language-specific terms of the title and lead with weights 1 + ln(count):
    6-letter prefixes of words of 4+ letters (a crude stem for inflected languages),
    character bigrams of Chinese/Japanese runs."""
    return _terms(*_split(lead))


def _terms(runs: list[str], words: list[str]) -> tuple[tuple[str, float], ...]:
    found = [a + b for run in runs for a, b in zip(run, run[1:], strict=False)]
    found.extend(w[:6] for w in words if len(w) >= 4)
    counts = Counter(found)  # in order of first occurrence: deterministic, no sort to pay for
    return tuple(
        zip(counts, map(_TF.__getitem__, map(min, counts.values(), repeat(len(_TF) - 1))), strict=True)
    )


_TF = tuple(1.0 + math.log(c) if c else 0.0 for c in range(64))  # 1 + ln(count), counts over 63 as 63


# --- the signature -------------------------------------------------------------------


def _day(published: date | datetime | str | None) -> date | None:
    if published is None or published == "":
        return None
    if isinstance(published, datetime):
        return published.date()
    if isinstance(published, date):
        return published
    try:
        return date.fromisoformat(str(published)[:10])
    except ValueError:
        return None


def _entity_weights(entities: Any, lead_chars: int) -> tuple[tuple[str, float], ...]:
    weights: dict[str, float] = {}
    for e in entities:
        if isinstance(e, str):
            entity_id, mentions, first = e, 1, 0
        else:
            entity_id = e.id
            mentions = getattr(e, "mentions", 1) or 1
            first = getattr(e, "first_offset", 0)
        salient = first is None or first < lead_chars  # None: only the title names it
        weight = (1.0 + math.log(max(1, mentions))) * (2.0 if salient else 1.0)
        weights[entity_id] = max(weights.get(entity_id, 0.0), weight)
    return tuple(sorted(weights.items()))


def signature(
    title: str,
    text: str,
    language: str | None,
    published: date | datetime | str | None,
    entities: Any = (),
) -> StorySignature:
    """The story signature of one article.

    `text` is the body (paragraphs separated by line breaks), `published` a date,
    datetime, ISO string or None, `entities` the tagger's entities (objects with `.id`
    and, optionally, `.mentions` and `.first_offset` into `text`, such as
    `schemas.records.EntityMention`) or plain entity ids."""
    title = title or ""
    text = text or ""
    lead = f"{title}\n{text[:LEAD_CHARS]}"
    day = _day(published)
    mentions, date_spans = _date_mentions(lead)
    runs, words = _split(lead)
    return StorySignature(
        language=language,
        day=day.toordinal() if day else None,
        entities=_entity_weights(entities, LEAD_CHARS),
        names=names(lead),
        numbers=numbers(lead, date_spans),
        days=event_days(lead, day, mentions, words),
        terms=_terms(runs, words),
    )
