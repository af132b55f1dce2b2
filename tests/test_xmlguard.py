"""The pre-pass before any XML parser: charset decisions and the DOCTYPE/character guard."""

from __future__ import annotations

import codecs

import pytest

from connectors.encoding import codec_for, decode_feed, xml_declared_charset
from connectors.xmlguard import guard_xml

RU = "Путин прибыл в Пхеньян"


def doc(text: str, label: str | None) -> str:
    decl = f'<?xml version="1.0" encoding="{label}"?>' if label else '<?xml version="1.0"?>'
    return f"{decl}<rss><channel><title>{text}</title></channel></rss>"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("ISO-8859-1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("GB2312", "gb18030"),
        ("EUC-KR", "cp949"),
        ("Shift_JIS", "cp932"),
        ("windows-1251", "cp1251"),
        ("KOI8-R", "koi8_r"),
        ("utf8", "utf_8"),
        ("no-such-charset", None),
        (None, None),
    ],
)
def test_labels_map_to_superset_codecs(label: str | None, expected: str | None) -> None:
    assert codec_for(label) == expected


def test_bom_wins_over_header_and_declaration() -> None:
    body = codecs.BOM_UTF16_LE + doc(RU, "windows-1251").encode("utf-16-le")
    decoded = decode_feed(body, "text/xml; charset=koi8-r")
    assert (decoded.encoding, decoded.problems) == ("utf-16-le", [])
    assert RU in decoded.text


def test_utf16_without_bom_is_recognised_by_its_byte_pattern() -> None:
    decoded = decode_feed(doc(RU, None).encode("utf-16-be"), None)
    assert decoded.encoding == "utf-16-be" and RU in decoded.text


def test_valid_utf8_wins_over_a_wrong_label_and_says_so() -> None:
    decoded = decode_feed(doc(RU, "windows-1251").encode("utf-8"), "text/xml; charset=iso-8859-1")
    assert decoded.encoding == "utf_8" and RU in decoded.text
    assert [p.reason for p in decoded.problems] == ["charset_mismatch"]


def test_when_two_declared_charsets_decode_the_one_that_reads_as_language_wins() -> None:
    body = doc(RU * 3, "windows-1251").encode("cp1251")
    decoded = decode_feed(body, "text/xml; charset=ISO-8859-1")  # cp1252 decodes it too, as mojibake
    assert decoded.encoding == "cp1251" and RU in decoded.text
    assert [p.reason for p in decoded.problems] == ["charset_mismatch"]


def test_a_label_that_cannot_decode_is_skipped() -> None:
    decoded = decode_feed(doc(RU, "KOI8-R").encode("koi8_r"), "application/rss+xml; charset=utf-8")
    assert decoded.encoding == "koi8_r" and RU in decoded.text


def test_undeclared_legacy_bytes_are_detected() -> None:
    decoded = decode_feed(doc(RU * 5, None).encode("cp1251"), None)
    assert RU in decoded.text


def test_wide_label_on_a_narrow_body_is_a_mismatch() -> None:
    decoded = decode_feed(doc("plain", "utf-16").encode("ascii"), None)
    assert decoded.encoding == "ascii"
    assert [p.reason for p in decoded.problems] == ["charset_mismatch"]


def test_declared_charset_is_read_from_the_prolog_only() -> None:
    assert xml_declared_charset(b"<?xml version='1.0' encoding='KOI8-R'?><a/>") == "KOI8-R"
    assert xml_declared_charset(b"<a>encoding='KOI8-R'</a>") is None


def test_internal_subset_is_removed_with_references_to_its_entities() -> None:
    text = (
        '<?xml version="1.0" encoding="koi8-r"?>\n'
        '<!DOCTYPE rss [ <!ENTITY a "x]>y"> <!-- ] > --> <!ENTITY % p SYSTEM "http://evil/p.dtd"> %p; ]>\n'
        "<rss><title>&a; &amp; &lt; &#65; &a;</title></rss>"
    )
    guarded = guard_xml(text)
    prolog = '<?xml version="1.0" encoding="utf-8"?>\n\n'
    assert guarded.data.decode() == prolog + "<rss><title> &amp; &lt; &#65; </title></rss>"
    assert [p.reason for p in guarded.problems] == ["dtd_internal_subset"]
    assert "1 entities declared" in guarded.problems[0].detail


def test_external_doctype_without_subset_is_kept() -> None:
    text = (
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        '"http://my.netscape.com/publish/formats/rss-0.91.dtd">\n<rss version="0.91"/>'
    )
    assert guard_xml(text).data.decode() == text
    assert guard_xml(text).problems == []


def test_doctype_after_the_root_is_not_a_prolog() -> None:
    text = "<rss><title>a <!DOCTYPE x [<!ENTITY e 'v'>]> b</title></rss>"
    assert guard_xml(text).data.decode() == text


def test_unterminated_doctype_swallows_the_rest() -> None:
    guarded = guard_xml('<!DOCTYPE rss [ <!ENTITY a "never closed')
    assert guarded.data.decode() == ""
    assert [p.reason for p in guarded.problems] == ["dtd_internal_subset"]


def test_characters_xml_forbids_are_removed_as_characters_and_as_references() -> None:
    forbidden = "\x00b\x01c\x0b\ufffe&#0;&#x1f;&#xD800;&#55296;&#65535;"
    guarded = guard_xml(f"<t>a{forbidden}&#x41;&#9;&#128512;&#xFFFD;é</t>")
    assert guarded.data.decode() == "<t>abc&#x41;&#9;&#128512;&#xFFFD;é</t>"
    assert [p.reason for p in guarded.problems] == ["invalid_xml_characters"]
