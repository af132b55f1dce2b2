"""Synthetic articles with planted duplicates and the truth about them.

Each shard is generated from its own seed, so any worker can build it alone.
Per 100 articles: 85 originals, 10 near duplicates (5–20% of words replaced,
inserted or deleted) and 5 exact copies under another URL, each pointing at an
original of the same shard.
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from pipeline.steps.clean import content_fingerprint
from schemas.ids import stable_id
from schemas.records import Article

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
VOCABULARY = 50_000
WORDS_PER_ARTICLE = 400  # about 2.5 KB of text


@lru_cache(maxsize=1)
def vocabulary() -> tuple[list[str], list[float]]:
    """Words with Zipf-distributed cumulative weights."""
    rnd = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rnd.choices(letters, k=rnd.randint(2, 9))) for _ in range(VOCABULARY)]
    weights = [1 / (rank + 1) ** 1.05 for rank in range(VOCABULARY)]
    return words, list(itertools.accumulate(weights))


def _edit(words: list[str], share: float, rnd: random.Random) -> list[str]:
    vocab, weights = vocabulary()
    out = list(words)
    for _ in range(int(len(out) * share)):
        op, i = rnd.random(), rnd.randrange(len(out))
        if op < 0.6:
            out[i] = rnd.choices(vocab, cum_weights=weights)[0]
        elif op < 0.8:
            out.insert(i, rnd.choices(vocab, cum_weights=weights)[0])
        else:
            del out[i]
    return out


def _article(n: int, words: list[str], source: str) -> Article:
    text = "\n".join(" ".join(words[i : i + 60]) for i in range(0, len(words), 60))
    title = f"Story {n}"
    url = f"https://{source}.example.org/{n}"
    return Article(
        article_id=stable_id("url", url),
        url=url,
        canonical_url=url,
        source=source,
        source_kind="feed",
        title=title,
        text=text,
        language="en",
        published_at=T0 + timedelta(minutes=n),
        fetched_at=T0 + timedelta(minutes=n, seconds=30),
        date_source="published",
        content_hash=content_fingerprint(title, text),
        guid=None,
        raw_id=stable_id("raw", str(n)),
    )


def shard(index: int, size: int) -> list[tuple[Article, str | None, str | None]]:
    """(article, planted kind or None, id of the original it copies or None)."""
    vocab, weights = vocabulary()
    rnd = random.Random(1000 + index)
    out: list[tuple[Article, str | None, str | None]] = []
    originals: list[tuple[Article, list[str]]] = []
    for k in range(size):
        n = index * size + k
        slot = k % 100
        if slot < 85 or not originals:
            words = rnd.choices(vocab, cum_weights=weights, k=WORDS_PER_ARTICLE)
            a = _article(n, words, "wire")
            originals.append((a, words))
            out.append((a, None, None))
        elif slot < 95:
            original, words = rnd.choice(originals)
            copy = _article(n, _edit(words, rnd.uniform(0.05, 0.20), rnd), "mirror")
            out.append((copy, "near", original.article_id))
        else:
            original, words = rnd.choice(originals)
            copy = _article(n, words, "syndicate")
            out.append((copy, "exact", original.article_id))
    return out
