from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.steps.clean import (
    canonical_url,
    clean_body,
    clean_entry,
    content_fingerprint,
    detect_language,
    html_to_text,
    normalize_text,
    parse_date,
    plausible_date,
)
from schemas.records import Article, Entry, Reject

FETCHED = datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc)


def make_entry(**kw: object) -> Entry:
    fields = dict(
        raw_id="r", source="s", source_kind="feed", origin="o", fetched_at=FETCHED, position=0, title="T"
    )
    fields.update(kw)
    return Entry(**fields)  # type: ignore[arg-type]


def test_html_to_text_keeps_paragraphs_and_drops_scripts_and_styles() -> None:
    html = (
        "<style>p{}</style><p>First <i>para</i>.</p><script>evil()</script><div>Second&nbsp;&amp; last</div>"
    )
    assert normalize_text(html_to_text(html)) == "First para.\nSecond & last"


def test_normalize_text_removes_controls_and_composes() -> None:
    decomposed = "Se\u0301oul\x00 \u200b and\t\tmore\r\n\n\nnext"
    assert normalize_text(decomposed) == "S\u00e9oul and more\nnext"


def test_boilerplate_lines_are_removed_in_many_languages() -> None:
    text = "\n".join(
        [
            "Real paragraph.",
            "> A lire aussi : En visite en Corée du Nord",
            "À LIRE ÉGALEMENT - autre chose",
            "Читайте также: другое",
            "Read more: our coverage",
            "관련기사 더보기",
            "Another real paragraph that mentions lire aussi in the middle.",
        ]
    )
    body = clean_body(make_entry(text=text))
    assert body == "Real paragraph.\nAnother real paragraph that mentions lire aussi in the middle."


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://WWW.Example.COM:80/a/b?utm_source=x&id=3&fbclid=1#top", "https://example.com/a/b?id=3"),
        ("https://example.com:8443/x?b=2&a=1", "https://example.com:8443/x?a=1&b=2"),
        ("https://example.com", "https://example.com/"),
        ("https://m.example.com/news/story/amp/", "https://example.com/news/story/"),
        ("https://amp.example.co.uk/news/story.amp", "https://example.co.uk/news/story"),
        ("https://example.com/amp/news/story?amp=1&outputType=amp", "https://example.com/news/story"),
        ("https://example.com/news/amplifier", "https://example.com/news/amplifier"),
        ("https://m.co/x", "https://m.co/x"),
        ("ftp://example.com/file", None),
        ("javascript:alert(1)", None),
        ("/relative/path", None),
        ("http://[::1", None),
        (None, None),
    ],
)
def test_canonical_url(url: str | None, expected: str | None) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wed, 19 Jun 2024 09:30:00 +0900", datetime(2024, 6, 19, 0, 30, tzinfo=timezone.utc)),
        ("2024-06-19T09:30:00+09:00", datetime(2024, 6, 19, 0, 30, tzinfo=timezone.utc)),
        ("2024-06-19T00:30:00Z", datetime(2024, 6, 19, 0, 30, tzinfo=timezone.utc)),
        ("2024-06-19", datetime(2024, 6, 19, tzinfo=timezone.utc)),
        ("not a date", None),
        ("", None),
    ],
)
def test_parse_date(value: str, expected: datetime | None) -> None:
    assert parse_date(value) == expected


def test_implausible_dates_fall_back_to_the_fetch_date() -> None:
    assert plausible_date(datetime(2098, 1, 1, tzinfo=timezone.utc), FETCHED) is None
    assert plausible_date(datetime(1970, 1, 1, tzinfo=timezone.utc), FETCHED) is None
    result = clean_entry(make_entry(text="Body text here.", published="Fri, 01 Jan 2098 00:00:00 GMT"))
    assert isinstance(result, Article)
    assert result.published_at is None and result.date_source == "fetched"
    assert result.partition_date == "2024-06-21"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Le ministre russe de la Défense a rencontré le dirigeant nord-coréen à Pyongyang.", "fr"),
        ("Министр обороны России встретился с лидером КНДР в Пхеньяне.", "ru"),
        ("러시아 국방장관이 평양에서 북한 지도자와 회담했다고 조선중앙통신이 보도했다.", "ko"),
        ("Russia's defence minister met North Korea's leader in Pyongyang on Wednesday.", "en"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language("", text, None) == lang


def test_fingerprint_ignores_case_accents_spacing_and_headline() -> None:
    a = content_fingerprint("Choïgou à Pyongyang", "Texte  du   corps, Séoul.")
    assert a == content_fingerprint("Choïgou à Pyongyang", "TEXTE du corps, seoul.")
    assert a == content_fingerprint("Another headline for the same wire story", "Texte du corps, Séoul.")
    assert a != content_fingerprint("Choïgou à Pyongyang", "Texte du corps modifié, Séoul.")
    assert content_fingerprint("Only a title", "") != content_fingerprint("Another title", "")


def test_ids_come_from_canonical_url_or_content() -> None:
    a = clean_entry(make_entry(text="x", url="http://example.com/a?utm_medium=rss"))
    b = clean_entry(make_entry(text="y", url="https://www.example.com/a"))
    c = clean_entry(make_entry(text="x"))
    d = clean_entry(make_entry(text="x"))
    assert isinstance(a, Article) and isinstance(b, Article) and isinstance(c, Article)
    assert isinstance(d, Article)
    assert a.article_id == b.article_id
    assert c.article_id == d.article_id != a.article_id


def test_empty_entries_are_rejected_with_a_reason() -> None:
    result = clean_entry(make_entry(title=" ", text="<script>only()</script>"))
    assert isinstance(result, Reject)
    assert (result.stage, result.reason) == ("clean", "empty_article")
