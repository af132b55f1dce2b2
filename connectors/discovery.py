"""Feed discovery: a configured feed URL that serves a web page instead of a feed.

`is_html_page` decides from the Content-Type and the first bytes of the body. When the
first element after the prolog (XML declaration, comments, DOCTYPE) is `<rss>`, `<feed>`,
`<rdf:RDF>` (or a news sitemap's `<urlset>`/`<sitemapindex>`), it is a feed whatever its
Content-Type (feeds served as text/html are common); `<html>` or `<!DOCTYPE html>` make a
page. A body served as text/html or application/xhtml+xml that is neither is a page too,
unless it is JSON or a feed's root element shows up further on (after a long comment, say).
Nothing is parsed: every 2xx body is looked at this way, so it must cost next to nothing.

`find_feed_url` reads the page's `<head>` (only the bytes up to `</head>` or `<body>`, at
most `HEAD_SCAN_BYTES`, with selectolax's Lexbor parser) for
`<link rel="alternate" type=… href=…>` and returns the best feed URL it links: RSS
(application/rss+xml) first, then Atom (application/atom+xml), then JSON Feed
(application/feed+json, then application/json); among links of one type, the first in the
page. Relative hrefs are resolved against `<base href>` and the URL of the page (after its
redirects); `feed:` URLs are unwrapped; anything else that is not http(s) is skipped.

Fetching what it finds is the caller's job (`connectors/http.py`), through the same fetch
core as every request: the address policy, limits and deadline apply to it as to any hop.
"""

from __future__ import annotations

import codecs
import re

import httpx
from selectolax.lexbor import LexborHTMLParser

from connectors.encoding import codec_for, http_charset

# Preference order, best first.
FEED_LINK_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/json",
)
SNIFF_CHARS = 8192  # of the body's start, to find its first element
FEED_SEARCH_CHARS = 256 * 1024  # searched for a feed's root when the first look found none
HEAD_SCAN_BYTES = 1024 * 1024  # a <head> longer than this is read only this far

# Roots of the documents connectors/feeds.py reads (news sitemaps included).
_FEED_ROOTS = {"rss", "feed", "rdf", "channel", "urlset", "sitemapindex"}
_HTML_ROOTS = {"html", "head", "body"}
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_PROLOG = re.compile(
    r"(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^>\[]|\[.*?\])*>)*", re.DOTALL | re.IGNORECASE
)
_HTML_DOCTYPE = re.compile(r"<!DOCTYPE\s+html", re.IGNORECASE)
_TAG = re.compile(r"<([A-Za-z_][\w.:-]*)")
_FEED_TAG = re.compile(r"<(?:[\w.-]+:)?(?:rss|feed|RDF|urlset|sitemapindex)[\s>]")
_HEAD_END = re.compile(rb"</head\s*>|<body[\s>]", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_WIDE = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _start_text(body: bytes, chars: int) -> str:
    """The body's first `chars` characters, near enough to read its markup."""
    for mark, codec in _BOMS:
        if body.startswith(mark):
            width = 1 if codec == "utf-8" else 4 if "32" in codec else 2
            return body[len(mark) : len(mark) + chars * width].decode(codec, "ignore")
    for pattern, codec in _WIDE:
        if body.startswith(pattern):
            return body[: chars * (4 if "32" in codec else 2)].decode(codec, "ignore")
    return body[:chars].decode("latin-1")  # only ASCII markup is looked for


def is_html_page(body: bytes, content_type: str | None) -> bool:
    """Whether a 2xx body is a web page rather than a feed (see the module's docstring)."""
    if not body:
        return False
    text = _start_text(body, SNIFF_CHARS)
    prolog = _PROLOG.match(text)
    end = prolog.end() if prolog else 0
    tag = _TAG.match(text, end)
    root = tag.group(1).lower().rsplit(":", 1)[-1] if tag else None
    if root in _FEED_ROOTS:
        return False
    if root in _HTML_ROOTS or _HTML_DOCTYPE.search(text, 0, end):
        return True
    if _mime(content_type) not in _HTML_TYPES:
        return False
    # Served as HTML: a page, unless it is JSON (a JSON Feed served with the wrong type), or a
    # feed whose root only an unusually long prolog hid from the first look.
    if text.lstrip().startswith(("{", "[")):
        return False
    return _FEED_TAG.search(_start_text(body, FEED_SEARCH_CHARS)) is None


def find_feed_url(body: bytes, page_url: str, content_type: str | None = None) -> str | None:
    """The best feed the page's `<head>` links with `rel="alternate"`, as an absolute http(s)
    URL; None when it links none."""
    head = body[:HEAD_SCAN_BYTES]
    end = _HEAD_END.search(head)
    if end is not None:
        head = head[: end.end()]
    codec = codec_for(http_charset(content_type)) or "utf-8"
    tree = LexborHTMLParser(head.decode(codec, "replace"))
    node = tree.head
    if node is None:
        return None
    base = _absolute(page_url, None)
    base_node = node.css_first("base[href]")
    if base is not None and base_node is not None:
        base = _absolute(base, base_node.attributes.get("href")) or base
    if base is None:
        return None
    best: tuple[int, str] | None = None
    for link in node.css("link[rel][href]"):
        attrs = link.attributes
        if "alternate" not in (attrs.get("rel") or "").lower().split():
            continue
        kind = _mime(attrs.get("type"))
        if kind not in FEED_LINK_TYPES:
            continue
        rank = FEED_LINK_TYPES.index(kind)
        if best is not None and best[0] <= rank:
            continue
        url = _absolute(base, _unwrap_feed_scheme((attrs.get("href") or "").strip()))
        if url is not None and url != page_url:
            best = (rank, url)
    return best[1] if best else None


def not_found_detail(page_url: str) -> str:
    """The detail of a `no_feed_found` failure: what was looked for, and where."""
    kinds = ", ".join(FEED_LINK_TYPES[:-1]) + " or " + FEED_LINK_TYPES[-1]
    return f'no <link rel="alternate"> of type {kinds} in {page_url[:300]}'


def _unwrap_feed_scheme(href: str) -> str:
    """`feed:https://x` is https://x, `feed://x` is http://x (the old feed: URI scheme)."""
    if href[:5].lower() != "feed:":
        return href
    rest = href[5:]
    return "http:" + rest if rest.startswith("//") else rest


def _absolute(base: str, href: str | None) -> str | None:
    """`href` resolved against `base` (or `base` itself), if that is an absolute http(s) URL."""
    try:
        url = httpx.URL(base) if href is None else httpx.URL(base).join(href)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return str(url.copy_with(fragment=None))
