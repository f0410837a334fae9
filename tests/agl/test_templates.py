"""agl/templates.yaml: the shipped file is complete and packaged; a malformed one is a one-line UserError naming
the file, line and entry; a template is added by editing the file alone."""

import fnmatch
import random
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from ada_slm.agl.builder import build_corpus
from ada_slm.agl.generators import GENERATORS, PLACEHOLDERS, default_templates
from ada_slm.agl.parser import parse
from ada_slm.agl.suite_builder import build_heldout_suite
from ada_slm.agl.templates import TEMPLATES_FILE, load_templates
from ada_slm.errors import UserError
from tests.shared import ROOT

SHIPPED = TEMPLATES_FILE.read_text(encoding="utf-8")


def test_shipped_file_has_every_category_and_is_package_data():
    book = default_templates()
    assert list(book.categories) == list(GENERATORS)
    assert {c: (len(t.templates), len(t.held_out)) for c, t in book.categories.items()} == {
        c: (24 if c == "certainty" else 12, 8) for c in GENERATORS
    }
    assert book.categories["tool"].held_out_indices == list(range(12, 20))
    assert book.categories["space"].templates[11].expected_certainty == "◕"
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    relative = TEMPLATES_FILE.relative_to(ROOT / "src" / "ada_slm").as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in package_data["ada_slm"])


def _line(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text(text, encoding="utf-8")
    return path


REASONING_0 = '"Reason in AGL: if {c1} and {c2}, what follows for the {n3}?"'
CERTAINTY_0 = '"We know this much: {evidence}. How sure are you that {clause}?"'
CERTAINTY_0_SHAPE = f"{CERTAINTY_0}\n        shape: one_level"
NATIVE_EN = '    en: "Please put this into AGL: {src}"\n'


# (text in the shipped file, its replacement, text on the line the error must name, what it must say)
@pytest.mark.parametrize(
    "old, new, at, message",
    [
        (
            REASONING_0,
            REASONING_0.replace("{n3}", "{n4}"),
            "{n4}",
            r"categories\.reasoning\.templates\[0\]\.prompt: unknown placeholder \{n4\} in "
            r".*\(this one fills: c1, c1_cap",
        ),
        (
            'answer: "{l1}{a1} ⇒ {l3}{a3}"',
            'answer: "{l1}{a1} ⇒ {l4}{a3}"',
            "{l4}",
            r"categories\.reasoning\.templates\[4\]\.answer: unknown placeholder \{l4\}",
        ),
        (
            REASONING_0,
            REASONING_0.replace("{n3}", "{n3"),
            "{n3?",
            r"categories\.reasoning\.templates\[0\]\.prompt: .*expected '}'.*literal braces",
        ),
        (
            REASONING_0,
            REASONING_0.replace("{n3}", "{n3!r}"),
            "{n3!r}",
            r"categories\.reasoning\.templates\[0\]\.prompt: placeholder \{n3\} takes no format spec",
        ),
        (
            CERTAINTY_0_SHAPE,
            CERTAINTY_0_SHAPE + "s",
            "one_levels",
            r"categories\.certainty\.templates\[0\]\.shape: unknown shape 'one_levels' \(known: level_path, one_level",
        ),
        (
            CERTAINTY_0_SHAPE,
            f'{CERTAINTY_0}\n        answer: "●x"',
            "●x",
            r"categories\.certainty\.templates\[0\]\.answer: this category's answers are built in code: give a `shape`",
        ),
        (
            CERTAINTY_0_SHAPE,
            f'{CERTAINTY_0_SHAPE}\n        answer: "●x"',
            CERTAINTY_0,
            r"categories\.certainty\.templates\[0\]: give exactly one of `answer` .* and `shape`",
        ),
        (
            CERTAINTY_0_SHAPE,
            CERTAINTY_0,
            CERTAINTY_0,
            r"categories\.certainty\.templates\[0\]: give exactly one of `answer`",
        ),
        (
            f"- prompt: {CERTAINTY_0}",
            f"- promt: {CERTAINTY_0}",
            "promt",
            r"categories\.certainty\.templates\[0\]\.promt: unknown field",
        ),
        (
            'expected_certainty: "◕"',
            'expected_certainty: "X"',
            '"X"',
            r"categories\.space\.templates\[11\]\.expected_certainty: must be one of ● ◕ ◑ ◔ ○, got 'X'",
        ),
        (
            REASONING_0,
            "7  # a number",
            "# a number",
            r"categories\.reasoning\.templates\[0\]\.prompt: Input should be a valid string",
        ),
        (
            "\n  tool:\n",
            "\n  tools:\n",
            "  tools:",
            r"categories\.tools: unknown category \(known: certainty, temporal",
        ),
        (NATIVE_EN, "", "  training:", r"native_requests\.training: missing language\(s\) en"),
        (
            NATIVE_EN,
            NATIVE_EN.replace("{src}", "{source}"),
            "{source}",
            r"native_requests\.training\.en: unknown placeholder \{source\}",
        ),
        ("shape: translation\n", "shape: translation\n  oops: [\n", None, r"invalid YAML"),
    ],
)
def test_a_malformed_file_is_one_line_naming_file_line_and_entry(tmp_path, old, new, at, message):
    assert SHIPPED.count(old) >= 1
    text = SHIPPED.replace(old, new, 1)
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_templates(path, PLACEHOLDERS)
    error = str(caught.value)
    assert "\n" not in error
    assert re.match(rf"{re.escape(str(path))}:\d+: ", error), error
    assert re.search(message, error), error
    if at is not None:
        assert int(error[len(str(path)) + 1 :].split(":")[0]) == _line(text, at), error


def _edited(edit) -> str:
    """The shipped file, parsed, edited as a mapping and written back (for changes of whole entries)."""
    raw = yaml.safe_load(SHIPPED)
    edit(raw)
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda raw: raw["categories"].pop("polyglot"), r":\d+: categories: category 'polyglot' is missing"),
        (
            lambda raw: raw["categories"]["edge"].update(templates=raw["categories"]["edge"]["templates"][:1]),
            r":\d+: categories\.edge\.templates: List should have at least 2 items",
        ),
        (
            lambda raw: raw["categories"]["edge"].update(held_out=[]),
            r":\d+: categories\.edge\.held_out: List should have at least 1 item",
        ),
        (
            lambda raw: raw["categories"]["temporal"]["held_out"][0].update(expected_certainty="●"),
            r":\d+: categories\.temporal\.held_out\[0\]: expected_certainty goes with an `answer`",
        ),
    ],
)
def test_a_malformed_entry_names_its_place(tmp_path, edit, message):
    path = _write(tmp_path, _edited(edit))
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}{message}") as caught:
        load_templates(path, PLACEHOLDERS)
    assert "\n" not in str(caught.value)


def test_a_template_is_added_by_editing_the_file_alone(tmp_path):
    new_prompt = "Before answering whether {clause}, ask {tool}."
    text = SHIPPED.replace(
        '    held_out:\n      - prompt: "A tool is available.',
        f'      - prompt: "{new_prompt}"\n'
        '        answer: "○{atom} ∴ ⚙({t1}) → {l1}{atom}"\n'
        '    held_out:\n      - prompt: "A tool is available.',
        1,
    )
    assert text != SHIPPED
    book = load_templates(_write(tmp_path, text), PLACEHOLDERS)
    assert len(book.categories["tool"].templates) == 13
    rows = build_corpus(300, {"tool": 1}, seed=0, templates=book).train
    added = [r for r in rows if r["template"] == "tool/12"]
    assert added and all(r["messages"][0]["content"].startswith("Before answering whether ") for r in added)
    for row in added:
        parse(row["messages"][1]["content"])
    assert build_corpus(300, {"tool": 1}, seed=0).train != rows  # the shipped file has no tool/12 to draw
    # the held-out ids continue after the new training template
    suite = [i for i in build_heldout_suite(16, seed=0, templates=book) if i["category"] == "tool"]
    assert {i["id"].rsplit("-", 1)[0] for i in suite} == {f"tool-t{t}" for t in range(13, 21)}
    sample = GENERATORS["tool"](random.Random(1), [12], book)
    assert sample.template == "tool/12" and sample.prompt.startswith("Before answering whether ")
