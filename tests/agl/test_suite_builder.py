"""The generated held-out suite: reproducible (the shipped file is the command's output), every category and
the builder's languages, and held out by construction — no corpus the builder makes uses its templates, and
no training template produces its prompts."""

import json
import re
from collections import Counter
from importlib import resources

import pytest

from ada_slm.agl.builder import CATEGORIES, build_corpus
from ada_slm.agl.generators import default_templates
from ada_slm.agl.glyphs import CERTAINTY
from ada_slm.agl.parser import parse
from ada_slm.agl.suite_builder import SUITE_NAME, build_heldout_suite
from ada_slm.errors import UserError
from ada_slm.run.suites import load_suite

SHIPPED = resources.files("ada_slm") / "suites" / f"{SUITE_NAME}.jsonl"
BOOK = default_templates()


@pytest.fixture(scope="module")
def items():
    return build_heldout_suite()


def test_shipped_suite_is_the_commands_output_and_deterministic(items, tmp_path):
    from typer.testing import CliRunner

    from ada_slm.app.cli import app

    out = tmp_path / "s.jsonl"
    result = CliRunner().invoke(app, ["data", "suite", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == SHIPPED.read_bytes()
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == items
    assert build_heldout_suite(5, seed=1) == build_heldout_suite(5, seed=1) != build_heldout_suite(5, seed=2)


def test_covers_every_category_and_the_builders_languages(items):
    suite, _ = load_suite(SUITE_NAME)  # loads as a suite: every field valid, ids unique
    assert len(suite.items) == len(items) == 100 * len(CATEGORIES)
    assert Counter(i.category for i in suite.items) == {c: 100 for c in CATEGORIES}
    assert {i.lang for i in suite.items if i.category == "polyglot"} == {"en", "jbo", "tok"}
    assert {i.lang for i in suite.items if i.category != "polyglot"} == {"en"}
    assert len({i.prompt for i in suite.items}) == len(suite.items)
    assert all(i.reference for i in suite.items if i.category == "polyglot")
    for item in suite.items:
        if item.reference:
            parse(item.reference)
    assert {i.expected_certainty for i in suite.items if i.expected_certainty} == set(CERTAINTY)
    assert all(i.asks_protocol == (i.category == "protocol") for i in suite.items)
    # every held-out template of every category is used
    used = Counter(i.id.rsplit("-", 1)[0] for i in suite.items)
    assert set(used) == {f"{c}-t{t}" for c in CATEGORIES for t in BOOK.categories[c].held_out_indices}


def _patterns(templates):
    out = []
    for t in templates:
        parts = re.split(r"\{[a-z_0-9]+\}", t)
        assert any(p.strip() for p in parts), t  # a pattern of placeholders only would match anything
        out.append(re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$", re.S))
    return out


def training_templates() -> list[str]:
    found = [t.prompt for c in CATEGORIES for t in BOOK.categories[c].templates]
    return found + list(BOOK.native_requests.training.values())


def heldout_templates() -> list[str]:
    texts = [t.prompt for c in CATEGORIES for t in BOOK.categories[c].held_out if t.prompt != "{native_heldout}"]
    return texts + list(BOOK.native_requests.held_out.values())


@pytest.fixture(scope="module")
def corpora():
    """What the builder makes, every category alone (with held-out splits, fixed or not) and the named mixes."""
    rows = []
    for c in CATEGORIES:
        rows += build_corpus(600, {c: 1}, seed=0).train
        split = build_corpus(600, {c: 1}, seed=1, val_fraction=0.2)
        fixed = build_corpus(600, {c: 1}, seed=2, val_fraction=0.1, val_size=100)
        rows += split.train + split.val + fixed.train + fixed.val
    pure = build_corpus(3000, "pure", seed=3, val_fraction=0.1)
    return rows + pure.train + pure.val


def test_no_corpus_uses_a_held_out_template(corpora):
    heldout_ids = {f"{c}/{t}" for c in CATEGORIES for t in BOOK.categories[c].held_out_indices}
    corpus_ids = {r["template"] for r in corpora}
    assert corpus_ids == {f"{c}/{t}" for c in CATEGORIES for t in range(len(BOOK.categories[c].templates))}
    assert not corpus_ids & heldout_ids


def test_suite_and_corpora_share_no_prompt_and_no_template_text(items, corpora):
    train_patterns, heldout_patterns = _patterns(training_templates()), _patterns(heldout_templates())
    assert len(train_patterns) > 100 and len(heldout_patterns) == 10 * 8 - 1 + 3
    assert not set(training_templates()) & set(heldout_templates())
    suite_prompts = {i["prompt"] for i in items}
    corpus_prompts = {r["messages"][0]["content"] for r in corpora}
    assert not suite_prompts & corpus_prompts
    for prompt in suite_prompts:  # no training template could have produced a suite prompt ...
        assert not any(p.match(prompt) for p in train_patterns), prompt
    for prompt in corpus_prompts:  # ... and no held-out template a corpus prompt
        assert not any(p.match(prompt) for p in heldout_patterns), prompt


def test_a_bad_item_count_is_a_user_error():
    with pytest.raises(UserError, match="per-category"):
        build_heldout_suite(0)
