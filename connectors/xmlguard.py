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
- The XML declaration is rewritten to say UTF-8, which is what the caller encodes to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connectors.errors import Problem

_XML_DECL = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")
_ILLEGAL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_CHAR_REF = re.compile(r"&#(x[0-9a-fA-F]{1,8}|[0-9]{1,10});")
_DOCTYPE_TOKEN = re.compile(r"\"[^\"]*\"?|'[^']*'?|<!--.*?(?:-->|$)|[\[\]>]", re.DOTALL)
_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)
_ENTITY_DECL = re.compile(r"<!ENTITY\s+(%\s+)?([^\s\"'>]+)", re.IGNORECASE)
_ROOT = re.compile(r"<[A-Za-z_]")


@dataclass
class Guarded:
    text: str
    problems: list[Problem] = field(default_factory=list)


def guard_xml(text: str) -> Guarded:
    problems: list[Problem] = []
    text, doctype_problem = _drop_internal_subset(text)
    if doctype_problem:
        problems.append(doctype_problem)
    cleaned = _ILLEGAL_CHARS.sub("", text)
    if "&#" in cleaned:
        cleaned = _CHAR_REF.sub(_legal_ref, cleaned)
    if len(cleaned) != len(text):
        problems.append(
            Problem("invalid_xml_characters", f"{len(text) - len(cleaned)} characters XML forbids removed")
        )
    return Guarded(_XML_DECL.sub(r"\1\2utf-8\2", cleaned, count=1), problems)


def _drop_internal_subset(text: str) -> tuple[str, Problem | None]:
    """The text without a DOCTYPE that has an internal subset (found only before the root)."""
    doctype = _DOCTYPE.search(text)
    if doctype is None:
        return text, None
    root = _ROOT.search(text)
    if root is not None and root.start() < doctype.start():
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


def _legal_ref(match: re.Match[str]) -> str:
    """A character reference, or nothing when it names a character XML forbids."""
    ref = match.group(1)
    code = int(ref[1:], 16) if ref[0] in "xX" else int(ref)
    legal = (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )
    return match.group(0) if legal else ""


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
