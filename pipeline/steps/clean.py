"""Pure cleaning functions: HTML to text, boilerplate, Unicode, dates, URLs, language.

`clean_entry` turns one parsed `Entry` into an `Article` (untagged) or a `Reject`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import py3langid
from dateutil import parser as dateutil_parser
from selectolax.lexbor import LexborHTMLParser

from connectors.dates import plausible_date
from schemas.ids import sha256_hex, stable_id
from schemas.records import Article, Entry, Reject

# --- text ------------------------------------------------------------------

_BLOCK_TAGS = (
    "p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "tr", "section", "article", "header", "footer", "pre", "figcaption",
)  # fmt: skip
_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "head", "form", "nav")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff\ufffe\uffff\ud800-\udfff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_LOOKS_LIKE_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>|&[a-zA-Z#][a-zA-Z0-9]*;")


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment, one paragraph per line; scripts never leak."""
    if not _LOOKS_LIKE_HTML.search(html):
        return html
    tree = LexborHTMLParser(f"<div>{html}</div>")
    tree.strip_tags(list(_DROP_TAGS))
    for tag in _BLOCK_TAGS:
        for node in tree.css(tag):
            node.insert_before("\n")
            node.insert_after("\n")
    root = tree.body
    return root.text(separator="", strip=False) if root is not None else ""


_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*(?:\s[^>]*)?/?>")


def markup_to_text(value: str) -> str:
    """html_to_text, twice when the markup was escaped twice (`&amp;lt;script&amp;gt;` is
    common in feeds): what is left must not be a tag, or a script's body would pass as
    text."""
    text = html_to_text(value)
    return html_to_text(text) if _TAG.search(text) else text


def normalize_text(text: str) -> str:
    """NFC, no control characters or lone surrogates, single spaces, no empty lines."""
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


# Related-link and share lines that publishers append to article bodies. Matched on
# whole lines, after an optional quote marker, case- and accent-insensitively.
_BOILERPLATE_PREFIXES = (
    "a lire aussi", "à lire aussi", "lire aussi", "a lire egalement", "à lire également",
    "lire egalement", "voir aussi", "read more", "read also", "also read", "see also",
    "related:", "related articles", "related stories", "more on this story",
    "lesen sie auch", "mehr zum thema", "lea también", "leer más", "leia também",
    "leggi anche", "czytaj też", "czytaj także", "читайте также", "читайте також",
    "смотрите также", "관련기사", "関連記事", "相关阅读", "相关新闻", "xem thêm",
    "share this article", "follow us on", "suivez-nous",
    "sign up for our newsletter", "abonnez-vous",
)  # fmt: skip


# Combining marks of the Basic Multilingual Plane, deleted by str.translate in one C call.
_NO_MARKS = {cp: None for cp in range(0x10000) if unicodedata.combining(chr(cp))}


def fold_text(text: str) -> str:
    """Case- and accent-folded text (Choïgou -> choigou)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return decomposed if decomposed.isascii() else decomposed.translate(_NO_MARKS)


_BOILERPLATE_FOLDED = tuple(fold_text(p) for p in _BOILERPLATE_PREFIXES)


_LONGEST_PREFIX = max(map(len, _BOILERPLATE_PREFIXES))


def is_boilerplate_line(line: str) -> bool:
    folded = fold_text(line.lstrip("> \t»›-–—•*")[: _LONGEST_PREFIX + 2])
    return folded.startswith(_BOILERPLATE_FOLDED)


def strip_boilerplate(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not is_boilerplate_line(line))


def clean_body(entry: Entry) -> str:
    raw = entry.text if entry.text is not None else markup_to_text(entry.html or "")
    if entry.text is not None and _LOOKS_LIKE_HTML.search(raw):
        raw = markup_to_text(raw)
    return normalize_text(strip_boilerplate(normalize_text(raw)))


def clean_title(title: str) -> str:
    return normalize_text(markup_to_text(title)).replace("\n", " ")


# --- URLs ------------------------------------------------------------------

_TRACKING_PARAMS = {
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "mc_cid", "mc_eid",
    "igshid", "ocid", "cmpid", "xtor", "_ga", "ref_src", "ref_url", "smid", "spm",
}  # fmt: skip
_TRACKING_PREFIXES = ("utm_", "itm_", "pk_", "mtm_")
_AMP_PARAMS = {"amp", "outputtype", "output"}  # ?amp=1, ?outputType=amp
_HOST_VARIANT = re.compile(r"^(?:www|m|mobile|amp)\.(?=[^.]+\.[^.]+)")
_AMP_PATH = re.compile(r"(?:/amp|\.amp)(?=/?$)|/amp(?=/)", re.I)


def canonical_url(url: str | None) -> str | None:
    """Scheme and host lower-cased, default port, fragment and tracking parameters dropped.

    Returns None for anything that is not an absolute http(s) URL.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    # www., mobile and AMP hosts serve the same article as the main host.
    host = _HOST_VARIANT.sub("", host)
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _TRACKING_PARAMS
        and not k.lower().startswith(_TRACKING_PREFIXES)
        and not (k.lower() in _AMP_PARAMS and v.lower() in ("1", "amp", "true", ""))
    )
    path = _AMP_PATH.sub("", parts.path) or "/"
    # http and https copies of one page are one article.
    return urlunsplit(("https", host, path, urlencode(query), ""))


# --- dates -----------------------------------------------------------------


def parse_date(value: str | None) -> datetime | None:
    """A publication date string (RFC 822, ISO 8601, or loose) as UTC, or None."""
    if not value:
        return None
    value = value.strip()
    parsed: datetime | None = None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                parsed = dateutil_parser.parse(value)
            except (ValueError, OverflowError):
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).replace(microsecond=0)


# --- language --------------------------------------------------------------


def detect_language(title: str, text: str, hint: str | None) -> str | None:
    # The first few hundred characters decide as well as the whole text, at a fraction of the cost.
    sample = f"{title}\n{text[:600]}".strip()
    if len(sample) >= 20:
        lang, _ = py3langid.classify(sample)
        return str(lang)
    if hint:
        return hint.split("-")[0].split("_")[0].lower() or None
    return None


# --- the whole step --------------------------------------------------------


def content_fingerprint(title: str, text: str) -> str:
    """Hash of the normalised body (of the title when there is no body): equal for copies
    differing in case, accents or spacing only. Headlines are left out because
    syndicated copies of one story often carry different ones."""
    folded = " ".join(fold_text(text or title).split())
    return stable_id("content", folded)


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])")
LEAD_TITLE_CHARS = 160


def lead_title(text: str) -> str:
    """A title for a text that came without one: its first sentence, cut at a word
    boundary (with "…") when longer than LEAD_TITLE_CHARS."""
    first = _SENTENCE_END.split(text.split("\n", 1)[0].strip(), maxsplit=1)[0].strip()
    if len(first) <= LEAD_TITLE_CHARS:
        return first
    cut = first[:LEAD_TITLE_CHARS]
    space = cut.rfind(" ")
    return (cut[:space] if space > LEAD_TITLE_CHARS // 2 else cut).rstrip(" ,;:") + "…"


def clean_entry(entry: Entry) -> Article | Reject:
    title = clean_title(entry.title)
    text = clean_body(entry)
    if not title and not text:
        return make_reject(entry, "clean", "empty_article", "no title and no text after cleaning")
    title_source = "headline"
    if not title:
        title, title_source = lead_title(text), "lead"
    url = canonical_url(entry.url)
    content_hash = content_fingerprint(title, text)
    published = plausible_date(entry.published_at or parse_date(entry.published), entry.fetched_at)
    return Article(
        article_id=stable_id("url", url) if url else stable_id("content-id", content_hash),
        url=entry.url,
        canonical_url=url,
        source=entry.source,
        source_kind=entry.source_kind,
        title=title,
        text=text,
        language=detect_language(title, text, entry.language_hint),
        published_at=published,
        fetched_at=entry.fetched_at,
        date_source="published" if published else "fetched",
        content_hash=content_hash,
        guid=entry.guid,
        raw_id=entry.raw_id,
        publisher=entry.publisher,
        title_source=title_source,
        position=entry.position,
    )


def make_reject(
    entry: Entry, stage: str, reason: str, detail: str, error_type: str = "InvalidContent"
) -> Reject:
    payload = f"{entry.title}\n{entry.text or entry.html or ''}".encode("utf-8", "replace")
    return Reject(
        reject_id=stable_id("reject", entry.raw_id, str(entry.position), stage, reason),
        stage=stage,
        reason=reason,
        error_type=error_type,
        retryable=False,
        source=entry.source,
        origin=entry.origin,
        payload_hash=sha256_hex(payload),
        fetched_at=entry.fetched_at,
        detail=detail,
    )
