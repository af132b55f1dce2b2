"""`newsbeam tag`: what the tagger makes of one text, and with `--explain` why.

For a taxonomy author: the entities and countries found, the topics with their
scores and evidence, and for every calibrated bilateral topic whose two parties
the text names, its salience features, each feature's share of the score and
the threshold, whether or not the topic was kept; likewise for every gated topic
(pipeline/tagging/salience.py: `gate`) whose rule fires in the text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pipeline.tagging.salience import Calibration
from pipeline.tagging.tagger import Tagger


def split_title(document: str) -> tuple[str, str]:
    """A text given as a seed .txt is: the first non-blank line is the title."""
    lines = document.strip().splitlines()
    return (lines[0].strip(), "\n".join(lines[1:]).strip()) if lines else ("", "")


def tag_report(tagger: Tagger, title: str, text: str, language: str | None, explain: bool) -> str:
    entities, topics, countries = tagger.tag(title, text, language)
    if not explain:
        return json.dumps(
            {
                "entities": [e._asdict() for e in entities],
                "topics": [t._asdict() for t in topics],
                "countries": list(countries),
            },
            ensure_ascii=False,
        )
    lines = [f"taxonomy {tagger.taxonomy.version}; language {language or '(any)'}", "", "entities:"]
    lines += [f"  {e.id} ({e.type}) x{e.mentions}" for e in entities] or ["  none"]
    lines += [f"countries: {', '.join(countries) or 'none'}", "", "topics:"]
    for t in topics:
        lines.append(f"  {t.id}  score {t.score:.3f}")
        lines += [f"    - {evidence}" for evidence in t.evidence]
    if not topics:
        lines.append("  none")
    kept = {t.id for t in topics}
    for rule in tagger.taxonomy.topics:
        calibration = rule.calibration
        if calibration is None:
            continue
        found = tagger.salience(title, text, rule.id, language)
        if found["mentions"] == 0:
            continue  # one of the parties is not named at all
        lines += _scored(f"{rule.id}: calibrated score", calibration, found, rule.id in kept)
    gated = tagger.gate_salience(title, text, language)
    for rule in tagger.taxonomy.topics:
        if rule.gate is not None and rule.id in gated:
            lines += _scored(f"{rule.id}: gate score", rule.gate, gated[rule.id], rule.id in kept)
    return "\n".join(lines)


def _scored(heading: str, layer: Calibration, found: Mapping[str, float], kept: bool) -> list[str]:
    """A logistic layer's score, threshold and verdict, and each feature's share of it."""
    verdict = "kept" if kept else "not kept"
    lines = ["", f"{heading} {layer.score(found):.3f}, threshold {layer.threshold:.2f} ({verdict})"]
    lines.append(f"  {'bias':<20} {layer.bias:+.3f}")
    for name, value in found.items():
        weight = layer.weights.get(name, 0.0)
        lines.append(f"  {name:<20} {value:6.3f} x {weight:+.3f} = {value * weight:+.3f}")
    return lines
