"""Deterministic RSS 2.0 and Atom 1.0 feeds with the variety real feeds have: entities,
CDATA and escaped HTML, relative links, guid flavours, several date formats and
namespaces. tests/test_fastfeed.py and bench/parsing.py share them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from xml.sax.saxutils import escape

from bench.corpus import SENTENCES, paragraph

_TITLE_EXTRAS = ["", " &amp; more", " &lt;b&gt;live&lt;/b&gt;", " — «quoted»", " &#8217;s", "  "]
_START = datetime(2024, 6, 1, tzinfo=timezone.utc)


def _body(rnd: random.Random, paragraphs: int) -> str:
    parts = [f"<p>{escape(paragraph(rnd))}</p>" for _ in range(paragraphs)]
    if rnd.random() < 0.3:
        parts.insert(1, "<script>track()</script><style>p{}</style>")
    if rnd.random() < 0.2:
        parts.append('<p><a href="/more">More</a> &amp; <img src="x.png"/> <br/>tail</p>')
    return "".join(parts)


def _date(rnd: random.Random, n: int, atom: bool) -> str:
    when = (_START + timedelta(minutes=7 * n)).astimezone(timezone(timedelta(hours=rnd.choice([0, 9, -5]))))
    if atom or rnd.random() < 0.2:
        return when.isoformat().replace("+00:00", "Z")
    return format_datetime(when)


def rss_feed(seed: int, items: int = 50, paragraphs: int = 6) -> bytes:
    rnd = random.Random(seed)
    out = []
    for n in range(items):
        title = escape(rnd.choice(SENTENCES)[:70]) + rnd.choice(_TITLE_EXTRAS)
        body = _body(rnd, paragraphs)
        kind = rnd.random()
        link = f"https://wire.example.org/{seed}/{n}?utm_source=rss&amp;id={n}"
        if kind < 0.15:
            link = f"/{seed}/{n}/relative"
        fields = [f"<title>{title}</title>"]
        if kind > 0.1:
            fields.append(f"<link>{link}</link>")
        guid = rnd.random()
        if guid < 0.4:
            fields.append(f'<guid isPermaLink="false">wire-{seed}-{n}</guid>')
        elif guid < 0.7:
            fields.append(f"<guid>https://wire.example.org/p/{seed}-{n}</guid>")
        date = _date(rnd, n, atom=False)
        fields.append(f"<dc:date>{date}</dc:date>" if rnd.random() < 0.2 else f"<pubDate>{date}</pubDate>")
        if rnd.random() < 0.5:
            fields.append(f"<description><![CDATA[{body[:300]}]]></description>")
            fields.append(f"<content:encoded><![CDATA[{body}]]></content:encoded>")
        else:
            fields.append(f"<description>{escape(body)}</description>")
        if rnd.random() < 0.3:
            fields.append(f"<category>news</category><dc:creator>Desk {n}</dc:creator>")
        if rnd.random() < 0.2:
            fields.append(f'<media:content url="https://img.example.org/{n}.jpg" medium="image"/>')
        out.append("<item>" + "".join(fields) + "</item>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">'
        f"<channel><title>Wire {seed} &amp; Co</title><link>https://wire.example.org/</link>"
        "<description>generated</description><language>en</language>" + "\n".join(out) + "</channel></rss>"
    ).encode("utf-8")


def atom_feed(seed: int, items: int = 50, paragraphs: int = 6) -> bytes:
    rnd = random.Random(seed)
    out = []
    for n in range(items):
        title = escape(rnd.choice(SENTENCES)[:70]) + rnd.choice(_TITLE_EXTRAS)
        body = _body(rnd, paragraphs)
        fields = [f'<title type="{rnd.choice(["text", "html"])}">{title}</title>']
        fields.append(f"<id>urn:example:{seed}:{n}</id>")
        if rnd.random() < 0.9:
            href = f"https://east.example.net/{seed}/{n}" if rnd.random() < 0.8 else f"{n}/rel"
            fields.append(f'<link rel="alternate" type="text/html" href="{href}"/>')
        if rnd.random() < 0.3:
            fields.append(f'<link rel="self" href="https://east.example.net/api/{n}"/>')
        fields.append(f"<updated>{_date(rnd, n + 1, atom=True)}</updated>")
        if rnd.random() < 0.6:
            fields.append(f"<published>{_date(rnd, n, atom=True)}</published>")
        if rnd.random() < 0.6:
            fields.append(f'<content type="html">{escape(body)}</content>')
        else:
            fields.append(f'<summary type="text">{escape(paragraph(rnd))}</summary>')
        fields.append("<author><name>Desk</name></author>")
        out.append("<entry>" + "".join(fields) + "</entry>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="ru">'
        f"<title>East {seed}</title><id>urn:example:feed:{seed}</id><updated>2024-06-19T12:00:00Z</updated>"
        + "\n".join(out)
        + "</feed>"
    ).encode("utf-8")
