"""Run one benchmark variant in this process and print one JSON line of results."""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connectors.fetch import HttpSettings
from connectors.seeds import parse_seed, read_seed_dir
from pipeline.config import RunConfig
from pipeline.dedup.decide import member
from pipeline.lake.files import stage_partition
from pipeline.run import run_cycle
from pipeline.steps.clean import clean_entry
from pipeline.steps.deduplicate import index_entry, signature_scheme
from pipeline.steps.parse import clean_or_reject, parse_raw
from pipeline.steps.tag import tag_article
from pipeline.tagging.tagger import Tagger, load_taxonomy
from schemas.records import Article, IndexEntry, Reject


def pure_functions(seeds: Path) -> int:
    """The same stage functions in one plain loop: the no-Beam baseline."""
    tagger = Tagger(load_taxonomy())
    articles = 0
    for raw in read_seed_dir(seeds, datetime.now(timezone.utc)):
        for entry in parse_seed(raw).entries:
            article = clean_entry(entry)
            if isinstance(article, Article):
                tagger.tag(article.title, article.text)
                articles += 1
    return articles


def pure_with_signing_and_writing(seeds: Path, out: Path) -> int:
    """The stage functions a run calls per article, in one plain loop: parse, clean, sign
    (the dedup member), tag, then one staged Parquet file per partition of `articles` and
    `dedup_index`. No Beam, no landing, no linking of near copies, no commit."""
    settings = RunConfig(
        seeds_dir=seeds, output_dir=out, taxonomy=None, feeds=(), http=HttpSettings()
    ).near_dup
    scheme, tagger, keep = signature_scheme(settings), Tagger(load_taxonomy()), frozenset[str]()
    articles: dict[str, list[Article]] = defaultdict(list)
    index: dict[str, list[IndexEntry]] = defaultdict(list)
    for raw in read_seed_dir(seeds, datetime.now(timezone.utc)):
        for entry in parse_raw(raw):
            article = clean_or_reject(entry) if not isinstance(entry, Reject) else entry
            if not isinstance(article, Article):
                continue
            sig = member(article, settings)[3]
            tagged = tag_article(tagger, keep, article)
            assert isinstance(tagged, Article)
            articles[tagged.partition_date].append(tagged)
            index[tagged.partition_date].append(index_entry(article, sig, scheme))
    run_id = "0" * 32
    tables: dict[str, dict[str, list[Any]]] = {"articles": dict(articles), "dedup_index": dict(index)}
    for table, parts in tables.items():
        for partition, records in sorted(parts.items()):
            stage_partition(str(out), run_id, table, partition, records)
    return sum(len(records) for records in articles.values())


def newsbeam_run(seeds: Path, out: Path, beam_args: list[str]) -> int:
    config = RunConfig(seeds_dir=seeds, output_dir=out, taxonomy=None, feeds=(), http=HttpSettings())
    report = run_cycle(config, beam_args)
    assert report.manifest is not None
    return int(report.manifest["stats"]["rows"].get("articles", 0))


def main() -> None:
    variant, seeds, out, *beam_args = sys.argv[1:]
    started = time.perf_counter()
    if variant == "pure":
        articles = pure_functions(Path(seeds))
    elif variant == "pure-full":
        articles = pure_with_signing_and_writing(Path(seeds), Path(out))
    else:
        articles = newsbeam_run(Path(seeds), Path(out), beam_args)
    seconds = time.perf_counter() - started
    # CPU of this process and its reaped children: a local Dask cluster's processes count.
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    peak_kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    result = {"articles": articles, "seconds": seconds, "cpu_seconds": cpu, "peak_mib": peak_kib / 1024}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
