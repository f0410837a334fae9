"""The prompt templates of the corpus builder as data: agl/templates.yaml, read and validated here.

The file holds what is wording — every prompt template, the answer text of the categories whose answer is a
fixed pattern, the held-out templates only the evaluation suite uses — and generators.py keeps what is logic:
drawing the words and glyphs and building the answers of the categories whose answer has a code-built shape.
A template is added by appending an entry to the file (its header says how ids and seeds depend on order).

Validation is two-step: the pydantic models below check the file's structure, then `load_templates` checks
every {placeholder} and shape against what the category's generator fills (the `Placeholders` it is given),
so a typo is a one-line UserError naming FILE:LINE and the entry instead of a KeyError mid-build.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ada_slm.agl import glyphs as G
from ada_slm.errors import UserError
from ada_slm.files import load_yaml
from ada_slm.schema import Strict

TEMPLATES_FILE = Path(__file__).with_name("templates.yaml")
Lang = Literal["en", "jbo", "tok"]


class _Strict(Strict):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Template(_Strict):
    """One prompt template and how the answer to it is made: an `answer` text or a code-built `shape`."""

    prompt: str = Field(
        min_length=1,
        description="The user prompt: str.format text; the category's generator "
        "fills its {placeholders} (listed in templates.yaml above each category).",
    )
    answer: str | None = Field(
        None,
        min_length=1,
        description="The assistant answer: str.format text over the "
        "category's answer placeholders. Give `answer` or `shape`, not both.",
    )
    shape: str | None = Field(
        None,
        min_length=1,
        description="The name of an answer the category's generator "
        "builds in code (e.g. certainty's `one_level`). Give `answer` or `shape`, not both.",
    )
    expected_certainty: str | None = Field(
        None,
        description="The certainty glyph (● ◕ ◑ ◔ ○) the prompt's "
        "evidence calls for, recorded on the example (the certainty_match "
        "metric); only with an `answer` (a shape chooses its own level).",
    )

    @field_validator("expected_certainty")
    @classmethod
    def _a_certainty_glyph(cls, value: str | None) -> str | None:
        if value is not None and value not in G.CERTAINTY:
            raise ValueError(f"must be one of {' '.join(G.CERTAINTY)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _answer_or_shape(self) -> Template:
        if (self.answer is None) == (self.shape is None):
            raise ValueError("give exactly one of `answer` (a text) and `shape` (a code-built answer)")
        if self.expected_certainty is not None and self.shape is not None:
            raise ValueError("expected_certainty goes with an `answer`; a shape chooses its own level")
        return self


class CategoryTemplates(_Strict):
    """The templates of one data category. Template ids are `<category>/<position>`: training templates
    first, then the held-out ones, so ids (and every seeded corpus) depend on the order."""

    templates: list[Template] = Field(
        min_length=2,
        description="Training templates: the builder draws these. "
        "At least two, so a held-out split can keep one for each side.",
    )
    held_out: list[Template] = Field(
        min_length=1,
        description="Held-out templates: no corpus draws them, only "
        "the generated evaluation suite (suite_builder.py); ids continue after "
        "the training templates.",
    )

    def template(self, index: int) -> Template:
        """The template with id `<category>/<index>`: a training one, or past them a held-out one."""
        if index < len(self.templates):
            return self.templates[index]
        return self.held_out[index - len(self.templates)]

    @property
    def held_out_indices(self) -> list[int]:
        return list(range(len(self.templates), len(self.templates) + len(self.held_out)))


class NativeRequests(_Strict):
    """ "Translate this into AGL", written in the source sentence's own language (polyglot prompts)."""

    training: dict[Lang, str] = Field(
        description="Per language (en, jbo, tok): the {native} placeholder of "
        "polyglot prompts, str.format text around {src}."
    )
    held_out: dict[Lang, str] = Field(
        description="Per language: the {native_heldout} placeholder, a rewording used only by held-out prompts."
    )

    @field_validator("training", "held_out")
    @classmethod
    def _every_language(cls, value: dict[str, str]) -> dict[str, str]:
        missing = sorted(set(get_args(Lang)) - set(value))
        if missing:
            raise ValueError(f"missing language(s) {', '.join(missing)}")
        return value


class TemplateBook(_Strict):
    """The whole file: the native requests and the templates of every data category."""

    native_requests: NativeRequests = Field(description="The polyglot category's requests in the source language.")
    categories: dict[str, CategoryTemplates] = Field(
        description="Data category (AGL.md §3) -> its templates; exactly the categories the generators know."
    )


@dataclass(frozen=True)
class Placeholders:
    """What one category's generator fills, to check its templates against (generators.py declares them)."""

    prompt: Mapping[str | None, frozenset[str]]  # shape name (None: a template with an `answer`) -> prompt fields
    answer: frozenset[str] = frozenset()  # the fields an `answer` text may use


def load_templates(path: str | Path, placeholders: Mapping[str, Placeholders]) -> TemplateBook:
    """Read and validate a template file; any mistake is one UserError line: FILE:LINE: entry: what is wrong."""
    path = Path(path)
    raw = load_yaml(path)  # FILE:LINE errors for malformed YAML
    try:
        book = TemplateBook.model_validate(raw)
    except ValidationError as e:
        errors = e.errors()  # a misspelt key is both unknown and missing: name the spelling
        error = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise _error(path, error["loc"], message.removeprefix("Value error, ")) from None
    problem = _placeholder_problem(book, placeholders)
    if problem:
        raise _error(path, *problem)
    return book


def _placeholder_problem(book: TemplateBook, placeholders: Mapping[str, Placeholders]):
    """(location, message) of the first category, shape or {placeholder} no generator fills, else None."""
    for category in book.categories:
        if category not in placeholders:
            return ("categories", category), f"unknown category (known: {', '.join(placeholders)})"
    for category in placeholders:
        if category not in book.categories:
            return ("categories",), f"category {category!r} is missing"
    for language in get_args(Lang):
        for side, texts in (("training", book.native_requests.training), ("held_out", book.native_requests.held_out)):
            problem = _unknown_field(texts[language], frozenset({"src"}))
            if problem:
                return ("native_requests", side, language), problem
    for category, fills in placeholders.items():
        for side in ("templates", "held_out"):
            for index, template in enumerate(getattr(book.categories[category], side)):
                found = _template_problem(template, fills)
                if found:
                    return ("categories", category, side, index, found[0]), found[1]
    return None


def _template_problem(template: Template, fills: Placeholders) -> tuple[str, str] | None:
    shapes = sorted(s for s in fills.prompt if s is not None)
    if template.shape is not None and template.shape not in fills.prompt:
        known = f"known: {', '.join(shapes)}" if shapes else "this category's answers are `answer` texts"
        return "shape", f"unknown shape {template.shape!r} ({known})"
    if template.answer is not None and None not in fills.prompt:
        return "answer", f"this category's answers are built in code: give a `shape` ({', '.join(shapes)})"
    problem = _unknown_field(template.prompt, fills.prompt[template.shape])
    if problem:
        return "prompt", problem
    problem = _unknown_field(template.answer, fills.answer) if template.answer is not None else None
    return ("answer", problem) if problem else None


def _unknown_field(text: str, known: frozenset[str]) -> str | None:
    try:
        fields = [
            (name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text) if name is not None
        ]
    except ValueError as e:  # a lone { or }
        return f"{e} in {text!r} (write {{{{ and }}}} for literal braces)"
    for name, spec, conversion in fields:
        if name not in known:
            return f"unknown placeholder {{{name}}} in {text!r} (this one fills: {', '.join(sorted(known))})"
        if spec or conversion:
            return f"placeholder {{{name}}} takes no format spec or conversion"
    return None


def _error(path: Path, loc: tuple, message: str) -> UserError:
    entry = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    line = _line_of(path, loc)
    return UserError(f"{path}{f':{line}' if line else ''}: {entry}: {message}")


def _line_of(path: Path, loc: tuple) -> int | None:
    """The line of the entry at `loc` (its key's line; or its nearest existing parent's), for the message."""
    node = yaml.compose(path.read_text(encoding="utf-8-sig"))  # load_yaml already read it without error
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(key.start_mark.line, value) for key, value in node.value if key.value == str(part)]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            found = [(node.value[part].start_mark.line, node.value[part])]
        else:
            found = []
        if not found:
            break
        line, node = found[0]
    return line + 1 if line is not None else None
