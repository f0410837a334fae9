import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ada_slm import models
from ada_slm.agl.builder import build_corpus
from ada_slm.config import build_config
from ada_slm.files import write_jsonl
from ada_slm.train import IGNORE, Example, accumulate_step, micro_batches, run, step_indices, tokenize

TINY = {"base": "tiny-lfm2", "data": {"size": 120, "val_fraction": 0.1}, "lora": {"r": 4, "alpha": 8},
        "batch": {"micro": 2, "accum": 2}, "max_steps": 6, "lr": 1e-3, "max_length": 200,
        "val_every": 3, "checkpoint_every": 2}


def tiny_cfg(tmp_path, **over):
    raw = json.loads(json.dumps(TINY))
    for k, v in over.items():
        raw[k] = v
    raw.setdefault("out_dir", str(tmp_path / "run"))
    return build_config(raw)


def test_tokenize_masks_prompt_and_keeps_end_of_turn():
    _, tok, _ = models.load("tiny-lfm2")
    rows = build_corpus(5, {"tool": 1}, seed=0).train
    examples, dropped = tokenize(rows, tok, max_length=512)
    assert dropped == 0
    for row, ex in zip(rows, examples):
        target = [t for t in ex.labels if t != IGNORE]
        assert target[-1] == tok.eos_token_id
        assert tok.decode(target[:-1]) == row["messages"][-1]["content"]
        assert ex.labels[0] == IGNORE and len(ex.labels) == len(ex.input_ids)
    short, dropped = tokenize(rows, tok, max_length=10)  # the prompt alone is longer than 10
    assert short == [] and dropped == 5


@pytest.mark.parametrize("base, targets", [("tiny-lfm2", "default"), ("smollm2-135m", ["q_proj", "v_proj"])])
def test_loss_and_gradients_do_not_depend_on_micro_batch_split(base, targets):
    """Same 16 sequences, dropout 0: 1×16, 4×4 and 16×1 give the same step loss and gradients."""
    from peft import LoraConfig, get_peft_model

    model, tok, _ = models.load(base)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=
                                             models.default_targets(model) if targets == "default" else targets,
                                             init_lora_weights=False))  # non-zero B so LoRA grads are non-trivial
    rows = build_corpus(16, "pure", seed=1).train
    examples, _ = tokenize(rows, tok, max_length=320)
    assert len(examples) == 16
    trainable = [p for p in model.parameters() if p.requires_grad]
    results = {}
    for micro in (1, 4, 16):
        model.zero_grad(set_to_none=True)
        loss, n = accumulate_step(model, examples, micro, tok.pad_token_id, torch.device("cpu"), None)
        results[micro] = (loss, [p.grad.clone() for p in trainable])
    ref_loss, ref_grads = results[16]
    for micro in (1, 4):
        loss, grads = results[micro]
        assert abs(loss - ref_loss) / ref_loss < 1e-5, (micro, loss, ref_loss)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_micro_batches_group_similar_lengths_and_keep_every_sequence():
    lengths = [5, 40, 7, 38, 6, 39, 8, 41]
    step = [Example(list(range(n)), [IGNORE] + list(range(1, n))) for n in lengths]
    groups = micro_batches(step, 4)
    assert [len(g) for g in groups] == [4, 4]
    assert sorted(id(e) for g in groups for e in g) == sorted(id(e) for e in step)
    padded = sum(len(g) * max(len(e.input_ids) for e in g) for g in groups)
    in_order = sum(4 * max(lengths[m : m + 4]) for m in (0, 4))
    assert padded == 4 * 41 + 4 * 8 < in_order == 4 * 40 + 4 * 41
    assert [len(g) for g in micro_batches(step[:7], 3)] == [3, 3, 1]


def test_fast_path_learns_what_the_plain_path_learns(tmp_path):
    """ada-slm's training (length-grouped micro-batches, pad to the longest, LM head only on answer positions)
    against a plain loop over the same init and data order (every sequence padded to max_length, full logits,
    sequences in their drawn order): the loss trajectories agree step by step."""
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler, set_seed

    cfg = tiny_cfg(tmp_path, lora={"r": 4, "alpha": 8, "dropout": 0.0}, max_steps=8)
    record = run(cfg, quiet=True)
    ours = [s["loss"] for s in record["train"]["steps"]]

    model, tok, _ = models.load(cfg.base)
    set_seed(cfg.seed)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=models.default_targets(model)))
    from ada_slm.train import load_rows, lora_state_hash

    assert lora_state_hash(model) == record["meta"]["lora_init_sha256"]
    train_set, _ = tokenize(load_rows(cfg.data)[0], tok, cfg.max_length)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    sched = get_scheduler("linear", opt, num_warmup_steps=int(cfg.warmup_ratio * 8), num_training_steps=8)
    plain = []
    for step in range(8):
        chosen = [train_set[i] for i in step_indices(len(train_set), 4, cfg.seed, step)]
        n_target = sum(1 for e in chosen for t in e.labels[1:] if t != IGNORE)
        total = 0.0
        for m in range(0, 4, 2):
            part = chosen[m : m + 2]
            pad = [cfg.max_length - len(e.input_ids) for e in part]
            ids = torch.tensor([e.input_ids + [tok.pad_token_id] * p for e, p in zip(part, pad)])
            labels = torch.tensor([e.labels + [IGNORE] * p for e, p in zip(part, pad)])
            mask = torch.tensor([[1] * len(e.input_ids) + [0] * p for e, p in zip(part, pad)])
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=IGNORE, reduction="sum")
            (loss / n_target).backward()
            total += loss.item()
        plain.append(total / n_target)
        torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    assert plain[-1] < plain[0]  # it learns at all
    for a, b in zip(ours, plain):
        assert abs(a - b) / b < 1e-4, (ours, plain)


def test_auto_precision_on_cpu_follows_the_hardware_and_a_measurement(monkeypatch, tmp_path):
    from ada_slm import train

    cfg = tiny_cfg(tmp_path)
    cpu = torch.device("cpu")
    measure = train.bf16_speedup
    monkeypatch.setattr(train, "cpu_flags", lambda: {"avx2", "fma"})  # emulated bf16: not even measured
    monkeypatch.setattr(train, "bf16_speedup", lambda: pytest.fail("must not measure without native bf16"))
    assert train.choose_precision(cfg, cpu)[:2] == ("fp32", None)
    monkeypatch.setattr(train, "cpu_flags", lambda: {"avx512f", "amx_bf16"})
    monkeypatch.setattr(train, "bf16_speedup", lambda: 3.1)
    name, dtype, why = train.choose_precision(cfg, cpu)
    assert (name, dtype, why["bf16_speedup"], why["cpu_bf16_flags"]) == ("bf16", torch.bfloat16, 3.1, ["amx_bf16"])
    monkeypatch.setattr(train, "bf16_speedup", lambda: 0.9)  # native but measured slower: fp32
    assert train.choose_precision(cfg, cpu)[0] == "fp32"
    assert train.choose_precision(cfg.model_copy(update={"precision": "bf16"}), cpu)[0] == "bf16"
    assert 0 < measure(size=64, reps=1)  # the real measurement runs


def test_data_order_is_a_function_of_seed_and_step():
    assert step_indices(50, 16, 0, 0) == step_indices(50, 16, 0, 0)
    assert step_indices(50, 16, 0, 0) != step_indices(50, 16, 1, 0)
    epoch = [i for s in range(4) for i in step_indices(50, 16, 0, s)]
    assert sorted(epoch) == list(range(50))  # one epoch = every example once, last step of 2
    assert len(step_indices(50, 16, 0, 3)) == 2


def test_run_writes_record_and_loadable_adapter(tmp_path):
    from peft import PeftModel

    record = run(tiny_cfg(tmp_path), quiet=True)
    out = tmp_path / "run"
    assert record["status"]["state"] == "complete"
    saved = json.loads((out / "record.json").read_text())
    assert saved["status"]["state"] == "complete"
    assert saved["config"]["effective_batch"] == 4
    assert saved["config"]["batch_arithmetic"] == "micro 2 × accum 2 = 4 sequences/step"
    assert len(saved["train"]["steps"]) == 6
    assert [v["step"] for v in saved["train"]["val"]] == [3, 6]
    for key in ("loss", "grad_norm", "lr", "tokens_per_s"):
        assert all(isinstance(s[key], float) for s in saved["train"]["steps"])
    for key in ("wall_s", "peak_rss_mb", "adapter_bytes", "trainable_params", "final_val_loss"):
        assert saved["train"][key] > 0
    meta = saved["meta"]
    for key in ("base_weights_sha256", "data_sha256", "lora_init_sha256", "packages", "device", "torch_threads"):
        assert meta[key]
    assert not (out / "checkpoint.pt").exists()
    base, _, _ = models.load("tiny-lfm2")
    peft_model = PeftModel.from_pretrained(base, out / "adapter")
    assert sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n) == saved["train"]["trainable_params"]
    with pytest.raises(Exception, match="already complete"):
        run(tiny_cfg(tmp_path), quiet=True)


def test_same_seed_same_init_and_same_adapter(tmp_path):
    a = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "a")), quiet=True)
    b = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "b")), quiet=True)
    c = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "c"), seed=1), quiet=True)
    assert a["meta"]["lora_init_sha256"] == b["meta"]["lora_init_sha256"] != c["meta"]["lora_init_sha256"]
    assert a["train"]["final_adapter_sha256"] == b["train"]["final_adapter_sha256"]
    assert [s["loss"] for s in a["train"]["steps"]] == [s["loss"] for s in b["train"]["steps"]]


def test_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    corpus = build_corpus(300, "pure", seed=0, val_fraction=0.1)
    write_jsonl(tmp_path / "c.jsonl", corpus.train)
    write_jsonl(tmp_path / "c.val.jsonl", corpus.val)
    overrides = ["base=tiny-lfm2", f"data.path={tmp_path / 'c.jsonl'}", "lora.r=4", "lora.dropout=0.1",
                 "batch.micro=2", "batch.accum=2", "max_steps=120", "checkpoint_every=5", "val_every=100",
                 "max_length=200", "lr=1e-3"]
    cli = [sys.executable, "-c", "from ada_slm.cli import main; main()", "train", "--quiet"]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(cli + overrides + [f"out_dir={killed_dir}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ckpt = killed_dir / "checkpoint.pt"
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    record = json.loads((killed_dir / "record.json").read_text())
    assert record["status"]["state"] == "running"  # killed: not complete, nothing exported
    assert not (killed_dir / "adapter").exists()
    resumed = subprocess.run(cli + ["--resume"] + overrides + [f"out_dir={killed_dir}"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean_dir = tmp_path / "clean"
    clean = subprocess.run(cli + overrides + [f"out_dir={clean_dir}"], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    resumed_record = json.loads((killed_dir / "record.json").read_text())
    assert resumed_record["meta"]["resumed_from_step"] >= 5
    assert len(resumed_record["train"]["steps"]) == 120
    a = load_file(killed_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(clean_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_nan_loss_fails_the_run_with_reason(tmp_path):
    model, tok, _ = models.load("tiny-lfm2")
    with torch.no_grad():
        model.model.embed_tokens.weight[5:50] = float("nan")
    broken = tmp_path / "broken-model"
    model.save_pretrained(broken)
    tok.save_pretrained(broken)
    cli = [sys.executable, "-c", "from ada_slm.cli import main; main()", "train", "--quiet", f"base={broken}",
           "data.size=40", "max_steps=3", f"out_dir={tmp_path / 'run'}", "max_length=200"]
    p = subprocess.run(cli, capture_output=True, text=True)
    assert p.returncode == 2
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"]["state"] == "failed"
    assert "non-finite training loss" in record["status"]["reason"] and "step 1" in record["status"]["reason"]
    assert "Traceback" not in p.stderr


def test_bad_config_and_missing_model_from_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: tiny-lfm2\nlora:\n  rnak: 8\n")
    cli = [sys.executable, "-c", "from ada_slm.cli import main; main()", "train", "--quiet"]
    p = subprocess.run(cli + [str(bad)], capture_output=True, text=True)
    assert p.returncode == 1 and f"{bad}: unknown key 'lora.rnak'" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(cli + ["base=LiquidAI/LFM2-350M-not-here", f"out_dir={tmp_path / 'x'}"], capture_output=True,
                       text=True)
    assert p.returncode == 1 and "hf download" in p.stderr and "Traceback" not in p.stderr


def test_continue_from_init_adapter(tmp_path):
    first = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "first")), quiet=True)
    second = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "second"),
                          lora={"r": 16, "alpha": 32, "init_adapter": first["train"]["adapter_dir"]}), quiet=True)
    # the champion's weights are the starting point, and its shape (r=4) wins over the config's r=16
    assert second["meta"]["lora_init_sha256"] == first["train"]["final_adapter_sha256"]
    assert second["config"]["resolved_lora"]["r"] == 4


@pytest.mark.slow
def test_smollm2_short_run(tmp_path):
    cfg = build_config({"base": "smollm2-135m", "data": {"size": 40}, "batch": {"micro": 2, "accum": 1},
                        "max_steps": 2, "max_length": 64, "lora": {"r": 4, "alpha": 8},
                        "out_dir": str(tmp_path / "smol")}, [])
    record = run(cfg, quiet=True)
    assert record["status"]["state"] == "complete"
    assert record["config"]["resolved_lora"]["targets"] == sorted(models.LLAMA_TARGETS)
    assert (Path(record["train"]["adapter_dir"]) / "adapter_model.safetensors").is_file()
