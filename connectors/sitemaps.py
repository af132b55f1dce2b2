"""Google News sitemaps (https://www.sitemaps.org, sitemap-news/0.9) read as feeds.

A feed URL may answer with a sitemap instead of RSS/Atom: its root element is
`<urlset>` or `<sitemapindex>` (the sitemap namespace, an older one or none). The
body has been through the same pre-pass as every feed (`connectors.feeds.prepare_body`:
decoded, internal DTD subsets removed, forbidden characters dropped), so no entity is
ever expanded; it is then read incrementally, one `<url>` at a time, each one freed
once read.

- `<urlset>`: each `<url>` carrying `<news:news>` is an item: `<loc>` its link,
  `<news:title>` its title, `<news:publication_date>` (else `<lastmod>`) its date,
  `<news:publication>`'s `<news:language>` and `<news:name>` its language and
  publisher, `<news:keywords>` its tags. An item has no text of its own: its page is
  fetched (`pipeline/steps/pages.py`) whether or not the feed sets `fetch_articles`.
  `<url>`s without `<news:news>` are a site's ordinary pages, not news: they are not
  read, and one `sitemap_not_news` problem counts them.
- `<sitemapindex>`: lists other sitemaps and gives no items of its own. A feed poll
  follows it (`connectors/http.py`): the sitemaps `children_to_follow` picks, at most
  `MAX_CHILDREN`, news ones and the newest first, are fetched in the same poll and land
  as documents of their own, so here an index read from a feed URL gives nothing but a
  `sitemap_index_capped` problem naming the sitemaps left out, if any. An index read from
  a seed file (its origin is a path, not an http(s) URL) is not followed: one
  `sitemap_index_not_followed` problem names the sitemaps it lists.

Elements are matched by local name, whatever namespace prefix a generator chose.
An XML error keeps the `<url>`s read before it (`malformed_feed_partial`).
"""

from __future__ import annotations

import calendar
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from feedparser.datetimes import _parse_date  # the parser feedparser itself uses
from feedparser.urls import _urljoin

from connectors.errors import Problem

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
URLSET, SITEMAP_INDEX = "urlset", "sitemapindex"

_SNIFF_BYTES = 64 * 1024  # the root element must start within this much of the document
_HINT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:urlset|sitemapindex)[\s>/]")
_WIDE_STARTS = (b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")  # UTF-16/32: the hint cannot see it
_SHOWN_CHILDREN = 5
# A feed poll fetches at most this many of the sitemaps an index lists (an `[http]` setting
# would be the place to tune it; none exists). Google News asks for one news sitemap per
# site; indexes of news sites list a handful of news sitemaps before their many page ones.
MAX_CHILDREN = 20
_NEWS = re.compile(r"news", re.IGNORECASE)
_WEB = ("http://", "https://")


@dataclass
class SitemapItem:
    link: str
    title: str = ""
    published: str | None = None
    published_parsed: object = None  # time.struct_time in UTC, as feedparser gives it
    language: str | None = None
    publisher: str | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChildSitemap:
    """One `<sitemap>` of an index: its `<loc>` (joined to the index's URL) and `<lastmod>`."""

    loc: str
    lastmod: str | None = None


@dataclass
class Sitemap:
    kind: str  # URLSET | SITEMAP_INDEX
    items: list[SitemapItem | None] = field(default_factory=list)  # one per <url>; None: not news
    children: list[ChildSitemap] = field(default_factory=list)  # a sitemap index's <sitemap>s
    problems: list[Problem] = field(default_factory=list)


def might_be_sitemap(body: bytes) -> bool:
    """A cheap test on undecoded bytes: False means `body` is certainly no sitemap."""
    return body.startswith(_WIDE_STARTS) or _HINT.search(body, 0, _SNIFF_BYTES) is not None


def root_kind(prepared: bytes) -> str | None:
    """URLSET or SITEMAP_INDEX when the prepared (UTF-8) document's root element is one.
    Only the start of the document is parsed, a kilobyte at a time, up to the root's tag."""
    parser: Any = ET.XMLPullParser(events=("start",))
    for offset in range(0, min(len(prepared), _SNIFF_BYTES), 1024):
        try:
            parser.feed(prepared[offset : offset + 1024])
        except ET.ParseError:
            return None
        for _event, element in parser.read_events():
            local = _local(element.tag)
            return local if local in (URLSET, SITEMAP_INDEX) else None
    return None


def parse_sitemap(prepared: bytes, kind: str, base_url: str) -> Sitemap:
    """The items (or, for an index, the child sitemaps) of a prepared sitemap document."""
    sitemap = Sitemap(kind)
    child_tag = "url" if kind == URLSET else "sitemap"
    depth, root = 0, None
    try:
        for event, element in ET.iterparse(io.BytesIO(prepared), events=("start", "end")):
            if event == "start":
                depth += 1
                root = element if root is None else root
                continue
            depth -= 1
            if depth != 1:
                continue
            if _local(element.tag) == child_tag:
                if kind == URLSET:
                    sitemap.items.append(_url(element, base_url))
                else:
                    loc = _child_text(element, "loc")
                    if loc:
                        lastmod = _child_text(element, "lastmod") or None
                        sitemap.children.append(ChildSitemap(_joined(base_url, loc), lastmod))
            assert root is not None
            root.clear()  # what has been read is not kept: memory stays flat on 50,000 <url>s
    except ET.ParseError as exc:
        kept = sum(1 for i in sitemap.items if i is not None)
        detail = f"ParseError: {exc}" + (f" ({kept} entries kept)" if kept else "")
        sitemap.problems.append(Problem("malformed_feed_partial" if kept else "malformed_feed", detail[:500]))
    if kind == SITEMAP_INDEX:
        problem = _index_problem(sitemap.children, followed=base_url[:8].lower().startswith(_WEB))
        if problem is not None:
            sitemap.problems.append(problem)
    plain = sum(1 for i in sitemap.items if i is None)
    if plain:
        sitemap.problems.append(
            Problem(
                "sitemap_not_news",
                f"{plain} of {len(sitemap.items)} <url> entries carry no <news:news>: "
                "a site's pages, not news; not read",
            )
        )
    return sitemap


def children_to_follow(children: list[ChildSitemap]) -> tuple[list[ChildSitemap], list[ChildSitemap]]:
    """The sitemaps of an index a feed poll fetches, in the order it fetches them, and the
    ones it leaves out: each `<loc>` once; those whose URL says "news" first, then the most
    recent `<lastmod>` first (none: last), then in the index's order; `MAX_CHILDREN` at most."""
    unique: dict[str, ChildSitemap] = {}
    for child in children:
        unique.setdefault(child.loc, child)
    ranked = sorted(
        enumerate(unique.values()),
        key=lambda pair: (_NEWS.search(pair[1].loc) is None, -_timestamp(pair[1].lastmod), pair[0]),
    )
    ordered = [child for _, child in ranked]
    return ordered[:MAX_CHILDREN], ordered[MAX_CHILDREN:]


def _timestamp(value: str | None) -> float:
    """A `<lastmod>` as seconds since the epoch; none or unreadable: minus infinity."""
    parsed: object = _date(value)
    if parsed is None:
        return float("-inf")
    try:
        return float(calendar.timegm(parsed))  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):
        return float("-inf")


def _index_problem(children: list[ChildSitemap], followed: bool) -> Problem | None:
    """What a sitemap index says when parsed: read from a feed URL it was followed by the
    poll, so only the sitemaps over the cap are named; read from a seed file it was not."""
    if not followed:
        detail = (
            f"a sitemap index listing {len(children)} sitemaps, not followed (only a feed poll "
            f"follows an index): configure the news sitemaps among them as feeds: {_shown(children)}"
        )
        return Problem("sitemap_index_not_followed", detail[:1000])
    _, left_out = children_to_follow(children)
    if not left_out:
        return None
    detail = (
        f"a sitemap index listing {len(children)} sitemaps; a poll follows {MAX_CHILDREN} of them "
        f"(news first, newest <lastmod> first): not followed: {_shown(left_out)}"
    )
    return Problem("sitemap_index_capped", detail[:1000])


def _shown(children: list[ChildSitemap]) -> str:
    shown = ", ".join(c.loc for c in children[:_SHOWN_CHILDREN])
    more = len(children) - _SHOWN_CHILDREN
    return (shown or "(none)") + (f" and {more} more" if more > 0 else "")


def _url(element: ET.Element, base: str) -> SitemapItem | None:
    news = _child(element, "news")
    if news is None:
        return None
    loc = _child_text(element, "loc")
    item = SitemapItem(link=_joined(base, loc) if loc else "")
    item.title = _child_text(news, "title")
    published = _child_text(news, "publication_date") or None
    lastmod = _child_text(element, "lastmod") or None
    item.published = published or lastmod
    item.published_parsed = _date(published) or _date(lastmod)
    publication = _child(news, "publication")
    if publication is not None:
        item.language = _child_text(publication, "language") or None
        item.publisher = _child_text(publication, "name") or None
    keywords = _child_text(news, "keywords")
    item.keywords = tuple(k.strip() for k in keywords.split(",") if k.strip())
    return item


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, local: str) -> ET.Element | None:
    for child in element:
        if _local(child.tag) == local:
            return child
    return None


def _child_text(element: ET.Element, local: str) -> str:
    child = _child(element, local)
    if child is None:
        return ""
    return (child.text or "").strip() if not len(child) else "".join(child.itertext()).strip()


def _joined(base: str, link: str) -> str:
    # An absolute link (nearly all of them) as it is: joining costs as much as the rest of a <url>.
    if link[:8].lower().startswith(_WEB):
        return link
    return str(_urljoin(base, link))


def _date(value: str | None) -> object:
    return _parse_date(value) if value else None
