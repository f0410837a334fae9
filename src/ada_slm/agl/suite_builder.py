"""The generated held-out evaluation suite: prompts from the held-out templates of agl/templates.yaml,
which no corpus the builder makes draws from, scored by the same metric code as every suite (metrics.py).

Why: with the 133 hand-written multilang items the item term dominates a comparison's uncertainty, so more
seeds barely sharpen it; more items do. Every category gets `per_category` items, its held-out templates in
turn (each equally often, unless one runs out of distinct prompts); the item id names its template
(`certainty-t24-001`: template certainty/24). The languages are the builder's: English prompts in every category,
and English, Lojban and Toki Pona sources in
polyglot (the builder has no AGL-language prompts, so this suite has none either).

Determinism: category `c` draws from `random.Random(f"suite:{seed}:{c}")`, so the same arguments give the
same items in the same order; `ada-slm data suite` writes them as JSONL, and suites/agl-heldout.jsonl is
that command's output with the defaults (tests/agl/test_suite_builder.py rebuilds it and compares).
"""

from __future__ import annotations

import random

from ada_slm.agl.builder import CATEGORIES
from ada_slm.agl.generators import GENERATORS, default_templates
from ada_slm.agl.quality import QualityFilter
from ada_slm.agl.templates import TemplateBook
from ada_slm.errors import UserError

SUITE_NAME = "agl-heldout"
DEFAULT_PER_CATEGORY = 100
DEFAULT_SEED = 0
# how many generator calls one item may take before a category's held-out space counts as exhausted
MAX_ATTEMPTS_PER_ITEM = 40


def build_heldout_suite(
    per_category: int = DEFAULT_PER_CATEGORY, seed: int = DEFAULT_SEED, templates: TemplateBook | None = None
) -> list[dict]:
    """Suite items (dicts with the fields of evaluate.SuiteItem), category by category in builder order.
    `templates`: a template file read by templates.load_templates; default the shipped agl/templates.yaml."""
    if not isinstance(per_category, int) or per_category <= 0:
        raise UserError(f"--per-category must be a positive integer, got {per_category}")
    quality = QualityFilter()  # every reference answer parses; no answer repeated
    prompts: set[str] = set()
    items = []
    book = templates or default_templates()
    for category in CATEGORIES:
        rng = random.Random(f"suite:{seed}:{category}")
        held_out = book.categories[category].held_out_indices
        got = tries = 0
        while got < per_category:
            tries += 1
            if tries > MAX_ATTEMPTS_PER_ITEM * per_category + 1000:
                raise UserError(
                    f"category {category!r}: only {got} of {per_category} distinct held-out items "
                    f"after {tries} tries; ask for fewer per category"
                )
            template = held_out[tries % len(held_out)]  # in turn, skipping on past one that repeats
            sample = GENERATORS[category](rng, [template], book)
            if sample.prompt in prompts or quality.accept(sample.prompt, sample.response) is not None:
                continue
            prompts.add(sample.prompt)
            got += 1
            item: dict[str, str | bool] = {
                "id": f"{category}-t{template}-{got:03d}",
                "lang": sample.lang,
                "category": category,
                "template": f"{category}-t{template}",
                "prompt": sample.prompt,
            }
            if sample.extra.get("expected_certainty"):
                item["expected_certainty"] = sample.extra["expected_certainty"]
            if sample.extra.get("reference"):
                item["reference"] = sample.extra["reference"]
            if category == "protocol":  # every protocol template asks for a seal: not spontaneous there
                item["asks_protocol"] = True
            items.append(item)
    return items
