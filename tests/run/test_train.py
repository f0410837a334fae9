import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ada_slm.agl.builder import build_corpus
from ada_slm.files import write_jsonl
from ada_slm.run import models
from ada_slm.run.config import build_config
from ada_slm.run.datasets_io import IGNORE, Example, tokenize
from ada_slm.run.steps import accumulate_step, micro_batches, step_indices, step_passes, token_budget_passes
from ada_slm.run.train import run
from tests.shared import ROOT

TINY = {
    "base": "tiny-lfm2",
    "data": {"size": 120, "val_fraction": 0.1},
    "lora": {"r": 4, "alpha": 8},
    "batch": {"micro": 2, "accum": 2},
    "max_steps": 6,
    "lr": 1e-3,
    "max_length": 200,
    "val_every": 3,
    "checkpoint_every": 2,
}


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
    for row, ex in zip(rows, examples, strict=True):
        target = [t for t in ex.labels if t != IGNORE]
        assert target[-1] == tok.eos_token_id
        assert tok.decode(target[:-1]) == row["messages"][-1]["content"]
        assert ex.labels[0] == IGNORE and len(ex.labels) == len(ex.input_ids)
    short, dropped = tokenize(rows, tok, max_length=10)  # the prompt alone is longer than 10
    assert short == [] and dropped == 5


@pytest.mark.parametrize(
    "base, targets",
    [("tiny-lfm2", "default"), pytest.param("smollm2-135m", ["q_proj", "v_proj"], marks=pytest.mark.slow)],
)
def test_loss_and_gradients_do_not_depend_on_micro_batch_split(base, targets):
    """Same 16 sequences, dropout 0: 1×16, 4×4 and 16×1 give the same step loss and gradients."""
    from peft import LoraConfig, get_peft_model

    model, tok, _ = models.load(base)
    torch.manual_seed(0)
    model = get_peft_model(
        model,
        LoraConfig(
            r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            target_modules=models.default_targets(model) if targets == "default" else targets,
            init_lora_weights=False,
        ),
    )  # non-zero B so LoRA grads are non-trivial
    rows = build_corpus(16, "pure", seed=1).train
    examples, _ = tokenize(rows, tok, max_length=320)
    assert len(examples) == 16
    trainable = [p for p in model.parameters() if p.requires_grad]
    results = {}
    executions = {
        1: micro_batches(examples, 1),
        4: micro_batches(examples, 4),
        16: micro_batches(examples, 16),
        "budget 300": token_budget_passes(examples, 300, 80),
        "budget 1": token_budget_passes(examples, 1, 80),
    }
    assert len(executions["budget 1"]) == 16  # every sequence over the budget: a pass of its own
    for name, passes in executions.items():
        model.zero_grad(set_to_none=True)
        loss, n = accumulate_step(model, passes, tok.pad_token_id, torch.device("cpu"), None)
        results[name] = (loss, [p.grad.clone() for p in trainable])
    ref_loss, ref_grads = results[16]
    for micro in (1, 4, "budget 300", "budget 1"):
        loss, grads = results[micro]
        assert abs(loss - ref_loss) / ref_loss < 1e-5, (micro, loss, ref_loss)
        for g, r in zip(grads, ref_grads, strict=True):
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


def _cost(passes, overhead):
    return sum(len(p) * max(len(e.input_ids) for e in p) + overhead for p in passes)


def test_token_budget_passes_are_the_cheapest_cut_within_the_budget():
    """The cut computes the fewest padded tokens + overhead × passes of every cut of the length-sorted step that
    keeps within the budget (checked against all 2^8 cuts), keeps every sequence once, and puts a sequence
    longer than the budget in a pass of its own."""
    import itertools

    lengths = [5, 40, 7, 38, 6, 39, 8, 41, 300]
    step = [Example(list(range(n)), [IGNORE] + list(range(1, n))) for n in lengths]
    by_length = sorted(step, key=lambda e: len(e.input_ids), reverse=True)
    for budget, overhead in ((160, 0), (160, 80), (600, 80), (10_000, 1_000)):
        passes = token_budget_passes(step, budget, overhead)
        assert sorted(id(e) for p in passes for e in p) == sorted(id(e) for e in step)
        assert all(len(p) * len(p[0].input_ids) <= budget for p in passes if len(p) > 1)
        best = None
        for cuts in itertools.product((False, True), repeat=len(step) - 1):
            groups, current = [], [by_length[0]]
            for e, cut in zip(by_length[1:], cuts, strict=True):
                if cut:
                    groups.append(current)
                    current = []
                current.append(e)
            groups.append(current)
            if all(len(g) == 1 or len(g) * len(g[0].input_ids) <= budget for g in groups):
                best = min(best if best is not None else float("inf"), _cost(groups, overhead))
        assert _cost(passes, overhead) == best, (budget, overhead)
    assert len(token_budget_passes(step, 160, 0)) == 9  # a pass costs nothing: no padding at all
    # 300 alone (over the budget); the four long ones in two pairs (2 passes, 4 tokens of padding) rather than
    # 3 + 1; the short ones together (one pass instead of four costs 9 tokens of padding)
    assert [[len(e.input_ids) for e in p] for p in token_budget_passes(step, 160, 80)] == [
        [300],
        [41, 40],
        [39, 38],
        [8, 7, 6, 5],
    ]
    # passes dear, budget wide: the rest in one pass, but the outlier still alone (9 × 300 would pad 2,372 tokens)
    assert [len(p) for p in token_budget_passes(step, 10_000, 1_000)] == [1, 8]
    assert step_passes(step, 4, None) == micro_batches(step, 4)  # grouping: configured
    assert step_passes(step, 4, (160, 80)) == token_budget_passes(step, 160, 80)


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
    model = get_peft_model(
        model,
        LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules=models.default_targets(model)
        ),
    )
    from ada_slm.run.datasets_io import load_rows
    from ada_slm.run.steps import lora_state_hash

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
            ids = torch.tensor([e.input_ids + [tok.pad_token_id] * p for e, p in zip(part, pad, strict=True)])
            labels = torch.tensor([e.labels + [IGNORE] * p for e, p in zip(part, pad, strict=True)])
            mask = torch.tensor([[1] * len(e.input_ids) + [0] * p for e, p in zip(part, pad, strict=True)])
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)),
                labels[:, 1:].reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
            (loss / n_target).backward()
            total += loss.item()
        plain.append(total / n_target)
        torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    assert plain[-1] < plain[0]  # it learns at all
    for a, b in zip(ours, plain, strict=True):
        assert abs(a - b) / b < 1e-4, (ours, plain)


def test_auto_precision_is_a_fixed_rule_of_the_hardware(tmp_path):
    """`auto` never times anything: the same CPU flags always give the same precision."""
    from ada_slm.run import hardware

    cpu = torch.device("cpu")
    assert hardware.resolve_precision("auto", cpu, {"avx2", "fma"})[0] == "fp32"  # bf16 emulated: 0.23× fp32
    assert hardware.resolve_precision("auto", cpu, {"avx512f", "avx512_bf16"})[0] == "fp32"  # not measured
    name, why = hardware.resolve_precision("auto", cpu, {"avx512f", "amx_bf16", "amx_tile"})
    assert (name, why["cpu_bf16_flags"], why["machine_kind"]) == ("bf16", ["amx_bf16"], "amx")
    assert hardware.resolve_precision("bf16", cpu, {"avx2"})[0] == "bf16"  # asked for explicitly
    assert hardware.resolve_precision("fp32", cpu, {"amx_bf16"})[0] == "fp32"
    # on this machine: the rule applied to its own flags, and twice the same answer
    cfg = tiny_cfg(tmp_path)
    from ada_slm.run.train import choose_precision

    first, second = choose_precision(cfg, cpu), choose_precision(cfg, cpu)
    assert first == second
    assert first[0] == ("bf16" if "amx_bf16" in hardware.cpu_flags() else "fp32")
    assert first[1] == (torch.bfloat16 if first[0] == "bf16" else None)


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
    assert (
        sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n) == saved["train"]["trainable_params"]
    )
    with pytest.raises(Exception, match="already complete"):
        run(tiny_cfg(tmp_path), quiet=True)


def test_same_seed_same_init_and_same_adapter(tmp_path):
    a = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "a")), quiet=True)
    b = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "b")), quiet=True)
    c = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "c"), seed=1), quiet=True)
    assert a["meta"]["lora_init_sha256"] == b["meta"]["lora_init_sha256"] != c["meta"]["lora_init_sha256"]
    assert a["train"]["final_adapter_sha256"] == b["train"]["final_adapter_sha256"]
    assert [s["loss"] for s in a["train"]["steps"]] == [s["loss"] for s in b["train"]["steps"]]


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    """SIGKILLed once its first checkpoint (step 5) is on disk, then resumed, a run ends with the adapter of an
    uninterrupted one. After the resume point it crosses an epoch boundary (90 examples, 4 per step: step 23
    ends the epoch with 2) and a validation pass (step 30), dropout drawing from the restored RNG; 35 steps
    after the first checkpoint leave ample time to kill the run before it could finish."""
    corpus = build_corpus(100, "pure", seed=0, val_fraction=0.1)
    assert len(corpus.train) == 90
    write_jsonl(tmp_path / "c.jsonl", corpus.train)
    write_jsonl(tmp_path / "c.val.jsonl", corpus.val)
    overrides = [
        "base=tiny-lfm2",
        f"data.path={tmp_path / 'c.jsonl'}",
        "lora.r=4",
        "lora.dropout=0.1",
        "batch.micro=2",
        "batch.accum=2",
        "max_steps=40",
        "checkpoint_every=5",
        "val_every=30",
        "max_length=200",
        "lr=1e-3",
    ]
    cli = [sys.executable, "-c", "from ada_slm.app.cli import main; main()", "train", "--quiet"]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        cli + overrides + [f"out_dir={killed_dir}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
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
    assert len(resumed_record["train"]["steps"]) == 40
    assert [v["step"] for v in resumed_record["train"]["val"]] == [30, 40]
    a = load_file(killed_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(clean_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_dora_run_writes_a_dora_adapter_and_resumes_exactly(tmp_path):
    """lora.use_dora trains a DoRA adapter (PEFT's magnitude vectors next to A and B), the record says so, and a
    run interrupted after a checkpoint and resumed ends with the adapter of an uninterrupted one."""
    from peft import PeftModel

    dora = {"r": 4, "alpha": 8, "use_dora": True}
    clean = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "clean"), lora=dora), quiet=True)
    assert clean["status"]["state"] == "complete"
    assert clean["config"]["lora"]["use_dora"] is True and clean["config"]["resolved_lora"]["use_dora"] is True
    adapter = tmp_path / "clean" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["use_dora"] is True
    weights = load_file(adapter / "adapter_model.safetensors")
    magnitudes = [k for k in weights if "lora_magnitude_vector" in k]
    assert magnitudes and len(magnitudes) == len([k for k in weights if "lora_A" in k])
    base, _, _ = models.load("tiny-lfm2")
    loaded = PeftModel.from_pretrained(base, adapter)
    assert loaded.peft_config["default"].use_dora

    def interrupt_at_5(step, model, tokenizer):
        if step == 5:
            raise KeyboardInterrupt

    killed = tiny_cfg(tmp_path, out_dir=str(tmp_path / "killed"), lora=dora)
    with pytest.raises(KeyboardInterrupt):
        run(killed, quiet=True, on_step=interrupt_at_5)
    resumed = run(killed, resume=True, quiet=True)
    assert resumed["meta"]["resumed_from_step"] == 4
    assert resumed["train"]["final_adapter_sha256"] == clean["train"]["final_adapter_sha256"]


@pytest.mark.slow
def test_train_runs_on_the_core_dependencies_alone(tmp_path):
    """What only an extra installs (trl: the `bench` extra; mlflow, wandb, ray, …) is not needed to train: the
    run completes with every module of those packages made unimportable. accelerate stays a core dependency:
    peft imports it at import time."""
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    optional = (
        {canonicalize_name(Requirement(r).name) for extra in project["optional-dependencies"].values() for r in extra}
        - core
        - {"ada-slm"}
    )
    assert {"trl", "wandb"} <= optional and "accelerate" in core
    blocked = sorted(
        module
        for module, dists in packages_distributions().items()
        if any(canonicalize_name(d) in optional for d in dists)
    )
    assert {"trl", "wandb", "mlflow"} <= set(blocked)
    program = f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); from ada_slm.app.cli import main; main()"
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            program,
            "train",
            "--quiet",
            "base=tiny-lfm2",
            "data.size=40",
            "max_steps=2",
            "batch.micro=2",
            "batch.accum=1",
            "max_length=160",
            "lora.r=4",
            f"out_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "record.json").read_text())["status"]["state"] == "complete"


@pytest.mark.slow
def test_nan_loss_fails_the_run_with_reason(tmp_path):
    model, tok, _ = models.load("tiny-lfm2")
    with torch.no_grad():
        model.model.embed_tokens.weight[5:50] = float("nan")
    broken = tmp_path / "broken-model"
    model.save_pretrained(broken)
    tok.save_pretrained(broken)
    cli = [
        sys.executable,
        "-c",
        "from ada_slm.app.cli import main; main()",
        "train",
        "--quiet",
        f"base={broken}",
        "data.size=40",
        "max_steps=3",
        f"out_dir={tmp_path / 'run'}",
        "max_length=200",
    ]
    p = subprocess.run(cli, capture_output=True, text=True)
    assert p.returncode == 2
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"]["state"] == "failed"
    assert "non-finite training loss" in record["status"]["reason"] and "step 1" in record["status"]["reason"]
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_bad_config_and_missing_model_from_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: tiny-lfm2\nlora:\n  rnak: 8\n")
    cli = [sys.executable, "-c", "from ada_slm.app.cli import main; main()", "train", "--quiet"]
    p = subprocess.run(cli + [str(bad)], capture_output=True, text=True)
    assert p.returncode == 1 and f"{bad}: unknown key 'lora.rnak'" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(
        cli + ["base=LiquidAI/LFM2-350M-not-here", f"out_dir={tmp_path / 'x'}"], capture_output=True, text=True
    )
    assert p.returncode == 1 and "hf download" in p.stderr and "Traceback" not in p.stderr


def test_continue_from_init_adapter(tmp_path):
    first = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "first")), quiet=True)
    second = run(
        tiny_cfg(
            tmp_path,
            out_dir=str(tmp_path / "second"),
            lora={"r": 16, "alpha": 32, "init_adapter": first["train"]["adapter_dir"]},
        ),
        quiet=True,
    )
    # the champion's weights are the starting point, and its shape (r=4) wins over the config's r=16
    assert second["meta"]["lora_init_sha256"] == first["train"]["final_adapter_sha256"]
    assert second["config"]["resolved_lora"]["r"] == 4


@pytest.mark.slow
def test_smollm2_short_run(tmp_path):
    cfg = build_config(
        {
            "base": "smollm2-135m",
            "data": {"size": 40},
            "batch": {"micro": 2, "accum": 1},
            "max_steps": 2,
            "max_length": 64,
            "lora": {"r": 4, "alpha": 8},
            "out_dir": str(tmp_path / "smol"),
        },
        [],
    )
    record = run(cfg, quiet=True)
    assert record["status"]["state"] == "complete"
    assert record["config"]["resolved_lora"]["targets"] == sorted(models.LLAMA_TARGETS)
    assert (Path(record["train"]["adapter_dir"]) / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_progress_lines_when_output_is_not_a_terminal(tmp_path):
    """Redirected to a file or a pipe (nohup, CI), `train` prints one line every log_every steps with step,
    loss, tokens/s and ETA, and record.json holds the steps so far at each of those lines."""
    cli = [
        sys.executable,
        "-c",
        "from ada_slm.app.cli import main; main()",
        "train",
        "base=tiny-lfm2",
        "data.size=60",
        "max_steps=6",
        "log_every=2",
        "val_every=3",
        "max_length=200",
        "batch.micro=2",
        "batch.accum=2",
        f"out_dir={tmp_path / 'run'}",
    ]
    p = subprocess.run(cli, capture_output=True, text=True)  # stdout is a pipe, not a terminal
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"], p.stdout
    for line in lines:
        assert "loss " in line and "tok/s" in line and "ETA " in line, line
    assert "val " in lines[1]  # held-out loss shown once measured (step 3)


def test_record_holds_the_steps_so_far_while_training(tmp_path, monkeypatch):
    from ada_slm.run import records

    seen = []
    real_write_record = records.write_record

    def spy(run_dir, record):
        if record.status.state == "running":
            seen.append(len(record.train.steps))
        real_write_record(run_dir, record)

    cfg = tiny_cfg(tmp_path, log_every=2, checkpoint_every=100, val_every=100)
    monkeypatch.setattr(records, "write_record", spy)
    run(cfg, quiet=True)
    assert [n for n in seen if n] == [2, 4, 6]


def test_frozen_base_in_bf16_computes_what_bf16_autocast_computes():
    """The frozen base's Linear weights held in bf16 (cast once) give bit-identical loss and LoRA gradients to
    bf16 autocast over the fp32 weights (which casts them on every call); LoRA weights, embeddings and norms
    stay fp32, and the original fp32 weights come back afterwards."""
    from peft import LoraConfig, get_peft_model

    from ada_slm.run.steps import hold_frozen_linears_in, restore_frozen_linears

    model, tok, _ = models.load("tiny-lfm2")
    torch.manual_seed(0)
    model = get_peft_model(
        model,
        LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, target_modules=models.default_targets(model)
        ),
    )
    examples, _ = tokenize(build_corpus(8, "pure", seed=1).train, tok, max_length=320)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def step():
        model.zero_grad(set_to_none=True)
        loss, _ = accumulate_step(
            model, micro_batches(examples, 4), tok.pad_token_id, torch.device("cpu"), torch.bfloat16
        )
        return loss, [p.grad.clone() for p in trainable]

    ref_loss, ref_grads = step()
    originals = hold_frozen_linears_in(model, torch.bfloat16)
    assert len(originals) == sum(1 for n, _ in model.named_modules() if n.endswith("base_layer"))  # all frozen
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert all(dtypes[n] == torch.float32 for n, p in model.named_parameters() if p.requires_grad)
    assert dtypes["base_model.model.model.embed_tokens.weight"] == torch.float32
    assert any(d == torch.bfloat16 for d in dtypes.values())
    loss, grads = step()
    assert loss == ref_loss
    for g, r in zip(grads, ref_grads, strict=True):
        assert torch.equal(g, r)
    restore_frozen_linears(originals)
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert hold_frozen_linears_in(model, None) == {}  # fp32 runs keep the base as it is


def test_bf16_run_learns_what_the_fp32_run_learns(tmp_path):
    """A bf16 run (frozen base held in bf16, LoRA + AdamW in fp32) against an fp32 run of the same config: the
    loss trajectories agree within 0.2 % step by step — one bf16 rounding step (8 significant bits: 2^-9). The
    matmuls round their operands that much, but the residual stream, the loss and the updates stay fp32 and the
    per-token mean averages the rounding out (measured: 2e-5 at worst over 8 steps), while a wrong scale, a
    lost LoRA update or a bf16 residual stream moves it by more."""
    fp32 = run(
        tiny_cfg(
            tmp_path,
            out_dir=str(tmp_path / "fp32"),
            precision="fp32",
            max_steps=8,
            lora={"r": 4, "alpha": 8, "dropout": 0.0},
        ),
        quiet=True,
    )
    bf16 = run(
        tiny_cfg(
            tmp_path,
            out_dir=str(tmp_path / "bf16"),
            precision="bf16",
            max_steps=8,
            lora={"r": 4, "alpha": 8, "dropout": 0.0},
        ),
        quiet=True,
    )
    assert (fp32["meta"]["base_dtype"], bf16["meta"]["base_dtype"]) == ("float32", "bfloat16")
    a, b = ([s["loss"] for s in r["train"]["steps"]] for r in (fp32, bf16))
    assert a[-1] < a[0] and b[-1] < b[0]
    assert a != b  # bf16 really ran
    for x, y in zip(a, b, strict=True):
        assert abs(x - y) / x < 2**-9, (a, b)


def test_on_step_sees_the_model_a_study_evaluates(tmp_path):
    """In a bf16 run the frozen base is held in bf16 between steps; the on_step hook (learning curves) gets the
    fp32 base + LoRA that a study evaluates, and training goes on unchanged afterwards."""
    seen = []

    def check(step, model, tokenizer):
        dtypes = {m.weight.dtype for m in model.modules() if isinstance(m, torch.nn.Linear)}
        seen.append((step, dtypes, model.training))

    with_hook = run(
        tiny_cfg(tmp_path, out_dir=str(tmp_path / "a"), precision="bf16", max_steps=3), quiet=True, on_step=check
    )
    without = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "b"), precision="bf16", max_steps=3), quiet=True)
    assert [s for s, _, _ in seen] == [1, 2, 3]
    assert all(dtypes == {torch.float32} for _, dtypes, _ in seen)
    assert [s["loss"] for s in with_hook["train"]["steps"]] == [s["loss"] for s in without["train"]["steps"]]
    assert with_hook["train"]["final_adapter_sha256"] == without["train"]["final_adapter_sha256"]


# ------------------------------------------------------------------------------------------------ safety
def test_a_folder_that_is_not_this_runs_export_is_never_deleted(tmp_path):
    """export_dir=. or =data erased the user's files (issue 24): a folder ada-slm did not write for this run is
    refused in one line before anything loads or trains, and stays as it was."""
    from ada_slm.errors import UserError

    mine = tmp_path / "data"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    for export_dir in (mine, tmp_path):  # a user's folder; the folder that holds the run directory
        with pytest.raises(UserError, match="export_dir") as info:
            run(tiny_cfg(tmp_path, export_dir=str(export_dir)), quiet=True)
        assert "\n" not in str(info.value)
    assert (mine / "notes.txt").read_text() == "precious"
    assert not (tmp_path / "run").exists()  # refused before training: not even the run directory
    with pytest.raises(UserError, match="would replace the run directory"):
        run(tiny_cfg(tmp_path, export_dir=str(tmp_path / "run")), quiet=True)
    # another run's export is not this run's either
    other = run(tiny_cfg(tmp_path, out_dir=str(tmp_path / "other"), export_dir=str(tmp_path / "exp")), quiet=True)
    assert other["status"]["state"] == "complete"
    with pytest.raises(UserError, match="not the adapter ada-slm wrote for"):
        run(tiny_cfg(tmp_path, export_dir=str(tmp_path / "exp")), quiet=True)
    with pytest.raises(UserError, match="merged model folder"):  # --merge: its folder follows the same rule
        (tmp_path / "exp2-merged").mkdir()
        (tmp_path / "exp2-merged" / "x").write_text("x")
        run(tiny_cfg(tmp_path, export_dir=str(tmp_path / "exp2")), quiet=True, merge=True)


def test_this_runs_own_export_is_replaced_and_files_follow_the_umask(tmp_path):
    """A run redone (its record deleted) replaces its own earlier export; every exported file, the
    safetensors included (safetensors writes 0600), gets the umask's modes like every other result."""
    from ada_slm.run.exports import MARKER

    old_umask = os.umask(0o022)
    try:
        export_dir = tmp_path / "exports" / "a"
        first = run(tiny_cfg(tmp_path, export_dir=str(export_dir)), quiet=True, merge=True)
        assert json.loads((export_dir / MARKER).read_text())["owner"] == str((tmp_path / "run").resolve())
        (tmp_path / "run" / "record.json").unlink()
        second = run(tiny_cfg(tmp_path, export_dir=str(export_dir), seed=1), quiet=True, merge=True)
    finally:
        os.umask(old_umask)
    assert second["status"]["state"] == "complete"
    assert second["train"]["final_adapter_sha256"] != first["train"]["final_adapter_sha256"]
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["a", "a-merged"]  # no temp folders left
    for folder in (export_dir, tmp_path / "exports" / "a-merged"):
        assert (folder / MARKER).is_file()
        weights = [p for p in folder.iterdir() if p.suffix == ".safetensors"]
        assert weights
        for p in folder.iterdir():
            assert p.stat().st_mode & 0o777 == 0o644, p
        assert folder.stat().st_mode & 0o777 == 0o755


@pytest.mark.slow
def test_out_dir_or_export_dir_that_is_a_file_is_refused_before_training(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cli = [
        sys.executable,
        "-c",
        "from ada_slm.app.cli import main; main()",
        "train",
        "--quiet",
        "base=tiny-lfm2",
        "data.size=40",
        "max_steps=2",
        "max_length=200",
    ]
    for args, message in (
        ([f"out_dir={a_file}"], f"out_dir {a_file}: is a file"),
        ([f"out_dir={a_file / 'run'}"], f"{a_file} is a file"),
        ([f"out_dir={tmp_path / 'run'}", f"export_dir={a_file}"], f"export_dir {a_file}: is a file"),
    ):
        p = subprocess.run(cli + args, capture_output=True, text=True)
        assert p.returncode == 1 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before training: no record left "running"


def test_read_only_out_dir_is_one_line_naming_it(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    prefix = []
    if os.geteuid() == 0:  # root writes into a chmod 555 folder: make it a read-only mount instead
        if not shutil.which("unshare") or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
            pytest.skip("running as root without mount namespaces: no way to make a read-only folder")
        prefix = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"', str(folder)]
    else:
        folder.chmod(0o555)
    cli = [
        sys.executable,
        "-c",
        "from ada_slm.app.cli import main; main()",
        "train",
        "--quiet",
        "base=tiny-lfm2",
        "data.size=40",
        "max_steps=2",
        f"out_dir={folder / 'run'}",
    ]
    p = subprocess.run(prefix + cli, capture_output=True, text=True)
    assert p.returncode == 1 and f"cannot write in {folder} (read-only)" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_a_failed_data_load_leaves_no_run_directory(tmp_path):
    from ada_slm.errors import UserError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi"}\n')
    with pytest.raises(UserError, match="bad.jsonl:1"):
        run(tiny_cfg(tmp_path, data={"path": str(bad)}, out_dir=str(tmp_path / "deep" / "run")), quiet=True)
    assert not (tmp_path / "deep").exists()


def test_damaged_checkpoint_is_one_line(tmp_path):
    from ada_slm.errors import UserError

    (tmp_path / "run").mkdir()
    for content in (b"not a checkpoint", b""):
        (tmp_path / "run" / "checkpoint.pt").write_bytes(content)
        with pytest.raises(UserError, match="checkpoint.pt: damaged checkpoint") as info:
            run(tiny_cfg(tmp_path), resume=True, quiet=True)
        assert "\n" not in str(info.value)
    torch.save({"step": 3}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(UserError, match="checkpoint.pt: not a checkpoint of ada-slm"):
        run(tiny_cfg(tmp_path), resume=True, quiet=True)


class _RunsCodeWhenUnpickled:
    """What a planted checkpoint would hold: unpickling it calls Path.touch on a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    from ada_slm.errors import UserError

    (tmp_path / "run").mkdir()
    marker = tmp_path / "code-ran"
    torch.save({"step": 3, "payload": _RunsCodeWhenUnpickled(marker)}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(UserError, match="checkpoint.pt: damaged checkpoint, or one holding more than tensors"):
        run(tiny_cfg(tmp_path), resume=True, quiet=True)
    assert not marker.exists()


def _adapter(record: dict) -> dict:
    return load_file(Path(record["train"]["adapter_dir"]) / "adapter_model.safetensors")


@pytest.mark.slow
def test_the_configured_split_does_not_change_the_adapter_and_the_record_names_both(tmp_path):
    """Dropout 0: 1 × 8 and 4 × 2 train the same adapter whether the steps run as configured (8 passes of one
    sequence, 2 of four) or grouped by a token budget; the record keeps the configured split and says how it ran."""
    runs = {}
    for name, batch, execution in (
        ("1x8 configured", {"micro": 1, "accum": 8}, {"grouping": "configured"}),
        ("4x2 configured", {"micro": 4, "accum": 2}, {"grouping": "configured"}),
        ("1x8 budget", {"micro": 1, "accum": 8}, {"token_budget": 600, "pass_overhead": 80}),
        ("4x2 budget", {"micro": 4, "accum": 2}, {"token_budget": 600, "pass_overhead": 80}),
    ):
        cfg = tiny_cfg(
            tmp_path,
            lora={"r": 4, "alpha": 8, "dropout": 0.0},
            batch=batch,
            execution=execution,
            max_steps=4,
            out_dir=str(tmp_path / name.replace(" ", "-")),
        )
        runs[name] = run(cfg, quiet=True)
    ref = _adapter(runs["1x8 configured"])
    for name in ("4x2 configured", "1x8 budget", "4x2 budget"):
        for key, tensor in _adapter(runs[name]).items():
            torch.testing.assert_close(tensor, ref[key], rtol=1e-4, atol=1e-5, msg=f"{name} {key}")
    # the same passes whatever the configured split: the same numbers exactly
    assert _adapter(runs["1x8 budget"]).keys() == _adapter(runs["4x2 budget"]).keys()
    assert all(
        torch.equal(a, b)
        for a, b in zip(_adapter(runs["1x8 budget"]).values(), _adapter(runs["4x2 budget"]).values(), strict=True)
    )
    configured = runs["1x8 configured"]
    assert [s["passes"] for s in configured["train"]["steps"]] == [8] * 4
    assert configured["config"]["batch"] == {"micro": 1, "accum": 8}
    assert configured["config"]["executed_split"] == "configured 1×8=8, executed as configured (micro-batches of 1)"
    budget = runs["1x8 budget"]
    assert budget["config"]["batch"] == {"micro": 1, "accum": 8} and budget["config"]["executed_passes"] == [600, 80]
    assert budget["config"]["executed_split"] == (
        "configured 1×8=8, executed grouped by length, passes of ≤ 600 padded tokens (pass cost 80)"
    )
    assert all(s["passes"] < 8 for s in budget["train"]["steps"])


@pytest.mark.slow
def test_grouping_with_dropout_moves_held_out_loss_only_within_seed_noise(tmp_path):
    """Dropout masks are drawn per element, so grouping a step's sequences changes which masks are drawn but not
    their distribution: over 3 seeds, the held-out loss of grouped and one-sequence-per-pass execution differ by
    less than the seed-to-seed spread."""
    import statistics

    losses = {"configured": [], "by_length": []}
    for seed in range(3):
        for grouping in losses:
            cfg = tiny_cfg(
                tmp_path,
                lora={"r": 4, "alpha": 8, "dropout": 0.3},
                batch={"micro": 1, "accum": 8},
                execution={"grouping": grouping, "token_budget": 2000},
                max_steps=6,
                seed=seed,
                val_every=6,
                out_dir=str(tmp_path / f"{grouping}-{seed}"),
            )
            losses[grouping].append(run(cfg, quiet=True)["train"]["final_val_loss"])
    diffs = [a - b for a, b in zip(losses["by_length"], losses["configured"], strict=True)]
    seed_sd = statistics.stdev(losses["configured"] + losses["by_length"])
    assert any(d != 0 for d in diffs)  # the masks did change
    assert abs(statistics.mean(diffs)) < seed_sd, (losses, seed_sd)


def test_held_out_loss_is_computed_in_fp32_whatever_the_training_precision(tmp_path):
    """A bf16 run's held-out loss is the fp32 model's (the trained adapter on the fp32 base), not the bf16
    forward's: runs of different training precision are compared on one scale."""
    from ada_slm.run import hardware
    from ada_slm.run.datasets_io import load_rows
    from ada_slm.run.steps import heldout_loss
    from ada_slm.run.train import train

    cfg = tiny_cfg(tmp_path, precision="bf16", max_steps=2, val_every=2)
    trained = train(cfg, quiet=True)
    assert trained.record.meta["precision"] == "bf16" and trained.record.meta["heldout_precision"] == "fp32"
    _, val_rows, _ = load_rows(cfg.data)
    val_set, _ = tokenize(val_rows, trained.tokenizer, cfg.max_length)
    cpu = torch.device("cpu")
    passes = hardware.execution_defaults(cpu)
    fp32 = heldout_loss(trained.model, val_set, trained.tokenizer.pad_token_id, cpu, None, passes)
    bf16 = heldout_loss(trained.model, val_set, trained.tokenizer.pad_token_id, cpu, torch.bfloat16, passes)
    assert trained.record.train.final_val_loss == pytest.approx(fp32, rel=1e-6)
    assert abs(bf16 - fp32) > 1e-6 * fp32  # the test can tell the two apart
