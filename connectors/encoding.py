"""Decode a feed body to text: BOM, HTTP charset and XML declaration, which often disagree.

Order of trust: a byte-order mark (or the unmistakable UTF-16/32 pattern of `<?`) decides
alone; then a body that is valid UTF-8 is UTF-8 (non-ASCII text in a legacy encoding is
almost never valid UTF-8, while servers and generators routinely mislabel UTF-8); then
the declared charsets (HTTP header, XML declaration) that decode without error, and when
both decode but differ, charset-normalizer chooses between them; with nothing usable
declared, charset-normalizer detects. Labels map to the superset codecs browsers use
(ISO-8859-1 is decoded as windows-1252, GB2312 as GB18030, EUC-KR as CP949, Shift_JIS
as CP932), so the extra characters real feeds use are not lost.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

import charset_normalizer

from connectors.errors import Problem

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# `<?` or `<` + letter without a BOM.
_WIDE_PATTERNS = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)
_SUPERSETS = {
    "iso8859_1": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "iso8859_9": "cp1254",
    "iso8859_11": "cp874",
    "tis_620": "cp874",
    "big5": "big5hkscs",
}
_WIDE = ("utf_16", "utf_16_le", "utf_16_be", "utf_32", "utf_32_le", "utf_32_be")
_XML_DECL = re.compile(rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]{1,40})""", re.I)


@dataclass
class Decoded:
    text: str
    encoding: str  # the Python codec used
    problems: list[Problem] = field(default_factory=list)


def codec_for(label: str | None) -> str | None:
    """The Python codec to decode a charset label with, or None for an unknown label."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().lower()).name.replace("-", "_")
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def http_charset(content_type: str | None) -> str | None:
    match = _HTTP_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def xml_declared_charset(body: bytes) -> str | None:
    match = _XML_DECL.match(body[:300])
    return match.group(1).decode("ascii") if match else None


def _strict(body: bytes, codec: str) -> str | None:
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_feed(body: bytes, content_type: str | None) -> Decoded:
    """The body as text, the codec used, and a problem when the labels were wrong."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return _decode_with(body[len(bom) :], codec, "byte-order mark")
    for pattern, codec in _WIDE_PATTERNS:
        if body.startswith(pattern):
            return _decode_with(body, codec, "UTF-16/32 byte pattern")

    labels = {"HTTP charset": http_charset(content_type), "XML declaration": xml_declared_charset(body)}
    declared: dict[str, str] = {}
    problems: list[Problem] = []
    for where, label in labels.items():
        if not label:
            continue
        usable = codec_for(label)
        if usable is None or usable in _WIDE:
            # A one-byte-wide body cannot be UTF-16: the label is wrong, whatever it says.
            problems.append(Problem("charset_mismatch", f"{where} `{label}` unusable for this body"))
        else:
            declared.setdefault(usable, where)

    if body.isascii() and not any(c.startswith(("iso2022", "utf_7", "hz")) for c in declared):
        return Decoded(body.decode("ascii"), "ascii", problems)
    text = _strict(body, "utf-8")
    if text is not None:
        if declared and "utf_8" not in declared:
            problems.append(_mismatch(declared, "utf_8", "the body is valid UTF-8"))
        return Decoded(text, "utf_8", problems)

    decodable = {codec: found for codec in declared if (found := _strict(body, codec)) is not None}
    if len(decodable) == 1:
        codec, chosen = next(iter(decodable.items()))
    elif len(decodable) > 1:
        best = charset_normalizer.from_bytes(body, cp_isolation=list(decodable)).best()
        picked = codec_for(best.encoding) if best is not None else None
        codec = picked if picked in decodable else next(iter(decodable))
        chosen = decodable[codec]
    else:
        best = charset_normalizer.from_bytes(body).best()
        detected = codec_for(best.encoding) if best is not None else None
        codec = detected or "cp1252"
        chosen = body.decode(codec, errors="replace")
    if set(declared) != {codec}:
        problems.append(_mismatch(declared, codec, "decoded as the charset that fits the bytes"))
    return Decoded(chosen, codec, problems)


def _decode_with(body: bytes, codec: str, why: str) -> Decoded:
    text = _strict(body, codec)
    if text is not None:
        return Decoded(text, codec)
    problem = Problem("undecodable_bytes", f"invalid {codec} ({why}); bad bytes replaced")
    return Decoded(body.decode(codec, errors="replace"), codec, [problem])


def _mismatch(declared: dict[str, str], used: str, why: str) -> Problem:
    said = ", ".join(f"{where} {codec}" for codec, where in declared.items()) or "nothing declared"
    return Problem("charset_mismatch", f"{said}; used {used}: {why}")
