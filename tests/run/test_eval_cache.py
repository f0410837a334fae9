"""The eval cache: an identical evaluation hits without generating, any change of a key component misses, a
corrupt entry is a miss that gets rewritten, rescoring needs no model, and a study's base arm generates once.

Generation is counted through `evaluate`'s progress callback, which the real generation path calls once per
generated batch with the number of prompts in it."""

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from ada_slm.errors import UserError
from ada_slm.run.eval_cache import EvalCache, library_versions, rescore
from ada_slm.run.evaluate import evaluate, load_model
from ada_slm.run.metrics import score
from ada_slm.run.suites import GenerationSettings, load_suite, subset
from tests.shared import CLI

GREEDY = GenerationSettings(batch_size=4, max_new_tokens=6)
SAMPLED = GenerationSettings.seed_compatible(samples=2, batch_size=4).model_copy(update={"max_new_tokens": 6})
LIMIT = 6


@pytest.fixture(scope="module")
def noisy():
    """tiny-lfm2 with large random weights, so outputs differ from prompt to prompt."""
    model, tok = load_model("tiny-lfm2", None)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model, tok


class Counter:
    """The progress callback: prompts generated."""

    def __init__(self):
        self.prompts = 0

    def __call__(self, n):
        self.prompts += n


def _eval(out_dir, cache, model_and_tokenizer=None, settings=GREEDY, suite="multilang", limit=LIMIT, adapter=None):
    counter = Counter()
    summary = evaluate(
        "tiny-lfm2",
        adapter,
        suite,
        settings,
        out_dir,
        limit=limit,
        progress=counter,
        model_and_tokenizer=model_and_tokenizer,
        cache=cache,
    )
    return summary, counter.prompts


def _outputs(out_dir):
    return [json.loads(line)["output"] for line in (Path(out_dir) / "eval.jsonl").open()]


def test_identical_evaluation_hits_without_generating(tmp_path, noisy):
    cache = EvalCache(tmp_path / "results" / ".eval-cache")
    first, generated = _eval(tmp_path / "results" / "base" / "seed0", cache, noisy)
    assert generated == LIMIT and first["cached_from"] is None
    assert len(set(_outputs(tmp_path / "results" / "base" / "seed0"))) > 2  # outputs really differ by prompt
    second, generated = _eval(tmp_path / "results" / "base" / "seed1", cache, noisy)
    assert generated == 0
    assert second["cached_from"]["run"] == "base/seed0" and second["cached_from"]["key"] == first["eval_cache"]["key"]
    assert second["items_per_s"] is None and first["items_per_s"] > 0
    assert _outputs(tmp_path / "results" / "base" / "seed1") == _outputs(tmp_path / "results" / "base" / "seed0")
    assert second["metrics"] == first["metrics"] and second["perplexity"] == first["perplexity"]
    # the same items in another suite file are the same prompts: a hit (the key is what generation consumes)
    items = subset(load_suite("multilang")[0].items, LIMIT)
    copied = tmp_path / "copy.yaml"
    copied.write_text(yaml.safe_dump({"name": "copy", "items": [i.model_dump() for i in items]}, allow_unicode=True))
    third, generated = _eval(tmp_path / "elsewhere", cache, noisy, suite=str(copied), limit=None)
    assert generated == 0 and third["cached_from"]["run"] == "base/seed0"
    # sampled generation is cached too (every sample)
    sampled, generated = _eval(tmp_path / "s0", cache, noisy, settings=SAMPLED)
    assert generated == 2 * LIMIT and sampled["cached_from"] is None
    again, generated = _eval(tmp_path / "s1", cache, noisy, settings=SAMPLED)
    assert (
        generated == 0
        and again["sampling"] == sampled["sampling"]
        and _outputs(tmp_path / "s1") == _outputs(tmp_path / "s0")
    )


def _changed_weights(model, tok, tmp_path):
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    return {"model_and_tokenizer": (changed, tok)}


def _adapter(model, tok, tmp_path):
    """A LoRA adapter with non-zero B (trained-like), saved and loaded the way a study's run dir holds it."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    return {"model_and_tokenizer": None, "adapter": str(tmp_path / "adapter")}


def _changed_suite(model, tok, tmp_path):
    items = [i.model_dump() for i in subset(load_suite("multilang")[0].items, LIMIT)]
    items[0]["prompt"] += " Please."
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump({"name": "changed", "items": items}, allow_unicode=True))
    return {"suite": str(path), "limit": None}


def _changed_template(model, tok, tmp_path):
    changed = copy.deepcopy(tok)
    changed.chat_template = "SYSTEM: be brief\n" + tok.chat_template
    return {"model_and_tokenizer": (model, changed)}


# component -> (baseline, changed evaluate kwargs); the baselines are evaluated once (fixture `baselines`), plain =
# tiny-lfm2 as loaded by name; changed kwargs may be a function of (model, tokenizer, tmp_path)
MISSES = {
    "base weights": ("greedy", _changed_weights),
    "adapter": ("plain", _adapter),
    "suite items": ("greedy", _changed_suite),
    "limit": ("greedy", {"limit": LIMIT - 1}),
    "chat template": ("greedy", _changed_template),
    "max_new_tokens": ("greedy", {"settings": GREEDY.model_copy(update={"max_new_tokens": 7})}),
    "batch_size": ("greedy", {"settings": GREEDY.model_copy(update={"batch_size": 3})}),
    "chat_template off": ("greedy", {"settings": GREEDY.model_copy(update={"chat_template": False})}),
    "sampled generation": ("greedy", {"settings": SAMPLED}),
    "sampling seed": ("sampled", {"settings": SAMPLED.model_copy(update={"seed": 1})}),
    "temperature": ("sampled", {"settings": SAMPLED.model_copy(update={"temperature": 0.9})}),
    "samples": ("sampled", {"settings": SAMPLED.model_copy(update={"samples": 3})}),
    "precision (weights)": (
        "greedy",
        lambda m, t, _: {"model_and_tokenizer": (copy.deepcopy(m).to(torch.bfloat16), t)},
    ),
    "precision (autocast)": ("greedy", {"autocast": torch.bfloat16}),
    "torch threads": ("greedy", {"threads": torch.get_num_threads() + 1}),
    "generation code version": ("greedy", {"cache": {"code_version": "bumped"}}),
    "library versions": ("greedy", {"cache": {"libraries": {**library_versions(), "transformers": "0.0.0"}}}),
}


@pytest.fixture(scope="module")
def baselines(tmp_path_factory, noisy):
    """(cache entry, summary, out dir) of the noisy model's greedy and sampled evaluations, generated once."""
    out = {}
    for name, settings in (("greedy", GREEDY), ("sampled", SAMPLED)):
        folder = tmp_path_factory.mktemp(name)
        cache = EvalCache(folder / "cache")
        summary, generated = _eval(folder / "a", cache, noisy, settings=settings)
        assert generated > 0 and summary["cached_from"] is None
        out[name] = (cache.path(summary["eval_cache"]["key"]), summary, folder / "a")
    return out


def _run(kwargs, out_dir, cache_dir, model_and_tokenizer):
    kwargs = dict(kwargs)
    cache = EvalCache(cache_dir, **kwargs.pop("cache", {}))
    autocast, threads = kwargs.pop("autocast", None), kwargs.pop("threads", None)
    kwargs.setdefault("model_and_tokenizer", model_and_tokenizer)
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            return _eval(out_dir, cache, **kwargs)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("component", list(MISSES))
def test_a_change_of_any_key_component_misses(tmp_path, noisy, baselines, component):
    baseline, changed = MISSES[component]
    cache_dir = tmp_path / "cache"
    if baseline == "plain":
        model, tok = load_model("tiny-lfm2", None)
        first, generated = _run({"model_and_tokenizer": None}, tmp_path / "a", cache_dir, (model, tok))
        assert generated > 0
        baseline_key = first["eval_cache"]["key"]
    else:
        (model, tok), (entry, first, _) = noisy, baselines[baseline]
        cache_dir.mkdir()
        shutil.copy(entry, cache_dir / entry.name)  # the cache holds the baseline's outputs
        baseline_key = first["eval_cache"]["key"]
    changed = changed(model, tok, tmp_path) if callable(changed) else changed
    summary, generated = _run(changed, tmp_path / "b", cache_dir, (model, tok))
    assert generated > 0 and summary["cached_from"] is None, f"{component}: a change of it must miss"
    assert summary["eval_cache"]["key"] != baseline_key
    again, generated = _run(changed, tmp_path / "c", cache_dir, (model, tok))  # and the changed key is itself kept
    assert generated == 0 and again["cached_from"]["run"] == "b"  # relative to the folder holding the cache
    assert _outputs(tmp_path / "c") == _outputs(tmp_path / "b")


def _corrupt_truncated(path):
    path.write_text(path.read_text()[:200])


def _corrupt_edited_outputs(path):
    entry = json.loads(path.read_text())
    entry["outputs"][0][0] = [5, 6, 7]
    path.write_text(json.dumps(entry))


def _corrupt_not_an_entry(path):
    path.write_text("[1, 2, 3]\n")


def _corrupt_not_utf8(path):
    path.write_bytes(b"\xff\xfe" + path.read_bytes())


def _corrupt_deeply_nested(path):
    path.write_text("[" * 5000 + "]" * 5000)


def _corrupt_huge_integer(path):
    path.write_text('{"key": ' + "9" * 5000 + "}")


def _with_checksum(path, outputs):  # a planted entry: valid checksum, ill-typed token ids
    from ada_slm.run.eval_cache import _sha256_json

    entry = json.loads(path.read_text())
    entry["outputs"], entry["outputs_sha256"] = outputs, _sha256_json(outputs)
    path.write_text(json.dumps(entry))


def _corrupt_string_ids(path):
    entry = json.loads(path.read_text())
    _with_checksum(path, [[[str(t) for t in ids] for ids in sample] for sample in entry["outputs"]])


def _corrupt_negative_ids(path):
    entry = json.loads(path.read_text())
    _with_checksum(path, [[[-1] + ids for ids in sample] for sample in entry["outputs"]])


def _corrupt_huge_ids(path):
    entry = json.loads(path.read_text())
    _with_checksum(path, [[[10**12] + ids for ids in sample] for sample in entry["outputs"]])


def _corrupt_a_fifo(path):
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncated,
        _corrupt_edited_outputs,
        _corrupt_not_an_entry,
        _corrupt_not_utf8,
        _corrupt_deeply_nested,
        _corrupt_huge_integer,
        _corrupt_string_ids,
        _corrupt_negative_ids,
        _corrupt_huge_ids,
        _corrupt_a_fifo,
    ],
)
def test_a_corrupt_entry_is_a_miss_and_is_rewritten(tmp_path, noisy, baselines, corrupt, capsys):
    stored, first, first_dir = baselines["greedy"]
    cache = EvalCache(tmp_path / "cache")
    entry = cache.path(first["eval_cache"]["key"])
    entry.parent.mkdir()
    shutil.copy(stored, entry)
    corrupt(entry)
    second, generated = _eval(tmp_path / "b", cache, noisy)
    assert generated == LIMIT and second["cached_from"] is None
    assert f"eval cache: {entry}:" in capsys.readouterr().err
    assert _outputs(tmp_path / "b") == _outputs(first_dir)
    third, generated = _eval(tmp_path / "c", cache, noisy)  # rewritten: a valid entry again
    assert generated == 0 and third["cached_from"]["run"] == "b"


def test_a_cache_folder_linked_out_of_its_results_folder_is_not_followed(tmp_path, noisy, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / ".eval-cache").symlink_to(elsewhere)
    _, generated = _eval(tmp_path / "a", EvalCache(tmp_path / "results" / ".eval-cache"), noisy)
    assert generated == LIMIT and "not followed" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []  # nothing written through the link


def test_an_entry_records_its_origin(tmp_path, noisy):
    cache = EvalCache(tmp_path / "cache")
    first, _ = _eval(tmp_path / "a", cache, noisy)
    entry = json.loads(cache.path(first["eval_cache"]["key"]).read_text())
    assert set(entry["origin"]) == {"host", "user"} and entry["generated_by"]


def test_rescore_uses_the_stored_outputs_without_a_model(tmp_path, baselines):
    _, summary, first_dir = baselines["greedy"]
    out = tmp_path / "run"
    shutil.copytree(first_dir, out)
    rows = [json.loads(line) for line in (out / "eval.jsonl").open()]
    # as if evaluated by an older version: one metric missing from every item, another with other values
    stale_rows = [
        {**r, "metrics": {k: v for k, v in r["metrics"].items() if k != "agl_awareness"} | {"glyph_density": 99.0}}
        for r in rows
    ]
    (out / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale_rows))
    stale = {**summary, "base": "no-such-model", "metrics": {"glyph_density": {"mean": 99.0}}}
    new = rescore(out, stale)
    assert new["metrics"] == summary["metrics"] and new["seed_scoring"] == summary["seed_scoring"]
    assert new["base"] == "no-such-model" and new["rescored_at"]  # no model was loaded
    assert [json.loads(line) for line in (out / "eval.jsonl").open()] == rows
    assert json.loads((out / "eval_summary.json").read_text())["metrics"] == summary["metrics"]
    items = {i.id: i for i in load_suite("multilang")[0].items}
    assert rows[0]["metrics"] == score(rows[0]["output"], items[rows[0]["id"]].model_dump())
    # an output whose prompt is not the suite's any more cannot be rescored: one line naming file and line
    rows[1]["prompt"] = "another prompt"
    (out / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=r"eval.jsonl:2: item .* has another prompt in .*multilang.yaml now"):
        rescore(out, summary)


STUDY = """\
name: cachestudy
baseline: r8
seeds: [0, 1]
include_base: true
defaults:
  base: tiny-lfm2
  data: {size: 40, val_fraction: 0.1}
  lora: {r: 8, alpha: 16, dropout: 0.0}
  batch: {micro: 2, accum: 1}
  max_steps: 2
  max_length: 200
eval: {suite: multilang, batch_size: 8, max_new_tokens: 6, limit: 12}
arms:
  r8: {}
"""


def _record(root, key):
    return json.loads((root / key / "record.json").read_text())


@pytest.mark.slow
def test_a_study_generates_the_base_arm_once_and_a_rerun_reuses_outputs(tmp_path):
    study = tmp_path / "cachestudy.yaml"
    study.write_text(STUDY)
    results, exports = tmp_path / "results", tmp_path / "exports"
    args = CLI + ["study", "run", str(study), "--results", str(results), "--exports", str(exports), "--no-report"]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    root = results / "cachestudy"
    base0, base1 = _record(root, "base/seed0")["eval"], _record(root, "base/seed1")["eval"]
    assert base0["cached_from"] is None and base1["cached_from"]["run"] == "base/seed0"  # generated once
    assert _outputs(root / "base" / "seed1") == _outputs(root / "base" / "seed0")
    assert base1["metrics"] == base0["metrics"]
    r8 = [_record(root, f"r8/seed{k}")["eval"] for k in (0, 1)]
    assert r8[0]["cached_from"] is None and r8[1]["cached_from"] is None  # two trained adapters: two keys
    entries = sorted(p.name for p in (root / ".eval-cache").glob("*.json"))
    assert len(entries) == 3 and base0["eval_cache"]["key"] + ".json" in entries

    # a crash after r8/seed0's generation, before its record was written: the re-run evaluates the adapter
    # reloaded from disk and reuses the outputs generated from the weights in memory
    record = _record(root, "r8/seed0")
    steps = record["train"]["steps"]
    record["eval"] = None
    (root / "r8" / "seed0" / "record.json").write_text(json.dumps(record))
    (root / "r8" / "seed0" / "eval.jsonl").unlink()
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0 and "done 4, failed 0, pending 0" in p.stdout, p.stderr[-2000:]
    again = _record(root, "r8/seed0")
    assert again["eval"]["cached_from"]["run"] == "r8/seed0" and again["train"]["steps"] == steps
    assert again["eval"]["metrics"] == r8[0]["metrics"]

    # study report --rescore: stale metrics in a run's items and record are recomputed from its outputs
    rows = [json.loads(line) for line in (root / "base" / "seed1" / "eval.jsonl").open()]
    stale = [{**r, "metrics": {**r["metrics"], "agl_awareness": 99.0}} for r in rows]
    (root / "base" / "seed1" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stale))
    record = _record(root, "base/seed1")
    record["eval"]["metrics"]["agl_awareness"]["mean"] = 99.0
    (root / "base" / "seed1" / "record.json").write_text(json.dumps(record))
    report = CLI + ["study", "report", str(study), "--results", str(results), "--exports", str(exports), "--no-show"]
    p = subprocess.run(report, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert _record(root, "base/seed1")["eval"]["metrics"]["agl_awareness"]["mean"] == 99.0  # not without --rescore
    p = subprocess.run(report + ["--rescore"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "rescored 4 runs from their stored outputs (nothing generated)" in p.stdout
    assert _record(root, "base/seed1")["eval"]["metrics"] == base0["metrics"]
    assert [json.loads(line) for line in (root / "base" / "seed1" / "eval.jsonl").open()] == rows


def test_an_unusable_cache_costs_only_the_saving(tmp_path, noisy, capsys):
    """A cache folder that cannot be made (a file stands there) or written is a warning: the evaluation still
    generates and writes its eval.jsonl."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    summary, generated = _eval(tmp_path / "run", EvalCache(tmp_path / "blocked" / ".eval-cache"), noisy)
    assert generated == LIMIT and summary["cached_from"] is None
    assert len(_outputs(tmp_path / "run")) == LIMIT
    assert "eval cache" in capsys.readouterr().err
