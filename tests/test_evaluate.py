import json
import re

import pytest
import torch

from ada_slm.agl import generators as gens
from ada_slm.agl.builder import build_corpus
from ada_slm.agl.glyphs import CERTAINTY
from ada_slm.agl.parser import parse
from ada_slm.errors import UserError
from ada_slm.evaluate import (GenerationSettings, bootstrap_ci, evaluate, generate_ids, load_model, load_suite,
                              summarize)


def test_shipped_suite_shape():
    suite, _ = load_suite("multilang")
    assert len(suite.items) >= 120
    assert {i.lang for i in suite.items} == {"en", "agl", "jbo", "tok"}
    assert {i.category for i in suite.items} == set(gens.GENERATORS)
    assert sum(1 for i in suite.items if i.expected_certainty) >= 8
    assert {i.expected_certainty for i in suite.items if i.expected_certainty} == set(CERTAINTY)
    refs = [i for i in suite.items if i.category == "polyglot"]
    assert refs and all(i.reference for i in refs)
    for item in refs:
        parse(item.reference)
    for text in suite.perplexity_texts:
        parse(text)
    assert any(i.asks_protocol for i in suite.items) and any(
        i.category == "protocol" and not i.asks_protocol for i in suite.items)


def _template_patterns():
    templates = []
    for name in dir(gens):
        value = getattr(gens, name)
        if name.endswith("_TEMPLATES") and isinstance(value, tuple):
            templates += list(value)
    templates += list(gens.NATIVE_REQUEST.values())
    pats = []
    for t in templates:
        parts = re.split(r"\{[a-z_0-9]+\}", t)
        pats.append(re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$", re.S))
    return pats


def test_suite_is_held_out_from_every_corpus_and_template():
    suite, _ = load_suite("multilang")
    prompts = {i.prompt for i in suite.items}
    corpus = build_corpus(50000, "pure", seed=0, val_fraction=0.1)
    poly = build_corpus(2000, "polyglot", seed=0)
    corpus_prompts = {r["messages"][0]["content"] for r in corpus.train + corpus.val + poly.train}
    corpus_answers = {r["messages"][-1]["content"] for r in corpus.train + corpus.val + poly.train}
    assert not prompts & corpus_prompts
    assert not {i.reference for i in suite.items if i.reference} & corpus_answers
    assert not set(suite.perplexity_texts) & corpus_answers
    patterns = _template_patterns()
    assert len(patterns) > 100
    for prompt in prompts:
        for pat in patterns:
            assert not pat.match(prompt), (prompt, pat.pattern)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: s\nitems:\n  - {id: a, lang: en, category: tool, prompt: hi}\n"
         "  - {id: b, lang: en, category: tool, prompt: hi, colour: red}\n", r"bad.yaml:4: items.1.colour: unknown field"),
        ("name: s\nitems:\n  - {id: a, lang: en, category: tool}\n", r"bad.yaml:3: items.0.prompt: Field required"),
        ("name: s\nitems:\n  - {id: a, lang: en, category: tool, prompt: x}\n"
         "  - {id: a, lang: en, category: tool, prompt: y}\n", r"bad.yaml:4: duplicate item id 'a'"),
        ("name: s\nitems: [\n", r"bad.yaml:\d+: invalid YAML"),
        ("name: s\nitems:\n  - {id: a, lang: en, category: certainty, prompt: x, expected_certainty: X}\n",
         r"bad.yaml:3: items.0.expected_certainty"),
        ("name: s\nitems: []\n", r"bad.yaml: items"),
    ],
)
def test_bad_suite_files_name_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_suite(str(path))


def test_new_suite_needs_no_python(tmp_path, monkeypatch):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mini.yaml").write_text(
        "name: mini\nitems:\n  - {id: q1, lang: en, category: self, prompt: Are you there?}\n")
    monkeypatch.chdir(tmp_path)
    suite, path = load_suite("mini")
    assert suite.name == "mini" and len(suite.items) == 1
    with pytest.raises(UserError, match="unknown suite 'nope'.*mini"):
        load_suite("nope")


def _noisy_tiny():
    """tiny-lfm2 with large random weights, so greedy outputs differ between prompts (the default init
    generates one token forever, which would make an equality test trivially true)."""
    model, tok = load_model("tiny-lfm2", None)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model, tok


@pytest.mark.parametrize("which", ["tiny-lfm2", "smollm2-135m"])
def test_batched_generation_equals_one_prompt_at_a_time(which):
    model, tok = _noisy_tiny() if which == "tiny-lfm2" else load_model(which, None)
    suite, _ = load_suite("multilang")
    prompts = [i.prompt for i in suite.items][:: len(suite.items) // 12][:12]  # every language, mixed lengths
    batched = generate_ids(model, tok, prompts, GenerationSettings(batch_size=6, max_new_tokens=12))
    single = generate_ids(model, tok, prompts, GenerationSettings(batch_size=1, max_new_tokens=12))
    assert len({tuple(x) for x in single}) > 3  # outputs really differ between prompts
    assert batched == single
    # and both equal plain HF generate on the unpadded prompt
    text = tok.apply_chat_template([{"role": "user", "content": prompts[0]}], tokenize=False,
                                   add_generation_prompt=True)
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, ids.size(1):].tolist()
    if tok.eos_token_id in ref:
        ref = ref[: ref.index(tok.eos_token_id) + 1]
    assert single[0] == ref


def test_evaluate_writes_items_and_summary(tmp_path):
    settings = GenerationSettings(batch_size=4, max_new_tokens=8)
    summary = evaluate("tiny-lfm2", None, "multilang", settings, tmp_path, limit=20)
    rows = [json.loads(l) for l in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and summary["n_items"] == 20
    assert set(rows[0]) == {"id", "lang", "category", "prompt", "output", "metrics"}
    assert summary["arm"] == "base" and summary["generation"]["batch_size"] == 4
    assert summary["perplexity"] > 1
    assert set(summary["metrics"]["agl_awareness"]) == {"mean", "n", "ci_low", "ci_high"}
    saved = json.loads((tmp_path / "eval_summary.json").read_text())
    assert saved["metrics"] == summary["metrics"]


def test_bootstrap_ci_and_summary():
    lo, hi = bootstrap_ci([0.0, 1.0] * 50)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert bootstrap_ci([0.2] * 10) == (0.2, 0.2)
    assert bootstrap_ci([0.3]) is None
    rows = [{"lang": "en", "metrics": {"m": 1.0}}, {"lang": "tok", "metrics": {"m": 0.0}},
            {"lang": "tok", "metrics": {"m": None}}]
    s = summarize(rows, ["m"])
    assert s["metrics"]["m"]["mean"] == 0.5 and s["metrics"]["m"]["n"] == 2
    assert s["by_lang"]["tok"]["m"] == 0.0 and s["by_lang"]["tok"]["n"] == 2
