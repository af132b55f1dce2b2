"""Near duplicates: signatures, the keyed grouping, clusters, and their properties."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dedup.decide import (
    INDEXED,
    NEW,
    LinkStats,
    _spanning_forest,
    day_number,
    decide,
    group_links,
    group_summary,
    indexed_member,
    member,
    member_keys,
    resolve_links,
    shard_links,
    shard_payloads,
    shard_summary,
)
from pipeline.dedup.near import (
    NearDupSettings,
    band_keys,
    compact,
    compact_similarity,
    signature,
    similarity,
    words_of,
)
from pipeline.steps.clean import fold_text
from pipeline.steps.deduplicate import DeduplicateArticles, in_lookback, partition_day
from schemas.records import Article
from tests.factories import make_article

T0 = datetime(2024, 6, 19, tzinfo=timezone.utc)
SETTINGS = NearDupSettings()
rnd = random.Random(3)
VOCAB = [f"w{i}" for i in range(3000)]


def words(n: int = 300) -> list[str]:
    return rnd.choices(VOCAB, k=n)


def edit(ws: list[str], share: float) -> list[str]:
    out = list(ws)
    for i in rnd.sample(range(len(out)), int(len(out) * share)):
        out[i] = rnd.choice(VOCAB)
    return out


def make(n: int, ws: list[str], minutes: int = 0, url: str | None = None) -> Article:
    return make_article(
        raw_id=f"raw-{n}",
        source=f"src-{n}",
        fetched_at=T0 + timedelta(minutes=minutes),
        title=f"Headline {n}",
        text=" ".join(ws),
        url=url or f"https://site{n}.example.com/story",
    )


def dedup(articles: list[Article]) -> dict[str, tuple[str, str]]:
    """{dropped article id: (kept article id, reason)}, decided in memory by pipeline.dedup.decide."""
    members = [member(a, SETTINGS) for a in articles]
    id_of = {m[0]: m[1] for m in members}
    drops = decide(members, SETTINGS)
    return {id_of[o]: (kept, reason) for o, (kept, reason, _) in drops.items()}


def test_similarity_tracks_edits() -> None:
    base = words()
    sig = signature(" ".join(base), SETTINGS)
    assert sig is not None and similarity(sig, sig) == 1.0
    light = signature(" ".join(edit(base, 0.05)), SETTINGS)
    heavy = signature(" ".join(edit(base, 0.5)), SETTINGS)
    other = signature(" ".join(words()), SETTINGS)
    assert similarity(sig, light) > SETTINGS.threshold > similarity(sig, heavy) > similarity(sig, other)
    for copy in (light, heavy, other):
        assert copy is not None
        assert abs(compact_similarity(compact(sig), compact(copy)) - similarity(sig, copy)) < 0.06


def test_short_texts_are_not_signed() -> None:
    assert signature("only a few words here", SETTINGS) is None


def test_near_copy_is_dropped_first_seen_kept_and_unrelated_kept() -> None:
    base = words()
    original, copy, unrelated = make(1, base, 0), make(2, edit(base, 0.1), 5), make(3, words(), 1)
    assert dedup([copy, unrelated, original]) == {copy.article_id: (original.article_id, "near_duplicate")}


def test_chains_collapse_to_the_first_seen_article() -> None:
    base = words()
    a = make(1, base, 0)
    b = make(2, edit(base, 0.1), 1)
    c = make(3, edit(b.text.split(), 0.1), 2)
    result = dedup([c, b, a])
    assert result[b.article_id][0] == a.article_id and result[c.article_id][0] == a.article_id


doc_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from([0.0, 0.05, 0.1, 0.6]), st.integers(0, 30)),
    min_size=1,
    max_size=8,
)
BASES = [words() for _ in range(4)]


def build(spec: list[tuple[int, float, int]]) -> list[Article]:
    local = random.Random(11)
    out = []
    for n, (base, share, minutes) in enumerate(spec):
        ws = list(BASES[base])
        for i in local.sample(range(len(ws)), int(len(ws) * share)):
            ws[i] = local.choice(VOCAB)
        out.append(make(n, ws, minutes))
    return out


@settings(max_examples=60, deadline=None)
@given(doc_strategy, st.randoms(use_true_random=False))
def test_order_and_repetition_change_nothing(spec: list[tuple[int, float, int]], shuffler) -> None:
    articles = build(spec)
    expected = dedup(articles)
    shuffled = list(articles)
    shuffler.shuffle(shuffled)
    assert dedup(shuffled) == expected
    kept = [a for a in articles if a.article_id not in expected]
    # Every drop points at an article that is kept.
    assert {root for root, _ in expected.values()} <= {a.article_id for a in kept}


def test_beam_step_finds_near_copies_against_the_index_too(tmp_path) -> None:
    from pipeline.lake.files import stage_partition
    from pipeline.lake.store import Lake
    from schemas.records import IndexEntry

    base, other = words(), words()
    old = make(1, base, 0)
    entry = IndexEntry(
        old.article_id, old.content_hash, old.fetched_at, old.published_at,
        signature(old.text, SETTINGS), DeduplicateArticles([], 7, SETTINGS).scheme, old.partition_date,
    )  # fmt: skip
    staged = stage_partition(str(tmp_path), "r" * 32, "dedup_index", old.partition_date, [entry])
    Lake(tmp_path).commit("r" * 32, [], [staged])
    index = [str(p) for p in Lake(tmp_path).committed_files("dedup_index")]

    copy_of_old = make(2, edit(base, 0.1), 60)
    fresh, fresh_copy = make(3, other, 61), make(4, edit(other, 0.05), 62)
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = p | beam.Create([fresh_copy, copy_of_old, fresh]) | DeduplicateArticles(index, 7, SETTINGS)
        assert_that(
            out["articles"] | beam.Map(lambda a: a.article_id), equal_to([fresh.article_id]), label="kept"
        )
        assert_that(
            out["duplicates"] | beam.Map(lambda d: (d.article_id, d.duplicate_of, d.reason)),
            equal_to(
                [
                    (copy_of_old.article_id, old.article_id, "near_duplicate"),
                    (fresh_copy.article_id, fresh.article_id, "near_duplicate"),
                ]
            ),
            label="dropped",
        )
        assert_that(
            out["duplicates"] | "Similarity" >> beam.Map(lambda d: SETTINGS.threshold <= d.similarity < 1.0),
            equal_to([True, True]),
            label="similarity",
        )
        assert_that(
            out["index"] | beam.Map(lambda e: e.signature is not None), equal_to([True]), label="index"
        )

    # Published more than the lookback after it, a copy is not compared with the indexed article.
    late_copy = make(5, edit(base, 0.1), minutes=8 * 24 * 60)
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = p | beam.Create([late_copy]) | DeduplicateArticles(index, 7, SETTINGS)
        assert_that(out["duplicates"], equal_to([]))


def test_out_of_window_index_answers_exact_keys_but_not_bands(tmp_path) -> None:
    from pipeline.lake.files import stage_partition
    from pipeline.lake.store import Lake
    from schemas.records import IndexEntry

    base = words()
    old = make(1, base, 0)
    scheme = DeduplicateArticles([], 7, SETTINGS).scheme
    entry = IndexEntry(
        old.article_id, old.content_hash, old.fetched_at, old.published_at,
        signature(old.text, SETTINGS), scheme, old.partition_date,
    )  # fmt: skip
    staged = stage_partition(str(tmp_path), "r" * 32, "dedup_index", old.partition_date, [entry])
    Lake(tmp_path).commit("r" * 32, [], [staged])
    index = [str(p) for p in Lake(tmp_path).committed_files("dedup_index")]
    month = 30 * 24 * 60
    # A month later: the same URL again is still known; a near copy under another URL is new.
    refetch = replace(make(1, base, month), raw_id="again")
    near_copy = make(2, edit(base, 0.1), month + 1)
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = p | beam.Create([refetch]) | DeduplicateArticles(index, 7, SETTINGS)
        assert_that(
            out["duplicates"] | beam.Map(lambda d: (d.article_id, d.duplicate_of, d.reason)),
            equal_to([(old.article_id, old.article_id, "same_url")]),
        )
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = p | beam.Create([near_copy]) | DeduplicateArticles(index, 7, SETTINGS)
        assert_that(out["articles"] | beam.Map(lambda a: a.article_id), equal_to([near_copy.article_id]))


def test_index_partitions_are_chosen_by_path() -> None:
    assert partition_day("/lake/_index/dedup/published_date=2024-06-19/part-1.parquet") == day_number(
        "2024-06-19"
    )
    assert partition_day("/lake/elsewhere/part-1.parquet") is None
    june_19 = day_number("2024-06-19")
    assert in_lookback(june_19, [june_19 + 7], 7) and in_lookback(june_19, [june_19 - 7, june_19 + 30], 7)
    assert not in_lookback(june_19, [june_19 + 8, june_19 - 8], 7)
    assert not in_lookback(june_19, [], 7)  # no new article: no partition is needed
    assert in_lookback(None, [], 7)  # a file outside any partition is always read


def test_near_copies_of_indexed_articles_count_within_the_lookback_only() -> None:
    base = words()
    old = make(1, base, 0)
    old_member = indexed_member(
        old.fetched_at, old.article_id, old.content_hash, signature(old.text, SETTINGS), 0
    )
    copy = member(make(2, edit(base, 0.1), 60), SETTINGS)
    for day, expected in ((copy[4] - 7, 1), (copy[4] + 7, 1), (copy[4] - 8, 0), (copy[4] + 8, 0)):
        drops = decide([copy, (*old_member[:4], day)], SETTINGS, 7)
        assert len(drops) == expected and all(r == "near_duplicate" for _, r, _ in drops.values())


def reference_links(members: list, settings: NearDupSettings, lookback_days: int) -> set:
    """Every key group gathered in one dict, no shards: what sharding must not change."""
    groups: dict[bytes, list] = {}
    for m in members:
        filed, keys = member_keys(m, settings)
        for key in keys:
            groups.setdefault(key, []).append(filed)
    return {link for kv in groups.items() for link in group_links(kv, settings, lookback_days)}


@settings(max_examples=40, deadline=None)
@given(doc_strategy, st.integers(1, 9), st.integers(1, 4), st.randoms(use_true_random=False))
def test_shards_and_batches_change_no_link(spec, shards: int, batches: int, shuffler) -> None:
    members = [member(a, SETTINGS) for a in build(spec)]
    shuffler.shuffle(members)
    payloads: dict[int, list[bytes]] = {}
    for b in range(batches):
        for shard, payload in shard_payloads(members[b::batches], SETTINGS, shards):
            assert 0 <= shard < shards
            payloads.setdefault(shard, []).append(payload)
    links = {link for ps in payloads.values() for link in shard_links(ps, SETTINGS, 7)}
    assert links == reference_links(members, SETTINGS, 7)
    assert resolve_links(links) == decide(members, replace(SETTINGS, shards=shards))


def test_band_keys_are_equal_exactly_when_bands_are() -> None:
    base = signature(" ".join(words()), SETTINGS)
    assert base is not None
    keys = band_keys(base, SETTINGS)
    assert len(keys) == SETTINGS.bands == len(set(keys))
    changed = bytearray(base)
    changed[0] ^= 1  # a value of band 0
    other = band_keys(bytes(changed), SETTINGS)
    assert other[0] != keys[0] and other[1:] == keys[1:]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=80))
def test_words_are_the_runs_of_word_characters(text: str) -> None:
    assert words_of(text) == re.findall(r"\w+", fold_text(text))


def loop_band_links(ordered: list, settings: NearDupSettings, lookback_days: int) -> set:
    """A band group's links pair by pair, as the definition reads: each new member against the
    `max_bucket_comparisons` signed members nearest before it that it may see."""
    links = set()
    for i, later in enumerate(ordered):
        if later[0][0] == INDEXED or later[3] is None:
            continue
        compared = 0
        for earlier in reversed(ordered[:i]):
            if compared == settings.max_bucket_comparisons:
                break
            if earlier[3] is None or not (
                earlier[0][0] != INDEXED or abs(later[4] - earlier[4]) <= lookback_days
            ):
                continue
            compared += 1
            sim = compact_similarity(later[3], earlier[3])
            if sim >= settings.threshold:
                links.add((later[0], earlier[0], earlier[1], "near_duplicate", round(sim, 4)))
    return links


index_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from([0.0, 0.05, 0.1]), st.integers(-10, 10), st.booleans()),
    max_size=8,
)  # indexed copies of BASES: (base, share of words changed, days from the run's, signed)


@settings(max_examples=100, deadline=None)
@given(doc_strategy, index_strategy, st.integers(1, 5), st.integers(1, 4))
def test_band_links_and_their_summary_match_the_pair_by_pair_definition(spec, index, cap, shards) -> None:
    """Bands: the comparisons made a diagonal at a time link exactly the pairs the pair-by-pair
    loop links (caps small enough to bind, indexed members inside and outside the lookback);
    and the summaries the shards hand on resolve exactly as every link does."""
    tight = replace(SETTINGS, max_bucket_comparisons=cap, shards=shards)
    members = [member(a, tight) for a in build(spec)]
    local = random.Random(13)
    for n, (base, share, days, signed) in enumerate(index):
        ws = list(BASES[base])
        for i in local.sample(range(len(ws)), int(len(ws) * share)):
            ws[i] = local.choice(VOCAB)
        sig = signature(" ".join(ws), tight) if signed else None
        fetched = T0 - timedelta(days=1, minutes=n)
        members.append(indexed_member(fetched, f"old-{n}", f"hash-{n}", sig, day_number("2024-06-19") + days))
    groups: dict[bytes, list] = {}
    for m in members:
        filed, keys = member_keys(m, tight)
        for key in keys:
            groups.setdefault(key, []).append(filed)
    every: set = set()
    for key, group in groups.items():
        links = set(group_links((key, group), tight, 7))
        if key[:1] == b"b":
            assert links == loop_band_links(sorted(set(group)), tight, 7)
        assert resolve_links(group_summary((key, group), tight, 7)) == resolve_links(links)
        every |= links
    payloads = [p for _, p in shard_payloads(members, tight, shards)]
    summaries = [shard_summary([p], tight, 7) for p in payloads]
    assert all(len(s) <= 2 * len(members) for s in summaries)
    assert resolve_links(link for s in summaries for link in s) == resolve_links(every)
    assert decide(members, tight) == resolve_links(every)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=60))
def test_a_spanning_forest_joins_what_every_edge_joins_with_one_edge_less_per_node(nodes, pairs) -> None:
    edges = [(a % nodes, b % nodes) for a, b in pairs]
    u = np.array([a for a, _ in edges], dtype=np.int64)
    v = np.array([b for _, b in edges], dtype=np.int64)

    def components(chosen: list[tuple[int, int]]) -> list[int]:
        parent = list(range(nodes))

        def find(x: int) -> int:
            while parent[x] != x:
                x = parent[x]
            return x

        for a, b in chosen:
            parent[max(find(a), find(b))] = min(find(a), find(b))
        return [find(x) for x in range(nodes)]

    forest = _spanning_forest(nodes, u, v).tolist()
    assert len(set(forest)) == len(forest)
    everything = components(edges)
    assert components([edges[i] for i in forest]) == everything
    assert len(forest) == nodes - len(set(everything))  # no edge joins what is joined already


def flood(n: int) -> list:
    """n new near-identical copies of one 300-word text (two words changed in each): in each
    band, one bucket holds most of them."""
    local = random.Random(5)
    base = [f"w{i}" for i in range(300)]
    out = []
    for k in range(n):
        ws = list(base)
        for i in local.sample(range(len(ws)), 2):
            ws[i] = f"v{k}x{i}"
        sig = signature(" ".join(ws), SETTINGS)
        out.append((f"{NEW}{k:049d}", f"article-{k}", f"hash-{k}", sig, 0))
    return out


def test_a_flood_of_near_copies_costs_comparisons_and_links_linear_in_its_size() -> None:
    cap = SETTINGS.max_bucket_comparisons
    counted = {}
    for n in (2500, 5000):
        members = flood(n)
        stats = LinkStats()
        links = shard_summary([p for _, p in shard_payloads(members, SETTINGS, 1)], SETTINGS, 7, stats)
        counted[n] = stats.comparisons
        # Each member meets at most `cap` members before it in each of its band buckets ...
        assert stats.comparisons <= n * SETTINGS.bands * cap
        # ... and hands on at most two links, however many of those were similar.
        assert stats.links == len(links) <= 2 * n
        drops = resolve_links(links)
        assert sorted(drops) == [m[0] for m in members[1:]]  # one cluster: the first copy is kept
        assert {(kept, why) for kept, why, _ in drops.values()} == {("article-0", "near_duplicate")}
        assert all(SETTINGS.threshold <= sim <= 1.0 for _, _, sim in drops.values())
    # Twice the copies, twice the comparisons: not four times, as comparing every pair would be.
    assert 1.9 < counted[5000] / counted[2500] < 2.1

    # One bucket of the flood on its own: exactly `cap` comparisons per member past the first `cap`.
    groups: dict[bytes, list] = {}
    for m in members:
        filed, keys = member_keys(m, SETTINGS)
        for key in keys[2:]:
            groups.setdefault(key, []).append(filed)
    key, biggest = max(groups.items(), key=lambda kv: len(kv[1]))
    size = len(biggest)
    assert size > 0.8 * len(members)
    stats = LinkStats()
    summary = group_summary((key, biggest), SETTINGS, 7, stats)
    assert stats.comparisons == sum(size - d for d in range(1, cap + 1)) < size * cap
    assert len(summary) <= 2 * size
