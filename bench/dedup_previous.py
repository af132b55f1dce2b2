"""The earlier shape of DeduplicateArticles, kept runnable as the benchmark's baseline.

One element per (key, member) through a single GroupByKey (an article's two
exact keys and one key per LSH band), the links gathered with ToList and the
clusters handed to the routing as a dict side input. The decisions are the
same pure functions as `pipeline.steps.deduplicate`'s; only the Beam shape differs.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from pipeline.dedup.decide import Member, group_links, member, member_keys, resolve_links
from pipeline.dedup.near import NearDupSettings
from pipeline.steps.common import split_by_type
from pipeline.steps.deduplicate import route_article, signature_scheme
from schemas.records import Article, Duplicate, IndexEntry


def keyed(m: Member, settings: NearDupSettings) -> Iterator[tuple[bytes, Member]]:
    filed, keys = member_keys(m, settings)
    light: Member = (*filed[:3], None, filed[4])
    for n, key in enumerate(keys):
        yield key, light if n < 2 else filed


class PreviousDeduplicateArticles(beam.PTransform):
    def __init__(self, lookback_days: int, settings: NearDupSettings):
        super().__init__()
        self.lookback_days, self.settings = lookback_days, settings

    def expand(self, articles: beam.PCollection) -> dict[str, beam.PCollection]:
        settings, lookback, scheme = self.settings, self.lookback_days, signature_scheme(self.settings)
        signed = articles | "Sign" >> beam.Map(lambda a: (a, member(a, settings)))
        drops = (
            signed
            | "Members" >> beam.Map(lambda s: s[1])
            | "Keys" >> beam.FlatMap(keyed, settings=settings)
            | "GroupByKey" >> beam.GroupByKey()
            | "Links" >> beam.FlatMap(group_links, settings=settings, lookback_days=lookback)
            | "AllLinks" >> beam.combiners.ToList()
            | "Resolve" >> beam.Map(resolve_links)
        )
        routed = signed | "Route" >> beam.FlatMap(
            route_article, drops=beam.pvalue.AsSingleton(drops), scheme=scheme
        )
        return split_by_type(routed, "Routed", articles=Article, duplicates=Duplicate, index=IndexEntry)
