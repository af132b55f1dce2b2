"""Make a decoded feed safe and cheap to parse, before any XML parser sees it.

- A DOCTYPE with an internal subset is removed, and references to the entities it
  declared are dropped. feedparser blocks external entities and nested expansion, but
  it substitutes "safe" internal entities by plain string replacement before parsing,
  so one 50 KB entity referenced a thousand times becomes 50 MB (and its loose-parser
  fallback does it again). No feed needs its own entities; an external DOCTYPE without
  an internal subset (RSS 0.91's) is harmless and kept.
- Characters XML 1.0 forbids (C0 controls, U+FFFE/U+FFFF) and character references to
  them are removed: one stray control character otherwise fails the strict parse and
  sends the whole feed through the slow, lossy loose parser.
- The XML declaration is rewritten to say UTF-8, and the result is UTF-8 bytes.

The character passes run on the UTF-8 bytes, where they are several times faster than
on text (a C0 control byte never occurs inside a multi-byte UTF-8 sequence).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connectors.errors import Problem

_XML_DECL = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")
_C0_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")  # U+FFFE, U+FFFF in UTF-8
# References that may name a forbidden character (0-31, surrogates, U+FFFE/F); each
# match is then checked exactly.
_SUSPECT_REF = re.compile(
    rb"&#(0*[0-9]{1,2}|0*5[5-7][0-9]{3}|0*6553[45]|[xX]0*[0-9a-fA-F]{1,2}"
    rb"|[xX]0*[dD][89a-fA-F][0-9a-fA-F]{2}|[xX]0*[fF]{3}[eEfF]);"
)
_DOCTYPE_TOKEN = re.compile(r"\"[^\"]*\"?|'[^']*'?|<!--.*?(?:-->|$)|[\[\]>]", re.DOTALL)
_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)
_ENTITY_DECL = re.compile(r"<!ENTITY\s+(%\s+)?([^\s\"'>]+)", re.IGNORECASE)
_ROOT = re.compile(r"<[A-Za-z_]")


@dataclass
class Guarded:
    data: bytes  # UTF-8
    problems: list[Problem] = field(default_factory=list)


def guard_xml(text: str) -> Guarded:
    problems: list[Problem] = []
    text, doctype_problem = _drop_internal_subset(text)
    if doctype_problem:
        problems.append(doctype_problem)
    data = _XML_DECL.sub(r"\1\2utf-8\2", text, count=1).encode("utf-8")
    cleaned = data.translate(None, _C0_BYTES)
    for noncharacter in _NONCHARACTERS:
        if noncharacter in cleaned:
            cleaned = cleaned.replace(noncharacter, b"")
    if b"&#" in cleaned:
        cleaned = _SUSPECT_REF.sub(_legal_ref, cleaned)
    if len(cleaned) != len(data):
        removed = len(data) - len(cleaned)
        problems.append(Problem("invalid_xml_characters", f"{removed} bytes XML forbids removed"))
    return Guarded(cleaned, problems)


def _drop_internal_subset(text: str) -> tuple[str, Problem | None]:
    """The text without a DOCTYPE that has an internal subset (found only before the root)."""
    # The prolog ends at the root element; a `<x` inside the DOCTYPE only makes it longer.
    root = _ROOT.search(text)
    doctype = _DOCTYPE.search(text, 0, root.start() if root is not None else len(text))
    if doctype is None:
        return text, None
    end, subset = _doctype_end(text, doctype.end())
    if subset is None:
        return text, None
    names = {m.group(2) for m in _ENTITY_DECL.finditer(subset) if not m.group(1)}
    body = text[end:]
    if names:
        # Only the names declared here: the five predefined entities and character
        # references are never in this set.
        refs = re.compile("&(?:" + "|".join(re.escape(n) for n in sorted(names)) + ");")
        body = refs.sub("", body)
    detail = (
        f"DOCTYPE with an internal subset ({len(subset)} characters, "
        f"{len(names)} entities declared) removed; references to them dropped"
    )
    return text[: doctype.start()] + body, Problem("dtd_internal_subset", detail)


def _legal_ref(match: re.Match[bytes]) -> bytes:
    """A character reference, or nothing when it names a character XML forbids."""
    ref = match.group(1)
    code = int(ref[1:], 16) if ref[:1] in (b"x", b"X") else int(ref)
    legal = (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )
    return match.group(0) if legal else b""


def _doctype_end(text: str, start: int) -> tuple[int, str | None]:
    """End of the DOCTYPE starting before `start`, and its internal subset (None without one).

    Quoted strings and comments are skipped, so a `]` or `>` inside them does not end it;
    an unterminated DOCTYPE runs to the end of the text.
    """
    subset_start = subset_end = -1
    for token in _DOCTYPE_TOKEN.finditer(text, start):
        c = token.group(0)
        if c == "[" and subset_start < 0:
            subset_start = token.end()
        elif c == "]" and subset_start >= 0 and subset_end < 0:
            subset_end = token.start()
        elif c == ">" and (subset_start < 0 or subset_end >= 0):
            end = token.end()
            break
    else:
        end = len(text)
    if subset_start < 0:
        return end, None
    return end, text[subset_start : subset_end if subset_end >= 0 else end]
