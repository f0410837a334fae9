"""One LoRA fine-tuning run, top to bottom — the recipe: check the run directory, set up the data, the model and
its adapter, the optimizer and the record, (resume), run the steps (steps.py), export the adapter, complete the
record. Each stage is one small `_setup_*` function; the batches, the loss and the loop are in steps.py."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ada_slm.errors import UserError
from ada_slm.files import check_writable_dir, make_dir
from ada_slm.run import checkpoints, exports, hardware, models, records, runlock
from ada_slm.run.config import TrainConfig
from ada_slm.run.datasets_io import Example, load_rows, rows_hash, tokenize
from ada_slm.run.steps import Loop, hold_frozen_linears_in, lora_state_hash, restore_frozen_linears, train_steps

LOSS_NORMALISATION = {  # what a step's training loss is a mean of (config loss.normalisation), as records say it
    "token": "mean per target token over the optimizer step (assistant tokens + end-of-turn; prompt masked)",
    "sequence": "mean over the optimizer step's sequences of each sequence's mean per target token (assistant "
    "tokens + end-of-turn; prompt masked)",
    "micro_batch": "mean over the optimizer step's configured micro-batches of each micro-batch's mean per target "
    "token (the seed study's loss: it depends on micro × accum; assistant tokens + end-of-turn; "
    "prompt masked)",
}


@dataclass
class TrainedRun:
    """What `train` returns: the run record (also in <out_dir>/record.json) and, when the run completed, the
    trained PEFT model (fp32 base + LoRA) and its tokenizer, so a study can evaluate without reloading."""

    record: records.RunRecord
    model: object | None = None
    tokenizer: object | None = None


@dataclass
class Data:
    """The run's examples, tokenized by the base model's tokenizer, and where they came from."""

    train_rows: list
    val_rows: list
    source: str
    train_set: list[Example]
    val_set: list[Example]
    dropped_train: int


def run(cfg: TrainConfig, **kwargs) -> dict:
    """Train one adapter; returns the run record as record.json holds it (plain JSON data). Same arguments as
    `train`."""
    return train(cfg, **kwargs).record.model_dump(mode="json", exclude_unset=True)


@runlock.holding_out_dir  # one process at a time trains a run folder; a second one is refused in one line
def train(
    cfg: TrainConfig,
    resume: bool = False,
    quiet: bool = False,
    merge: bool = False,
    console=None,
    tracker=None,
    on_step=None,
) -> TrainedRun:
    """Train one adapter: check the run directory, data, model + adapter, optimizer, (resume), steps, export.
    `tracker` (tracking.open_tracker) mirrors the config, every step and the adapter; the caller ends it.
    `on_step(step, model, tokenizer)` is called after every optimizer step (bench/learning_curve.py evaluates there)."""
    from rich.console import Console  # rich, transformers: heavy, and only a run needs them
    from transformers import set_seed

    console = console or Console(quiet=quiet)
    record_path, ckpt_path = check_run_dir(cfg, resume, merge)
    device, n_threads, (precision, autocast_dtype, precision_choice) = _setup_hardware(cfg, console, quiet)
    rows = load_rows(cfg.data)  # the data first: a wrong data path is named before a model loads
    model, tokenizer, base_path = models.load(cfg.base)
    data = _setup_data(cfg, rows, tokenizer)
    set_seed(cfg.seed)  # *before* the adapter is built, so the LoRA init is a function of the seed
    model, lora_init_hash, frozen = _setup_model(cfg, model, device, autocast_dtype)
    trainable, steps_per_epoch, total_steps, optimizer, scheduler = _setup_optimizer(cfg, model, len(data.train_set))
    kind_execution = hardware.execution_defaults(device)
    loop = Loop(
        cfg,
        model,
        tokenizer,
        data.train_set,
        data.val_set,
        trainable,
        optimizer,
        scheduler,
        device,
        autocast_dtype,
        total_steps,
        record_path,
        ckpt_path,
        frozen,
        cfg.execution_plan(kind_execution),
        kind_execution,
    )
    record = new_record(cfg, model, total_steps, steps_per_epoch, sum(p.numel() for p in trainable), loop.execution)
    record.meta = {
        "base": cfg.base,
        "base_path": str(base_path),
        "base_weights_sha256": models.weights_hash(base_path),
        **_data_provenance(data),
        **_machine_provenance(device, precision, precision_choice, autocast_dtype, frozen, n_threads),
        "seed": cfg.seed,
        "data_seed": cfg.data.seed,
        "lora_init_sha256": lora_init_hash,
    }
    start_step, wall_before = 0, 0.0
    if resume:
        start_step, wall_before = checkpoints.restore_checkpoint(loop, record)
        # the checkpoint's passes, whatever this machine's kind would pick: the run goes on as it started
        assert record.facts is not None  # new_record made them
        record.facts.executed_passes = list(loop.execution) if loop.execution else None
        record.facts.executed_split = cfg.executed_split(loop.execution)
        console.print(f"resuming at step {start_step}/{total_steps}")
    make_dir(cfg.out_dir, "out_dir")  # only now: a run whose data or model fails to load leaves no folder
    records.write_record(cfg.out_dir, record)
    if tracker:
        tracker.params(record.model_dump(mode="json", exclude_unset=True)["config"])
    t0 = time.perf_counter()
    failure = train_steps(loop, record, start_step, wall_before, console, quiet, tracker, on_step)
    wall = wall_before + time.perf_counter() - t0
    if failure:
        return _failed(loop, record, failure, wall, console)
    return _finish(loop, record, wall, merge, console, tracker)


# ------------------------------------------------------------------------------------------------ the stages
def _setup_hardware(cfg: TrainConfig, console, quiet: bool) -> tuple:
    """(device, torch threads, (precision, autocast dtype, how it was chosen)); prints the run's head line."""
    from transformers.utils import logging as hf_logging  # heavy: transformers

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    device = hardware.default_device()
    n_threads = hardware.set_threads()
    precision = choose_precision(cfg, device)
    console.print(f"[bold]ada-slm train[/] → {cfg.out_dir}   ({cfg.batch_arithmetic()}, {precision[0]} on {device})")
    if not quiet:
        console.print(
            yaml.safe_dump(cfg.model_dump(), sort_keys=False, allow_unicode=True).rstrip(),
            highlight=False,
            markup=False,
        )
    return device, n_threads, precision


def _setup_data(cfg: TrainConfig, rows: tuple, tokenizer) -> Data:
    """The corpus (the builder's or the user's: load_rows) and its held-out split, tokenized with their loss
    masks."""
    train_rows, val_rows, source = rows
    train_set, dropped_train = tokenize(train_rows, tokenizer, cfg.max_length)
    val_set, _ = tokenize(val_rows, tokenizer, cfg.max_length)
    if not train_set:
        raise UserError(f"no training example fits in max_length={cfg.max_length}")
    return Data(train_rows, val_rows, source, train_set, val_set, dropped_train)


def _setup_model(cfg: TrainConfig, model, device, autocast_dtype) -> tuple:
    """(the model with its trainable adapter on `device`, the adapter's initial hash, the frozen Linears held in
    the autocast dtype: hold_frozen_linears_in)."""
    model = attach_adapter(cfg, model).to(device)
    lora_init_hash = lora_state_hash(model)
    return model, lora_init_hash, hold_frozen_linears_in(model, autocast_dtype)


def _setup_optimizer(cfg: TrainConfig, model, n_train: int) -> tuple:
    """(trainable parameters, steps per epoch, total steps, optimizer, scheduler): micro × accum = effective
    sequences per optimizer step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(n_train / cfg.batch.effective)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    return (trainable, steps_per_epoch, total_steps, *make_optimizer(cfg, trainable, total_steps))


def _data_provenance(data: Data) -> dict:
    return {
        "data_source": data.source,
        "train_examples": len(data.train_set),
        "val_examples": len(data.val_set),
        "train_dropped_too_long": data.dropped_train,
        "data_sha256": rows_hash(data.train_rows),
        "val_sha256": rows_hash(data.val_rows) if data.val_rows else None,
        "packages": records.package_versions(),
        "git_commit": records.git_commit(),
    }


def _machine_provenance(
    device, precision: str, precision_choice: dict, autocast_dtype, frozen: dict, n_threads: int
) -> dict:
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "precision": precision,
        "precision_choice": precision_choice,
        "heldout_precision": "fp32",
        "base_dtype": str(autocast_dtype if frozen else torch.float32).removeprefix("torch."),
        "torch_threads": n_threads,
    }


def _failed(loop: Loop, record: records.RunRecord, failure: str, wall: float, console) -> TrainedRun:
    record.status = records.Status(state=records.FAILED, reason=failure)
    train = records.train_section(record)
    train.wall_s = wall
    train.peak_rss_mb = records.peak_rss_mb()
    records.write_record(loop.cfg.out_dir, record)
    console.print(f"[bold red]run failed:[/] {failure}")
    return TrainedRun(record)


def _finish(loop: Loop, record: records.RunRecord, wall: float, merge: bool, console, tracker) -> TrainedRun:
    """Export: the adapter (atomically), optionally a merged model; the record completes last."""
    restore_frozen_linears(loop.frozen)  # the merged model and the returned one are the fp32 base + LoRA
    try:
        export(loop, record, wall, merge)
    except UserError as e:  # the disk filled up, the folder vanished: the record says so, not "running"
        record.status = records.Status(state=records.FAILED, reason=str(e))
        records.write_record(loop.cfg.out_dir, record)
        raise
    loop.ckpt_path.unlink(missing_ok=True)
    train = records.train_section(record)
    assert train.adapter_dir is not None  # export set it
    if tracker:
        tracker.metrics(len(train.steps), {"train/peak_rss_mb": train.peak_rss_mb, "train/wall_s": wall})
        tracker.artifacts(Path(train.adapter_dir), "adapter")
    console.print(
        f"done: {len(train.steps)} steps in {wall:.1f}s, final loss {train.steps[-1].loss:.4f}"
        + (f", held-out {train.final_val_loss:.4f}" if train.val else "")
        + f", adapter → {train.adapter_dir}"
    )
    return TrainedRun(record, loop.model, loop.tokenizer)


def choose_precision(cfg: TrainConfig, device: torch.device) -> tuple[str, torch.dtype | None, dict]:
    """(name, autocast dtype or None, how it was chosen): the fixed rule of `hardware.resolve_precision`."""
    name, why = hardware.resolve_precision(cfg.precision, device)
    return name, hardware.autocast_dtype(name), why


def adapter_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("adapter_model.*"))


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
    for what, folder, kind in (
        ("export_dir", cfg.adapter_dir(), "adapter"),
        ("merged model folder", merged_dir(cfg), "merged model"),
    ):
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
    # peft annotates lora_alpha as int, but uses it only in the float scale alpha / r: a float alpha is meant
    peft_config = PeftLoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,  # type: ignore[arg-type]
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
        use_rslora=cfg.lora.use_rslora,
        use_dora=cfg.lora.use_dora,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise UserError(f"lora.targets {targets}: {str(e).splitlines()[0]}") from None


def make_optimizer(cfg: TrainConfig, trainable: list, total_steps: int):
    """AdamW on the LoRA weights, with warmup and the configured decay over `total_steps`."""
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        cfg.schedule if cfg.schedule != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    return optimizer, scheduler


def new_record(
    cfg: TrainConfig, model, total_steps: int, steps_per_epoch: int, n_trainable: int, execution: tuple[int, int] | None
) -> records.RunRecord:
    resolved_lora = model.peft_config["default"]
    facts = records.RunFacts(
        effective_batch=cfg.batch.effective,
        batch_arithmetic=cfg.batch_arithmetic(),
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        executed_split=cfg.executed_split(execution),
        executed_passes=list(execution) if execution else None,
        resolved_lora=records.ResolvedLora(
            r=resolved_lora.r,
            alpha=resolved_lora.lora_alpha,
            targets=sorted(resolved_lora.target_modules),
            use_rslora=resolved_lora.use_rslora,
            use_dora=resolved_lora.use_dora,
        ),
    )
    return records.RunRecord(
        config=cfg,
        facts=facts,
        status=records.Status(state=records.RUNNING, reason=None),
        train=records.TrainSection(
            loss_normalisation=LOSS_NORMALISATION[cfg.loss.normalisation],
            steps=[],
            val=[],
            trainable_params=n_trainable,
        ),
        eval=None,
    )


def overall_rate(steps: list[tuple[float | None, float | None]]) -> float:
    """Σ amount / Σ seconds over (amount, amount per second) of each step, e.g. all tokens / all step seconds
    (optimizer_step records both numbers of every step)."""
    total: float = 0
    seconds: float = 0
    for amount, rate in steps:
        if amount is None or rate is None:
            raise ValueError("a training step recorded without its token counts")
        total += amount
        seconds += amount / rate
    return total / seconds


def export(loop: Loop, record: records.RunRecord, wall: float, merge: bool) -> None:
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
    train = records.train_section(record)
    steps = train.steps
    train.wall_s = wall
    train.final_train_loss = steps[-1].loss
    train.mean_train_loss = sum(s.loss for s in steps) / len(steps)
    train.final_val_loss = train.val[-1].loss if train.val else None
    train.tokens_per_s = overall_rate([(s.tokens, s.tokens_per_s) for s in steps])
    train.target_tokens_per_s = overall_rate([(s.target_tokens, s.target_tokens_per_s) for s in steps])
    train.peak_rss_mb = records.peak_rss_mb()
    train.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if loop.device.type == "cuda" else None
    train.adapter_dir = str(adapter_dir)
    train.adapter_bytes = adapter_bytes(adapter_dir)
    train.final_adapter_sha256 = lora_state_hash(loop.model)
    if merge:
        merged = merged_dir(loop.cfg)
        exports.write_folder(
            merged, "merged model", owner, "merged model folder", save(loop.model.merge_and_unload()), sweep=True
        )
        train.merged_dir = str(merged)
    record.status = records.Status(state=records.COMPLETE, reason=None)
    runlock.check(loop.cfg.out_dir)
    records.write_record(loop.cfg.out_dir, record)
