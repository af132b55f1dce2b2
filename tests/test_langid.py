"""Language detection reads only the title and the beginning of the body (`detect_language`):
on real press and on the written eval set it must give the label the whole text gives.

`python -m bench.langid` measures the speed and prints the tables (docs/benchmarks-speed.md).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import py3langid

from pipeline.steps.clean import clean_entry, detect_language
from pipeline.tagging.evaluate import DEFAULT_REAL_TEXTS
from schemas.records import Article
from tests.factories import make_entry

EVAL_SET = Path(__file__).parent / "eval" / "tagging"
MIN_AGREEMENT = 0.995  # overall and in every language


def _cleaned(folder: Path) -> list[tuple[str, Article]]:
    """(the collection's language, the cleaned article) for every record of folder/*.jsonl."""
    found = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                article = clean_entry(make_entry(title=record.get("title") or "", text=record["text"]))
                assert isinstance(article, Article)
                found.append((record["language"], article))
    return found


def _whole_text_language(article: Article) -> str:
    return str(py3langid.classify(f"{article.title}\n{article.text}".strip())[0])


def test_the_prefix_gives_the_whole_texts_label_on_real_press() -> None:
    articles = _cleaned(DEFAULT_REAL_TEXTS)
    # Most bodies are far longer than the prefix, so the prefix is what is being tested.
    assert len(articles) > 2500 and sum(len(a.text) > 2000 for _, a in articles) > len(articles) / 2
    agree: dict[str, list[bool]] = defaultdict(list)
    turned: Counter[tuple[str, str, str | None]] = Counter()
    for language, article in articles:
        whole = _whole_text_language(article)
        prefix = detect_language(article.title, article.text, None)
        assert article.language == prefix  # clean_entry labels with detect_language
        agree[language].append(prefix == whole)
        if prefix != whole:
            turned[(language, whole, prefix)] += 1
    shares = {language: sum(same) / len(same) for language, same in agree.items()}
    overall = sum(map(sum, agree.values())) / len(articles)
    assert len(shares) >= 9
    assert overall >= MIN_AGREEMENT, (overall, turned)
    assert min(shares.values()) >= MIN_AGREEMENT, (shares, turned)


def test_every_written_eval_article_gets_its_language() -> None:
    """No label of the written set may change: its 13 languages include four the real set
    lacks (de, it, ko, pt), so restricting py3langid to the real set's languages fails here."""
    articles = _cleaned(EVAL_SET)
    assert len(articles) >= 300 and len({language for language, _ in articles}) == 13
    wrong = Counter((language, a.language) for language, a in articles if a.language != language)
    assert not wrong, wrong
