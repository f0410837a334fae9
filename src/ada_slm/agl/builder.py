"""Build an AGL corpus: category mix -> generators -> quality filter -> train (and held-out) JSONL.

Determinism: each category draws from its own `random.Random(f"{seed}:{category}")`, the final order comes
from `random.Random(seed)`, and JSON is written with a fixed key order, so the same arguments give a
byte-identical file on any machine.

Held-out split: with `val_fraction > 0`, whole prompt templates are assigned to the validation side per
category, so no template is shared across the split boundary (the seed's eval split duplicated train items).
With `val_size`, the held-out side is a fixed set: `val_size` examples drawn first, from their own random
stream, so every corpus size of one seed and mix has the very same held-out items (a study's arms with 2k and
5k examples then report held-out losses on the same items); the training side is the remaining
`size - val_size` examples.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from ada_slm.agl import MAX_CORPUS_SIZE
from ada_slm.agl.generators import GENERATORS, Sample, default_templates
from ada_slm.agl.glyphs import words
from ada_slm.agl.quality import QualityFilter
from ada_slm.agl.templates import TemplateBook
from ada_slm.errors import UserError
from ada_slm.files import load_yaml

CATEGORIES = tuple(GENERATORS)
# The "pure AGL" mix: every category of AGL.md §3 except polyglot. Weights are relative.
PURE_MIX = {
    "certainty": 0.16,  # the seed's headline skill: 5 levels, transitions, evidence-fit
    "temporal": 0.12,
    "protocol": 0.06,  # kept small: the protocol string should not dominate what the model learns
    "edge": 0.10,
    "reasoning": 0.14,
    "self": 0.10,
    "space": 0.10,
    "existential": 0.10,
    "tool": 0.12,
}
POLYGLOT_MIX = {"polyglot": 1.0}
NAMED_MIXES = {"pure": PURE_MIX, "polyglot": POLYGLOT_MIX}
# A generator may be asked this many times per example it must deliver before we call its space exhausted.
MAX_ATTEMPTS_PER_EXAMPLE = 40


@dataclass
class Corpus:
    train: list[dict]
    val: list[dict]
    mix: dict[str, float]
    seed: int
    dropped: Counter = field(default_factory=Counter)
    attempts: int = 0


def resolve_mix(mix: str | dict) -> dict[str, float]:
    """'pure', 'polyglot', a YAML file of {category: weight}, or such a dict -> normalised weights."""
    source = "mix"
    if isinstance(mix, str):
        if mix in NAMED_MIXES:
            return dict(NAMED_MIXES[mix])
        path = Path(mix)
        if not path.is_file():
            raise UserError(f"unknown mix {mix!r}: use 'pure', 'polyglot' or a YAML file of category weights")
        source = str(path)
        mix = load_yaml(path)
    if not isinstance(mix, dict) or not mix:
        raise UserError(f"{source}: expected a mapping of category -> weight")
    weights = {}
    for key, value in mix.items():
        if key not in CATEGORIES:
            raise UserError(f"{source}: unknown category {key!r} (known: {', '.join(CATEGORIES)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise UserError(f"{source}: weight of {key!r} must be a number ≥ 0 and finite, got {value!r}")
        if value > 0:
            weights[key] = float(value)
    if not weights:
        raise UserError(f"{source}: all weights are zero")
    return weights


def allocate(size: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split `size` over categories in proportion to `weights`, exactly (largest remainder)."""
    total = sum(weights.values())
    raw = {c: size * w / total for c, w in weights.items()}
    counts = {c: int(v) for c, v in raw.items()}
    by_remainder = sorted(raw, key=lambda c: (-(raw[c] - counts[c]), CATEGORIES.index(c)))
    for c in by_remainder[: size - sum(counts.values())]:
        counts[c] += 1
    return counts


def _example(sample: Sample, category: str) -> dict:
    digest = hashlib.sha1(f"{sample.prompt}\x00{sample.response}".encode()).hexdigest()[:12]
    row = {
        "id": f"{category}-{digest}",
        "category": category,
        "lang": sample.lang,
        "template": sample.template,
        "messages": [
            {"role": "user", "content": sample.prompt},
            {"role": "assistant", "content": sample.response},
        ],
    }
    row.update(sample.extra)
    return row


def build_corpus(
    size: int,
    mix: str | dict = "pure",
    seed: int = 0,
    val_fraction: float = 0.0,
    progress=None,
    val_size: int | None = None,
    templates: TemplateBook | None = None,
) -> Corpus:
    """Generate `size` filtered examples (train + val together). `progress(n)` is called as examples land.
    With `val_size`, the held-out side is those many examples, the same for every `size` (module docstring).
    `templates`: a template file read by templates.load_templates; default the shipped agl/templates.yaml."""
    if not isinstance(size, int) or size <= 0:
        raise UserError(f"--size must be a positive integer, got {size}")
    if size > MAX_CORPUS_SIZE:
        raise UserError(
            f"--size {size}: at most {MAX_CORPUS_SIZE:,} examples (the templates run out of distinct "
            "examples long before; a larger corpus is yours to bring with data.path)"
        )
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if val_size is not None:
        return _build_with_fixed_val(size, mix, seed, val_fraction, val_size, progress, templates)
    book = templates or default_templates()
    weights = resolve_mix(mix)
    counts = allocate(size, weights)
    # the held-out share is allocated exactly too, in proportion to each category's count
    val_counts = allocate(round(size * val_fraction), counts) if val_fraction > 0 else {}
    quality = QualityFilter()
    train: list[dict] = []
    val: list[dict] = []
    attempts = 0
    for category in CATEGORIES:
        n = counts.get(category, 0)
        if n == 0:
            continue
        rng = random.Random(f"{seed}:{category}")
        training = list(range(len(book.categories[category].templates)))
        n_val = min(val_counts.get(category, 0), n - 1)
        sides = [(train, training, n - n_val)]
        if n_val > 0:
            held_out = _held_out_templates(rng, len(training), val_fraction)
            sides = [(train, [t for t in training if t not in held_out], n - n_val), (val, held_out, n_val)]
        for out, allowed, need in sides:
            attempts += _generate(category, rng, allowed, need, quality, out, progress, book)
    order = random.Random(seed)
    order.shuffle(train)
    order.shuffle(val)
    return Corpus(train=train, val=val, mix=weights, seed=seed, dropped=quality.dropped, attempts=attempts)


def _held_out_templates(rng: random.Random, training_templates: int, val_fraction: float) -> list[int]:
    templates = range(training_templates)
    k = min(len(templates) - 1, max(1, round(len(templates) * val_fraction)))
    return sorted(rng.sample(templates, k))


def _generate(
    category: str,
    rng: random.Random,
    allowed: list[int],
    need: int,
    quality: QualityFilter,
    out: list[dict],
    progress,
    book: TemplateBook,
) -> int:
    """Append `need` accepted examples of `category` to `out`; returns the generator calls it took."""
    got = tries = 0
    while got < need:
        tries += 1
        if tries > MAX_ATTEMPTS_PER_EXAMPLE * need + 1000:
            raise UserError(
                f"category {category!r}: only {got} of {need} unique examples after {tries} tries; "
                "ask for fewer examples of this category"
            )
        sample = GENERATORS[category](rng, allowed, book)
        if quality.accept(sample.prompt, sample.response) is None:
            out.append(_example(sample, category))
            got += 1
            if progress:
                progress(1)
    return tries


def _build_with_fixed_val(
    size: int, mix, seed: int, val_fraction: float, val_size: int, progress, templates: TemplateBook | None
) -> Corpus:
    """The held-out side first — its templates, counts, random stream and order depend only on (seed, mix,
    val_fraction, val_size) — then the training side, filtered against it (no answer is shared)."""
    if not isinstance(val_size, int) or not 0 < val_size < size:
        raise UserError(f"val_size must be a whole number in (0, size = {size}), got {val_size}")
    if val_fraction <= 0:
        raise UserError(
            "val_size needs val_fraction > 0: the share of each category's prompt templates that "
            "only the held-out side uses"
        )
    weights = resolve_mix(mix)
    book = templates or default_templates()
    val_counts, train_counts = allocate(val_size, weights), allocate(size - val_size, weights)
    quality = QualityFilter()
    train: list[dict] = []
    val: list[dict] = []
    attempts = 0
    streams, held_out = {}, {}
    for category in (c for c in CATEGORIES if c in weights):
        streams[category] = random.Random(f"{seed}:{category}")
        training = len(book.categories[category].templates)
        held_out[category] = _held_out_templates(streams[category], training, val_fraction)
        attempts += _generate(
            category,
            random.Random(f"{seed}:{category}:held-out"),
            held_out[category],
            val_counts[category],
            quality,
            val,
            progress,
            book,
        )
    for category, rng in streams.items():
        allowed = [t for t in range(len(book.categories[category].templates)) if t not in held_out[category]]
        attempts += _generate(category, rng, allowed, train_counts[category], quality, train, progress, book)
    random.Random(seed).shuffle(train)
    random.Random(f"{seed}:held-out").shuffle(val)
    return Corpus(train=train, val=val, mix=weights, seed=seed, dropped=quality.dropped, attempts=attempts)


def summarize(rows: list[dict]) -> dict:
    """Per category/lang counts, unique prompts and responses, mean AGL tokens per response."""
    by_group: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        by_group[(row.get("category", "?"), row.get("lang", "?"))].append(row)

    def stats(group: list[dict]) -> dict:  # a plain-text row (datasets_io) counts as a response
        prompts = [m["content"] for r in group for m in r.get("messages", []) if m["role"] == "user"]
        responses = [r["messages"][-1]["content"] if "messages" in r else r["text"] for r in group]
        return {
            "examples": len(group),
            "unique_prompts": len(set(prompts)),
            "unique_responses": len(set(responses)),
            "mean_response_tokens": round(mean(len(words(t)) for t in responses), 2) if responses else 0.0,
        }

    return {
        "groups": {f"{c}/{lang}": stats(g) for (c, lang), g in sorted(by_group.items())},
        "total": stats(rows),
    }
