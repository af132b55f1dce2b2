"""What an unbounded stream remembers for deduplication across its windows (pure).

A window's articles are deduplicated by `pipeline.dedup.decide.decide` against each other and
against the committed articles they share a key with. The memory holds those committed
articles as index members, filed the way `decide` files them:

- under exact keys (article id, content hash): the first-seen member of each key, kept
  for good, as the persistent dedup index keeps it;
- under LSH band keys: the latest members with a signature, at most
  `max_bucket_comparisons` per key, and only while they were published within
  `lookback_days` of the newest window (the expiry: older ones are pruned).

It starts from the persistent dedup index (every earlier run, scheduled or streamed)
and learns each window's articles once that window is committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.dedup.decide import _BAND, Member, member_keys
from pipeline.dedup.near import NearDupSettings


@dataclass
class DedupMemory:
    exact: dict[bytes, Member] = field(default_factory=dict)  # signatures dropped
    bands: dict[bytes, list[Member]] = field(default_factory=dict)  # full signatures

    def __len__(self) -> int:
        return len(self.exact) + sum(len(m) for m in self.bands.values())


def remember(memory: DedupMemory, members: Iterable[Member], settings: NearDupSettings) -> None:
    """File committed (index) members; each exact key keeps its first-seen member."""
    cap = settings.max_bucket_comparisons
    for m in members:
        _, keys = member_keys(m, settings)
        plain = (m[0], m[1], m[2], None, m[4])
        for key in keys:
            if key[:1] == _BAND:
                bucket = memory.bands.setdefault(key, [])
                if m not in bucket:
                    bucket.append(m)
                    bucket.sort()
                    del bucket[:-cap]  # the latest `cap`: each new member compares with those at most
            else:
                known = memory.exact.get(key)
                if known is None or plain[0] < known[0]:
                    memory.exact[key] = plain


def candidates(memory: DedupMemory, new: Iterable[Member], settings: NearDupSettings) -> list[Member]:
    """The remembered members that share a key with one of `new`: all `decide` needs."""
    found: dict[str, Member] = {}
    for m in new:
        _, keys = member_keys(m, settings)
        for key in keys:
            if key[:1] == _BAND:
                for known in memory.bands.get(key, ()):
                    found[known[0]] = known  # the signed copy wins over a plain one
            else:
                plain = memory.exact.get(key)
                if plain is not None:
                    found.setdefault(plain[0], plain)
    return sorted(found.values(), key=lambda m: m[0])


def prune(memory: DedupMemory, newest_day: int, lookback_days: int) -> None:
    """Expire band members published more than `lookback_days` before `newest_day`."""
    for key in list(memory.bands):
        kept = [m for m in memory.bands[key] if m[4] >= newest_day - lookback_days]
        if kept:
            memory.bands[key] = kept
        else:
            del memory.bands[key]
