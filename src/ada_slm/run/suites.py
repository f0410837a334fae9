"""What an evaluation is given: a suite (its items, loaded by name or path and validated with FILE:LINE errors, or an
even subset of them) and the generation settings every arm of a study shares. No model here: evaluate.py generates."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from ada_slm.agl import glyphs as G
from ada_slm.errors import UserError
from ada_slm.files import iter_jsonl
from ada_slm.run.config import load_yaml
from ada_slm.schema import Strict


class SuiteItem(Strict):
    """One evaluation prompt."""

    id: str = Field(..., min_length=1, description="Unique within the suite; comparisons pair on it.")
    lang: str = Field(..., min_length=1, description="Prompt language: en, agl, jbo (Lojban), tok (Toki Pona), …")
    category: str = Field(..., min_length=1, description="AGL.md §3 category the item probes.")
    prompt: str = Field(..., min_length=1, description="The user message.")
    expected_certainty: str | None = Field(None, description="Certainty glyph the stated evidence calls for.")
    reference: str | None = Field(None, description="Reference AGL translation (for translation_chrf).")
    asks_protocol: bool = Field(False, description="The prompt asks for the Tonight Protocol (not spontaneous).")
    template: str | None = Field(
        None,
        description="The template a generated item was made from: items of one "
        "template share its effect, so the analysis samples templates, not items "
        "(a study's item_clusters). None: a hand-written item, its own template.",
    )

    @field_validator("expected_certainty")
    @classmethod
    def _glyph(cls, v):
        if v is not None and v not in G.CERTAINTY:
            raise ValueError(f"must be one of {' '.join(G.CERTAINTY)}")
        return v


class Suite(Strict):
    name: str
    description: str = ""
    items: list[SuiteItem] = Field(..., min_length=1)
    perplexity_texts: list[str] = Field(default_factory=list, description="Held-out AGL for perplexity.")


MAX_NEW_TOKENS = 4096  # far above any answer the suites ask for; a typo of 10^9 is refused, not planned for


class GenerationSettings(Strict):
    """Identical for every arm of a study; recorded next to the outputs.

    mode "greedy": chat template, greedy decoding (deterministic; batched == one at a time).
    mode "seed": the seed study's generation — raw prompt without the chat template, sampling at temperature
    0.8 with repetition penalty 1.1, 150 new tokens — but seeded, with `samples` draws per prompt so the
    sampling noise itself is measured."""

    mode: Literal["greedy", "seed"] = "greedy"
    max_new_tokens: int = Field(48, gt=0, le=MAX_NEW_TOKENS)
    batch_size: int = Field(32, gt=0, description="Prompts per generation batch (bench: 5.8× batch 1 at 32).")
    chat_template: bool = True
    temperature: float = Field(0.8, gt=0, description="Sampling temperature (mode seed).")
    repetition_penalty: float = Field(1.1, gt=0, description="Repetition penalty (mode seed).")
    samples: int = Field(1, gt=0, description="Draws per prompt (mode seed).")
    seed: int = Field(0, description="Sampling seed (mode seed).")

    @classmethod
    def seed_compatible(cls, samples: int = 1, batch_size: int = 32, seed: int = 0) -> GenerationSettings:
        return cls(
            mode="seed",
            chat_template=False,
            max_new_tokens=150,
            temperature=0.8,
            repetition_penalty=1.1,
            samples=samples,
            batch_size=batch_size,
            seed=seed,
        )


def suite_dirs() -> list[Path]:
    return [Path.cwd() / "suites", Path(str(resources.files("ada_slm") / "suites"))]


def available_suites() -> list[str]:
    names = set()
    for d in suite_dirs():
        if d.is_dir():
            names |= {p.stem for p in d.iterdir() if p.suffix in (".yaml", ".yml", ".jsonl")}
    return sorted(names)


def _find_suite(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    for d in suite_dirs():
        for ext in (".yaml", ".yml", ".jsonl"):
            if (d / f"{name}{ext}").is_file():
                return d / f"{name}{ext}"
    raise UserError(f"unknown suite {name!r} (available: {', '.join(available_suites())}; or give a file path)")


def _item_lines(text: str) -> list[int]:
    """Line number of each entry of `items:` in a YAML suite, for error messages."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    for key, value in getattr(root, "value", []) if isinstance(root, yaml.MappingNode) else []:
        if key.value == "items" and isinstance(value, yaml.SequenceNode):
            return [node.start_mark.line + 1 for node in value.value]
    return []


def load_suite(name: str) -> tuple[Suite, Path]:
    """A suite by name (suites/NAME.yaml in the working directory or the package) or by path."""
    path = _find_suite(name)
    if path.suffix == ".jsonl":
        items = []
        for lineno, obj in iter_jsonl(path):
            try:
                items.append(SuiteItem.model_validate(obj))
            except ValidationError as e:
                err = e.errors()[0]
                why = err["msg"].removeprefix("Value error, ")
                raise UserError(f"{path}:{lineno}: {'.'.join(map(str, err['loc']))}: {why}") from None
        raw = {"name": path.stem, "items": [i.model_dump() for i in items]}
        lines = []
    else:
        raw = load_yaml(path)  # FILE:LINE errors for malformed YAML
        raw.setdefault("name", path.stem)
        lines = _item_lines(path.read_text(encoding="utf-8"))
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = err["loc"]
        where = (
            f":{lines[loc[1]]}"
            if len(loc) > 1 and loc[0] == "items" and isinstance(loc[1], int) and loc[1] < len(lines)
            else ""
        )
        field = ".".join(map(str, loc))
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise UserError(f"{path}{where}: {field}: {msg}") from None
    seen = {}
    for i, item in enumerate(suite.items):
        if item.id in seen:
            where = f":{lines[i]}" if i < len(lines) else ""
            raise UserError(f"{path}{where}: duplicate item id {item.id!r}")
        seen[item.id] = i
    return suite, path


def subset(items: list, limit: int | None) -> list:
    """`limit` items spread evenly over the suite (so every language and category stays represented), in
    suite order; all items when limit is None or not smaller."""
    if not limit or limit >= len(items):
        return list(items)
    return [items[(i * len(items)) // limit] for i in range(limit)]
