import json
import re

import pytest
import torch

from ada_slm.agl import generators as gens
from ada_slm.agl.builder import build_corpus
from ada_slm.agl.glyphs import CERTAINTY
from ada_slm.agl.parser import parse
from ada_slm.errors import UserError
from ada_slm.run.evaluate import bootstrap_ci, evaluate, generate_ids, load_model, summarize
from ada_slm.run.suites import GenerationSettings, load_suite


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
        i.category == "protocol" and not i.asks_protocol for i in suite.items
    )


def _template_patterns():
    book = gens.default_templates()  # the training templates of agl/templates.yaml
    templates = [t.prompt for category in book.categories.values() for t in category.templates]
    templates += list(book.native_requests.training.values())
    pats = []
    for t in templates:
        parts = re.split(r"\{[a-z_0-9]+\}", t)
        pats.append(re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$", re.S))
    return pats


@pytest.mark.slow
def test_suite_is_held_out_from_every_corpus_and_template():
    suite, _ = load_suite("multilang")
    prompts = {i.prompt for i in suite.items}
    corpus = build_corpus(50000, "pure", seed=0, val_fraction=0.1)
    poly = build_corpus(2000, "polyglot", seed=0)
    corpus_prompts = {r["messages"][0]["content"] for r in corpus.train + corpus.val + poly.train}
    corpus_answers = {r["messages"][-1]["content"] for r in corpus.train + corpus.val + poly.train}
    assert not prompts & corpus_prompts
    # (a reference translation may equal a corpus answer: both follow the one word-for-word mapping; what is held
    # out is the prompt and its template)
    assert not set(suite.perplexity_texts) & corpus_answers
    patterns = _template_patterns()
    assert len(patterns) > 100
    for prompt in prompts:
        for pat in patterns:
            assert not pat.match(prompt), (prompt, pat.pattern)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "name: s\nitems:\n  - {id: a, lang: en, category: tool, prompt: hi}\n"
            "  - {id: b, lang: en, category: tool, prompt: hi, colour: red}\n",
            r"bad.yaml:4: items.1.colour: unknown field",
        ),
        ("name: s\nitems:\n  - {id: a, lang: en, category: tool}\n", r"bad.yaml:3: items.0.prompt: Field required"),
        (
            "name: s\nitems:\n  - {id: a, lang: en, category: tool, prompt: x}\n"
            "  - {id: a, lang: en, category: tool, prompt: y}\n",
            r"bad.yaml:4: duplicate item id 'a'",
        ),
        ("name: s\nitems: [\n", r"bad.yaml:\d+: invalid YAML"),
        (
            "name: s\nitems:\n  - {id: a, lang: en, category: certainty, prompt: x, expected_certainty: X}\n",
            r"bad.yaml:3: items.0.expected_certainty",
        ),
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
        "name: mini\nitems:\n  - {id: q1, lang: en, category: self, prompt: 'Are you there?'}\n"
    )
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


@pytest.mark.parametrize("which", ["tiny-lfm2", pytest.param("smollm2-135m", marks=pytest.mark.slow)])
def test_batched_generation_equals_one_prompt_at_a_time(which):
    model, tok = _noisy_tiny() if which == "tiny-lfm2" else load_model(which, None)
    suite, _ = load_suite("multilang")
    prompts = [i.prompt for i in suite.items][:: len(suite.items) // 12][:12]  # every language, mixed lengths
    batched = generate_ids(model, tok, prompts, GenerationSettings(batch_size=6, max_new_tokens=12))
    single = generate_ids(model, tok, prompts, GenerationSettings(batch_size=1, max_new_tokens=12))
    assert len({tuple(x) for x in single}) > 3  # outputs really differ between prompts
    assert batched == single
    # and both equal plain HF generate on the unpadded prompt
    text = tok.apply_chat_template(
        [{"role": "user", "content": prompts[0]}], tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    ref = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )[0, ids.size(1) :].tolist()
    if tok.eos_token_id in ref:
        ref = ref[: ref.index(tok.eos_token_id) + 1]
    assert single[0] == ref


def test_evaluate_writes_items_and_summary(tmp_path):
    settings = GenerationSettings(batch_size=4, max_new_tokens=8)
    summary = evaluate("tiny-lfm2", None, "multilang", settings, tmp_path, limit=20)
    rows = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and summary["n_items"] == 20
    assert set(rows[0]) == {"id", "lang", "category", "prompt", "output", "metrics", "seed_metrics"}
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
    rows = [
        {"lang": "en", "metrics": {"m": 1.0}},
        {"lang": "tok", "metrics": {"m": 0.0}},
        {"lang": "tok", "metrics": {"m": None}},
    ]
    s = summarize(rows, ["m"])
    assert s["metrics"]["m"]["mean"] == 0.5 and s["metrics"]["m"]["n"] == 2
    assert s["by_lang"]["tok"]["m"] == 0.0 and s["by_lang"]["tok"]["n"] == 2


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ada_slm.app.cli", *args], capture_output=True, text=True)


def test_seed_compatible_generation_is_seeded_and_measures_sampling_noise(tmp_path):
    settings = GenerationSettings.seed_compatible(samples=2, batch_size=4)
    assert (settings.chat_template, settings.temperature, settings.repetition_penalty, settings.max_new_tokens) == (
        False,
        0.8,
        1.1,
        150,
    )
    model, tok = _noisy_tiny()
    small = settings.model_copy(update={"max_new_tokens": 10})
    a = evaluate("tiny-lfm2", None, "multilang", small, tmp_path / "a", limit=6, model_and_tokenizer=(model, tok))
    evaluate("tiny-lfm2", None, "multilang", small, tmp_path / "b", limit=6, model_and_tokenizer=(model, tok))
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "eval.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "eval.jsonl").read_text().splitlines()]
    assert len(rows_a) == 12 and {r["sample"] for r in rows_a} == {0, 1}
    assert [r["output"] for r in rows_a] == [r["output"] for r in rows_b]  # seeded: reproducible
    first, second = rows_a[:6], rows_a[6:]
    assert [r["output"] for r in first] != [r["output"] for r in second]  # two different draws
    assert a["n_items"] == 6 and a["metrics"]["agl_awareness"]["n"] == 6  # CIs over items (samples averaged)
    spread = a["sampling"]["metrics"]["agl_awareness"]
    assert len(spread["per_sample_means"]) == 2
    assert set(a["seed_scoring"]["metrics"]) == {
        "agl_awareness",
        "reasoning_depth",
        "self_awareness",
        "spatial_awareness",
        "temporal_awareness",
        "existential_depth",
        "tool_awareness",
        "certainty_gradient",
        "phi_patterns",
        "tonight_protocol",
    }


@pytest.mark.slow
def test_eval_cli_both_scorings_and_bad_options(tmp_path):
    p = _cli(
        "eval",
        "--base",
        "tiny-lfm2",
        "--limit",
        "4",
        "--max-new-tokens",
        "4",
        "--scoring",
        "both",
        "--out",
        str(tmp_path / "e"),
    )
    assert p.returncode == 0, p.stderr
    assert "seed-compatible" in p.stdout and "agl_awareness" in p.stdout
    p = _cli("eval", "--base", "tiny-lfm2", "--samples", "3")
    assert p.returncode == 1 and "--samples > 1 needs --generation seed" in p.stderr
    p = _cli("eval", "--base", "tiny-lfm2", "--suite", "nope")
    assert p.returncode == 1 and "unknown suite 'nope'" in p.stderr and "Traceback" not in p.stderr
    p = _cli("eval", str(tmp_path))
    assert p.returncode == 1 and "no record.json" in p.stderr


@pytest.mark.slow
def test_eval_of_a_finished_run_writes_into_its_record(tmp_path):
    from ada_slm.run.config import build_config
    from ada_slm.run.train import run

    cfg = build_config(
        {
            "base": "tiny-lfm2",
            "data": {"size": 40},
            "max_steps": 2,
            "max_length": 200,
            "batch": {"micro": 2, "accum": 1},
            "out_dir": str(tmp_path / "run"),
        }
    )
    run(cfg, quiet=True)
    p = _cli("eval", str(tmp_path / "run"), "--limit", "3", "--max-new-tokens", "4", "--quiet")
    assert p.returncode == 0, p.stderr
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["eval"]["n_items"] == 3 and record["eval"]["adapter"].endswith("adapter")
    assert (tmp_path / "run" / "eval.jsonl").is_file()
