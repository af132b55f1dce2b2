"""A deterministic synthetic corpus: RSS files of ~2.5 KB multilingual articles."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from bench.dedup_corpus import vocabulary

SENTENCES = [
    "Russian Defence Minister Andrei Belousov held talks with Kim Jong Un in Pyongyang on artillery.",
    "South Korea's military said North Korea fired two ballistic missiles toward the East Sea.",
    "Le ministre russe de la Défense a rencontré le dirigeant nord-coréen lors d'une visite à Pyongyang.",
    "Министр обороны России провёл переговоры с Ким Чен Ыном о военном сотрудничестве.",
    "러시아와 북한은 포괄적 전략적 동반자 관계 조약을 체결했다고 조선중앙통신이 보도했다.",
    "Markets in Tokyo closed higher as exporters gained on a weaker yen and strong earnings.",
    "The European Union agreed a new package of sanctions on Russia over the war in Ukraine.",
    "Chinese and Russian officials discussed trade and energy cooperation at a summit in Beijing.",
    "Heavy rain caused flooding in several provinces, and officials warned of landslides.",
    "Ukrainian forces reported drone attacks on infrastructure near Kyiv overnight.",
    "Die Regierung in Seoul verurteilte den Raketenstart Nordkoreas als Provokation.",
    "Analysts said the treaty could deepen military cooperation between Moscow and Pyongyang.",
]


def paragraph(rnd: random.Random) -> str:
    """One news sentence (for the tagger) and filler words: every article is distinct,
    so deduplication keeps them all and the run writes every one."""
    vocab, cum_weights = vocabulary()
    return f"{rnd.choice(SENTENCES)} {' '.join(rnd.choices(vocab, cum_weights=cum_weights, k=45))}."


def write_corpus(folder: Path, articles: int, per_feed: int = 100, seed: int = 7) -> int:
    """Write `articles` items as RSS feed files under `folder`; returns bytes of article text."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2024, 6, 1, tzinfo=timezone.utc)
    total = 0
    for f in range(0, articles, per_feed):
        items = []
        for n in range(f, min(f + per_feed, articles)):
            body = "".join(f"<p>{escape(paragraph(rnd))} Item {n}.</p>" for _ in range(6))
            total += len(body)
            published = format_datetime(start + timedelta(minutes=7 * n))
            items.append(
                f"<item><title>Story {n}: {escape(rnd.choice(SENTENCES)[:80])}</title>"
                f"<link>https://bench.example.org/{n}?utm_source=rss</link>"
                f"<guid>bench-{n}</guid><pubDate>{published}</pubDate>"
                f"<description><![CDATA[{body}]]></description></item>"
            )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>Bench feed {f // per_feed}</title>{''.join(items)}</channel></rss>"
        )
        (folder / f"feed-{f // per_feed:05d}.xml").write_text(xml, encoding="utf-8")
    return total
