"""One LoRA fine-tuning run, top to bottom: config -> data -> model + adapter -> steps -> adapter + record.

The loss is the mean cross-entropy per *target token over the whole optimizer step*: every micro-batch adds its
summed token losses divided by the step's total target-token count. So `1 × 16`, `4 × 4` and `16 × 1` splits of
the same 16 sequences produce the same loss and the same gradient — the seed study compared losses whose
normalisation changed with gradient accumulation, and this makes that impossible.

Targets are the tokens of every assistant turn plus its end-of-turn token (every token for plain text); the
prompt, user turns and chat-template scaffolding are masked (datasets_io.py); each step's sequences are
grouped by length into micro-batches, which are padded only to their longest sequence.
"""

from __future__ import annotations

import hashlib
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ada_slm.run import checkpoints, exports, hardware, models, records, runlock
from ada_slm.run.config import TrainConfig
from ada_slm.run.datasets_io import IGNORE, Example, load_rows, rows_hash, tokenize
from ada_slm.errors import UserError
from ada_slm.files import check_writable_dir, make_dir, write_json


# ------------------------------------------------------------------------------------------------ data
# Reading a corpus (the builder's, or the user's in any supported format), its held-out split and the loss
# masks (load_rows, rows_hash, tokenize) live in datasets_io.py; from here on an example is token ids + labels.


def collate(batch: list[Example], pad_id: int, device) -> dict:
    """Right-pad to the longest sequence of this micro-batch (not to max_length)."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def target_tokens(batch: list[Example]) -> int:
    """Tokens the loss is computed on: labels from position 1 on (position 0 has nothing before it)."""
    return sum(sum(1 for label in e.labels[1:] if label != IGNORE) for e in batch)


def step_indices(n: int, effective: int, seed: int, step: int) -> list[int]:
    """Example indices of optimizer step `step` (0-based): each epoch is a seeded permutation, cut into
    steps of `effective` sequences (the last step of an epoch may be smaller). Pure function of its
    arguments, so a resumed run sees exactly the data order of an uninterrupted one."""
    steps_per_epoch = math.ceil(n / effective)
    epoch, k = divmod(step, steps_per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    return order[k * effective : (k + 1) * effective]


def summed_loss(model, batch: dict, autocast_dtype) -> torch.Tensor:
    """Sum of next-token cross-entropy over the target tokens of one micro-batch (not a mean).

    Only the positions that predict a target token go through the LM head (`logits_to_keep`): the prompt is
    most of every sequence, and full-vocabulary logits for it would be computed only to be ignored."""
    device_type = batch["input_ids"].device.type
    targets = batch["labels"][:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)  # positions p whose logits predict token p+1
    with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=keep, use_cache=False).logits  # no KV cache: nothing is generated
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        targets[:, keep].reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


def micro_batches(chosen: list[Example], micro: int) -> list[list[Example]]:
    """Cut one optimizer step's sequences into micro-batches of `micro`, longest first, so that sequences of
    similar length share a micro-batch and little padding is computed. Free of side effects on what is
    learned: the step's loss and gradient are sums over its sequences, whatever the grouping (measured on
    the 2k corpus at 4 × 4: padded tokens fall from 1.27× to 1.10× the real tokens)."""
    by_length = sorted(chosen, key=lambda e: len(e.input_ids), reverse=True)
    return [by_length[m : m + micro] for m in range(0, len(by_length), micro)]


def accumulate_step(model, chosen: list[Example], micro: int, pad_id: int, device, autocast_dtype) -> tuple[float, int]:
    """Forward/backward the sequences of one optimizer step in micro-batches of `micro`, leaving in .grad the
    gradient of (summed target-token loss / the step's target-token count). Returns (that loss, the count).
    The split into micro-batches changes neither number."""
    n_target = target_tokens(chosen)
    loss_sum = 0.0
    for group in micro_batches(chosen, micro):
        part = summed_loss(model, collate(group, pad_id, device), autocast_dtype)
        (part / n_target).backward()
        loss_sum += part.item()
    return loss_sum / n_target, n_target


@torch.no_grad()
def heldout_loss(model, examples: list[Example], pad_id: int, device, autocast_dtype, micro: int) -> float | None:
    """Mean cross-entropy per target token over the whole held-out set (same normalisation as training)."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for chunk in micro_batches(examples, micro):  # a sum over examples: the grouping only saves padding
        total += summed_loss(model, collate(chunk, pad_id, device), autocast_dtype).item()
        count += target_tokens(chunk)
    model.train(was_training)
    return total / count


# ------------------------------------------------------------------------------------------------ helpers
def hold_frozen_linears_in(model, dtype: torch.dtype | None) -> dict:
    """Keep the frozen base's Linear weights in `dtype` (the autocast dtype) for the run; returns what
    `restore_frozen_linears` needs to put the original weights back.

    Autocast casts a weight that does not require grad again on *every* call (it caches only casts of leaves
    that require grad), so with fp32 master weights every forward re-casts the whole frozen base. Casting once
    gives bit-identical matmuls — autocast would round the same fp32 weight to the same bf16 value — while the
    LoRA weights, the optimizer state, the embeddings (whose output feeds the fp32 residual stream) and the
    norms stay fp32. A Linear that shares its weight with the input embedding (a tied LM head) is left alone
    for the same reason."""
    if dtype is None:
        return {}
    embedding = model.get_input_embeddings().weight
    originals = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if (isinstance(module, torch.nn.Linear) and weight is not None and not weight.requires_grad
                and weight.dtype != dtype and weight is not embedding):
            originals[module] = weight
            module.weight = torch.nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    return originals


def restore_frozen_linears(originals: dict) -> None:
    """Put back the weights `hold_frozen_linears_in` replaced (a merge or an fp32 evaluation needs them)."""
    for module, weight in originals.items():
        module.weight = weight


def lora_state_hash(model) -> str:
    """sha256 of every LoRA tensor (sorted by name): equal hashes mean identical adapters."""
    from peft import get_peft_model_state_dict

    h = hashlib.sha256()
    for name, tensor in sorted(get_peft_model_state_dict(model).items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def choose_precision(cfg: TrainConfig, device: torch.device) -> tuple[str, torch.dtype | None, dict]:
    """(name, autocast dtype or None, how it was chosen): the fixed rule of `hardware.resolve_precision`."""
    name, why = hardware.resolve_precision(cfg.precision, device)
    return name, hardware.autocast_dtype(name), why


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(done: int, total: int, info: str, elapsed: float, steps_this_process: int) -> str:
    """One line of progress for output that is not a terminal, like HF Trainer's logging."""
    eta = elapsed / max(1, steps_this_process) * (total - done)
    return f"step {done}/{total} ({100 * done / total:.0f}%)  {info}  elapsed {_clock(elapsed)}  ETA {_clock(eta)}"


def adapter_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("adapter_model.*"))


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class TrainedRun:
    """What `train` returns: the run record (also in <out_dir>/record.json) and, when the run completed, the
    trained PEFT model (fp32 base + LoRA) and its tokenizer, so a study can evaluate without reloading."""

    record: dict
    model: object | None = None
    tokenizer: object | None = None


@dataclass
class Loop:
    """Everything the optimizer steps need, built by the stages before them."""

    cfg: TrainConfig
    model: object
    tokenizer: object
    train_set: list[Example]
    val_set: list[Example]
    trainable: list
    optimizer: torch.optim.Optimizer
    scheduler: object
    device: torch.device
    autocast_dtype: torch.dtype | None
    total_steps: int
    record_path: Path
    ckpt_path: Path
    frozen: dict  # the fp32 weights of the frozen Linears held in bf16 (hold_frozen_linears_in), to restore


def run(cfg: TrainConfig, **kwargs) -> dict:
    """Train one adapter; returns the run record. Same arguments as `train`."""
    return train(cfg, **kwargs).record


@runlock.holding_out_dir  # one process at a time trains a run folder; a second one is refused in one line
def train(cfg: TrainConfig, resume: bool = False, quiet: bool = False, merge: bool = False, console=None,
          tracker=None, on_step=None) -> TrainedRun:
    """Train one adapter: check the run directory, data, model + adapter, optimizer, (resume), steps, export.
    `tracker` (tracking.open_tracker) mirrors the config, every step and the adapter; the caller ends it.
    `on_step(step, model, tokenizer)` is called after every optimizer step (bench/learning_curve.py evaluates there)."""
    from rich.console import Console
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    console = console or Console(quiet=quiet)
    record_path, ckpt_path = check_run_dir(cfg, resume, merge)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    device = hardware.default_device()
    n_threads = hardware.set_threads()
    precision, autocast_dtype, precision_choice = choose_precision(cfg, device)
    console.print(f"[bold]ada-slm train[/] → {cfg.out_dir}   ({cfg.batch_arithmetic()}, {precision} on {device})")
    if not quiet:
        import yaml

        console.print(yaml.safe_dump(cfg.model_dump(), sort_keys=False, allow_unicode=True).rstrip(),
                      highlight=False, markup=False)

    # 1. data, tokenized by the base model's tokenizer
    train_rows, val_rows, data_source = load_rows(cfg.data)
    model, tokenizer, base_path = models.load(cfg.base)
    train_set, dropped_train = tokenize(train_rows, tokenizer, cfg.max_length)
    val_set, _ = tokenize(val_rows, tokenizer, cfg.max_length)
    if not train_set:
        raise UserError(f"no training example fits in max_length={cfg.max_length}")

    # 2. seed everything *before* the adapter is built, so the LoRA init is a function of the seed
    set_seed(cfg.seed)
    model = attach_adapter(cfg, model).to(device)
    lora_init_hash = lora_state_hash(model)
    frozen_originals = hold_frozen_linears_in(model, autocast_dtype)

    # 3. optimizer and schedule: micro × accum = effective sequences per optimizer step
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch.effective)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    optimizer, scheduler = make_optimizer(cfg, trainable, total_steps)
    loop = Loop(cfg, model, tokenizer, train_set, val_set, trainable, optimizer, scheduler, device, autocast_dtype,
                total_steps, record_path, ckpt_path, frozen_originals)

    record = new_record(cfg, model, total_steps, steps_per_epoch, sum(p.numel() for p in trainable))
    record["meta"] = {
        "base": cfg.base, "base_path": str(base_path), "base_weights_sha256": models.weights_hash(base_path),
        "data_source": data_source, "train_examples": len(train_set), "val_examples": len(val_set),
        "train_dropped_too_long": dropped_train, "data_sha256": rows_hash(train_rows),
        "val_sha256": rows_hash(val_rows) if val_rows else None, "packages": records.package_versions(),
        "git_commit": records.git_commit(), "device": str(device),
        "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "precision": precision, "precision_choice": precision_choice,
        "base_dtype": str(autocast_dtype if frozen_originals else torch.float32).removeprefix("torch."),
        "torch_threads": n_threads, "seed": cfg.seed, "data_seed": cfg.data.seed, "lora_init_sha256": lora_init_hash,
    }
    start_step, wall_before = 0, 0.0
    if resume:
        start_step, wall_before = checkpoints.restore_checkpoint(loop, record)
        console.print(f"resuming at step {start_step}/{total_steps}")
    make_dir(cfg.out_dir, "out_dir")  # only now: a run whose data or model fails to load leaves no folder
    write_json(record_path, record)
    if tracker:
        tracker.params(record["config"])

    # 4. the steps
    t0 = time.perf_counter()
    failure = train_steps(loop, record, start_step, wall_before, console, quiet, tracker, on_step)
    wall = wall_before + time.perf_counter() - t0
    if failure:
        record["status"] = {"state": "failed", "reason": failure}
        record["train"].update({"wall_s": wall, "peak_rss_mb": records.peak_rss_mb()})
        write_json(record_path, record)
        console.print(f"[bold red]run failed:[/] {failure}")
        return TrainedRun(record)

    # 5. export: the adapter (atomically), optionally a merged model; the record completes last
    restore_frozen_linears(loop.frozen)  # the merged model and the returned one are the fp32 base + LoRA
    try:
        export(loop, record, wall, merge)
    except UserError as e:  # the disk filled up, the folder vanished: the record says so, not "running"
        record["status"] = {"state": "failed", "reason": str(e)}
        write_json(record_path, record)
        raise
    ckpt_path.unlink(missing_ok=True)
    steps = record["train"]["steps"]
    if tracker:
        tracker.metrics(len(steps), {"train/peak_rss_mb": record["train"]["peak_rss_mb"], "train/wall_s": wall})
        tracker.artifacts(Path(record["train"]["adapter_dir"]), "adapter")
    console.print(f"done: {len(steps)} steps in {wall:.1f}s, final loss {steps[-1]['loss']:.4f}"
                  + (f", held-out {record['train']['final_val_loss']:.4f}" if record["train"]["val"] else "")
                  + f", adapter → {record['train']['adapter_dir']}")
    return TrainedRun(record, model, tokenizer)


# ------------------------------------------------------------------------------------------------ the stages
def export_owner(cfg: TrainConfig) -> str:
    """Whose exports a run's adapter and merged model are (the marker of exports.py): its resolved out_dir."""
    return str(Path(cfg.out_dir).resolve())


def merged_dir(cfg: TrainConfig) -> Path:
    adapter_dir = cfg.adapter_dir()
    return adapter_dir.with_name(adapter_dir.name + "-merged")


def check_run_dir(cfg: TrainConfig, resume: bool, merge: bool = False) -> tuple[Path, Path]:
    """(record path, checkpoint path) of a run directory that may be (re)started, after refusing every place
    the run could not write or would have to delete someone else's files in — before any training. Creates
    nothing: the run directory is made once the data and the model have loaded."""
    out_dir = Path(cfg.out_dir)
    record_path, ckpt_path = out_dir / records.RECORD, out_dir / "checkpoint.pt"
    check_writable_dir(out_dir, "out_dir")
    owner = export_owner(cfg)
    for what, folder, kind in (("export_dir", cfg.adapter_dir(), "adapter"),
                               ("merged model folder", merged_dir(cfg), "merged model")):
        if kind == "merged model" and not merge:
            continue
        resolved = folder.resolve()
        if Path(owner) == resolved or Path(owner).is_relative_to(resolved):
            raise UserError(f"{what} {folder}: would replace the run directory {out_dir}; choose another one")
        exports.check_target(folder, kind, owner, what)
    if records.is_trained(records.read_record_or_none(out_dir)):  # a corrupt record: the run starts over
        raise UserError(f"{record_path}: this run is already complete (choose another out_dir or delete it)")
    if resume and not ckpt_path.is_file():
        raise UserError(f"{ckpt_path}: no checkpoint to resume from")
    if not resume and ckpt_path.is_file():
        raise UserError(f"{out_dir}: holds a checkpoint of an unfinished run; pass --resume to continue it")
    return record_path, ckpt_path


def attach_adapter(cfg: TrainConfig, model):
    """A new LoRA adapter on `model`, or the existing one of `lora.init_adapter`, trainable."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    if cfg.lora.init_adapter:
        if not (Path(cfg.lora.init_adapter) / "adapter_config.json").is_file():
            raise UserError(f"lora.init_adapter {cfg.lora.init_adapter}: not a PEFT adapter directory")
        return PeftModel.from_pretrained(model, cfg.lora.init_adapter, is_trainable=True)
    targets = models.default_targets(model) if cfg.lora.targets == "default" else cfg.lora.targets
    peft_config = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=targets, use_rslora=cfg.lora.use_rslora, use_dora=cfg.lora.use_dora,
                                 task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise UserError(f"lora.targets {targets}: {str(e).splitlines()[0]}") from None


def make_optimizer(cfg: TrainConfig, trainable: list, total_steps: int):
    """AdamW on the LoRA weights, with warmup and the configured decay over `total_steps`."""
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(cfg.schedule if cfg.schedule != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    return optimizer, scheduler


def new_record(cfg: TrainConfig, model, total_steps: int, steps_per_epoch: int, n_trainable: int) -> dict:
    resolved_lora = model.peft_config["default"]
    return {
        "config": {**cfg.model_dump(), "effective_batch": cfg.batch.effective,
                   "batch_arithmetic": cfg.batch_arithmetic(), "total_steps": total_steps,
                   "steps_per_epoch": steps_per_epoch,
                   "resolved_lora": {"r": resolved_lora.r, "alpha": resolved_lora.lora_alpha,
                                     "targets": sorted(resolved_lora.target_modules),
                                     "use_rslora": resolved_lora.use_rslora,
                                     "use_dora": resolved_lora.use_dora}},
        "status": {"state": "running", "reason": None},
        "train": {"loss_normalisation": "mean per target token over the optimizer step (assistant tokens + "
                                        "end-of-turn; prompt masked)",
                  "steps": [], "val": [], "trainable_params": n_trainable},
        "eval": None,
    }


def train_steps(loop: Loop, record: dict, start_step: int, wall_before: float, console, quiet: bool, tracker,
                on_step) -> str | None:
    """The optimizer steps from `start_step`, with held-out loss, progress, the record kept current and
    checkpoints. Returns why the run failed (a non-finite loss or gradient), or None."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cfg, model, total = loop.cfg, loop.model, loop.total_steps
    pad_id, effective = loop.tokenizer.pad_token_id, cfg.batch.effective
    model.train()
    t0 = time.perf_counter()
    progress = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=quiet or not console.is_terminal, transient=False)
    try:
        with progress:
            task = progress.add_task("train", total=total, completed=start_step, info="")
            for step in range(start_step, total):
                t_step = time.perf_counter()
                chosen = [loop.train_set[i] for i in step_indices(len(loop.train_set), effective, cfg.seed, step)]
                loss, n_target = accumulate_step(model, chosen, cfg.batch.micro, pad_id, loop.device,
                                                 loop.autocast_dtype)
                if not math.isfinite(loss):
                    return f"non-finite training loss ({loss}) at step {step + 1}"
                grad_norm = torch.nn.utils.clip_grad_norm_(loop.trainable, cfg.max_grad_norm).item()
                if not math.isfinite(grad_norm):
                    return f"non-finite gradient norm at step {step + 1}"
                lr = loop.scheduler.get_last_lr()[0]
                loop.optimizer.step()
                loop.scheduler.step()
                loop.optimizer.zero_grad(set_to_none=True)
                dt, done = time.perf_counter() - t_step, step + 1
                n_tokens = sum(len(e.input_ids) for e in chosen)
                entry = {"step": done, "loss": loss, "grad_norm": grad_norm, "lr": lr,
                         "sequences": len(chosen), "target_tokens": n_target, "tokens": n_tokens,
                         "tokens_per_s": n_tokens / dt, "target_tokens_per_s": n_target / dt}
                record["train"]["steps"].append(entry)
                if tracker:
                    tracker.metrics(done, {"train/loss": loss, "train/grad_norm": grad_norm, "train/lr": lr,
                                           "train/tokens_per_s": entry["tokens_per_s"],
                                           "train/target_tokens_per_s": entry["target_tokens_per_s"]})
                if done % cfg.val_every == 0 or done == total:
                    val = heldout_loss(model, loop.val_set, pad_id, loop.device, loop.autocast_dtype, cfg.batch.micro)
                    if val is not None:
                        if not math.isfinite(val):
                            return f"non-finite held-out loss at step {done}"
                        record["train"]["val"].append({"step": done, "loss": val})
                        if tracker:
                            tracker.metrics(done, {"val/loss": val})
                info = f"loss {loss:.4f}  {n_tokens / dt:,.0f} tok/s"
                if record["train"]["val"]:
                    info += f"  val {record['train']['val'][-1]['loss']:.4f}"
                progress.update(task, completed=done, info=info)
                if done % cfg.log_every == 0 or done == total:
                    # the steps so far, for `study status`, the live view and anyone reading the record
                    write_json(loop.record_path, record)
                    if not console.is_terminal:  # a log file, nohup, CI: the bar draws nothing there
                        console.print(progress_line(done, total, info, time.perf_counter() - t0, done - start_step),
                                      highlight=False, markup=False)
                if on_step:  # it sees the model as a study evaluates it: the fp32 base + LoRA
                    restore_frozen_linears(loop.frozen)
                    on_step(done, model, loop.tokenizer)
                    loop.frozen = hold_frozen_linears_in(model, loop.autocast_dtype)
                    model.train()
                if done % cfg.checkpoint_every == 0 and done < total:
                    checkpoints.save_checkpoint(loop, record, done, wall_before + time.perf_counter() - t0)
                    record["train"]["last_checkpoint_step"] = done
                    write_json(loop.record_path, record)
    except KeyboardInterrupt:
        record["status"] = {"state": "interrupted", "reason": "interrupted by the user; --resume continues "
                                                              "from the last checkpoint"}
        write_json(loop.record_path, record)
        raise
    return None


def export(loop: Loop, record: dict, wall: float, merge: bool) -> None:
    """The adapter, optionally a merged model (each written whole, replacing only this run's earlier export:
    exports.py), then the complete record."""
    adapter_dir, owner = loop.cfg.adapter_dir(), export_owner(loop.cfg)

    def save(model):
        def fill(folder: Path) -> None:
            model.save_pretrained(folder)
            loop.tokenizer.save_pretrained(folder)
        return fill

    # sweep: temp folders of a killed earlier export of this run (we hold the run folder's lock)
    exports.write_folder(adapter_dir, "adapter", owner, "export_dir", save(loop.model), sweep=True)
    steps = record["train"]["steps"]
    record["train"].update({
        "wall_s": wall,
        "final_train_loss": steps[-1]["loss"],
        "mean_train_loss": sum(s["loss"] for s in steps) / len(steps),
        "final_val_loss": record["train"]["val"][-1]["loss"] if record["train"]["val"] else None,
        "tokens_per_s": sum(s["tokens"] for s in steps) / sum(s["tokens"] / s["tokens_per_s"] for s in steps),
        "target_tokens_per_s": sum(s["target_tokens"] for s in steps)
        / sum(s["target_tokens"] / s["target_tokens_per_s"] for s in steps),
        "peak_rss_mb": records.peak_rss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if loop.device.type == "cuda" else None,
        "adapter_dir": str(adapter_dir),
        "adapter_bytes": adapter_bytes(adapter_dir),
        "final_adapter_sha256": lora_state_hash(loop.model),
    })
    if merge:
        merged = merged_dir(loop.cfg)
        exports.write_folder(merged, "merged model", owner, "merged model folder", save(loop.model.merge_and_unload()),
                             sweep=True)
        record["train"]["merged_dir"] = str(merged)
    record["status"] = {"state": "complete", "reason": None}
    runlock.check(loop.cfg.out_dir)
    write_json(loop.record_path, record)
