"""The pieces of a training run below the recipe (train.py): batches, the loss, one optimizer step, the loop of
steps with its held-out loss, progress, record writes and checkpoints.

The loss is, by default, the mean cross-entropy per *target token over the whole optimizer step*: every pass adds
its summed token losses divided by the step's total target-token count. So `1 × 16`, `4 × 4` and `16 × 1` splits
of the same 16 sequences produce the same loss and the same gradient. Config `loss.normalisation` chooses another
weighting, always written as a weight per sequence on its summed token loss (`sequence_weights`), so that how a
step is executed never changes it: `sequence` weighs every sequence the same (also split-invariant), and
`micro_batch` is the seed study's loss — each configured micro-batch's token mean, averaged over the
micro-batches — under which the split is a real factor (and the one place it is).

Targets are the tokens of every assistant turn plus its end-of-turn token (every token for plain text); the
prompt, user turns and chat-template scaffolding are masked (datasets_io.py). How a step's sequences are
executed is apart from the configured split (config `execution`): by default they are sorted by length and cut
into passes of at most a token budget, each padded only to its longest sequence.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ada_slm.run import checkpoints, records
from ada_slm.run.config import TrainConfig
from ada_slm.run.datasets_io import IGNORE, Example


# ------------------------------------------------------------------------------------------------ batches, loss
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


def summed_loss(model, batch: dict, autocast_dtype, row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of next-token cross-entropy over the target tokens of one micro-batch (not a mean); with `row_weights`,
    Σ over rows of (row weight × that row's summed token loss).

    Only the positions that predict a target token go through the LM head (`logits_to_keep`): the prompt is
    most of every sequence, and full-vocabulary logits for it would be computed only to be ignored."""
    device_type = batch["input_ids"].device.type
    targets = batch["labels"][:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)  # positions p whose logits predict token p+1
    with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep, use_cache=False
        ).logits  # no KV cache: nothing is generated
    if row_weights is None:
        return F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            targets[:, keep].reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        )
    per_token = F.cross_entropy(
        logits.float().transpose(1, 2), targets[:, keep], ignore_index=IGNORE, reduction="none"
    )  # (rows, kept positions); 0 where ignored
    return (per_token.sum(dim=1) * row_weights.to(per_token.device)).sum()


def sequence_weights(chosen: list[Example], micro: int, normalisation: str) -> dict[int, float] | None:
    """The weight of each sequence's summed target-token loss in the step's loss, keyed by id() of its Example
    (the step's sequences in data order, `micro` per configured micro-batch); None for `token` (one weight, 1 / the
    step's target tokens, applied to each pass's sum). A sequence or micro-batch without target tokens weighs 0
    and is not counted."""
    if normalisation == "token":
        return None
    counts = [target_tokens([e]) for e in chosen]
    if normalisation == "sequence":
        n = sum(1 for c in counts if c)
        return {id(e): (1.0 / (c * n) if c else 0.0) for e, c in zip(chosen, counts, strict=True)}
    groups = [range(m, min(m + micro, len(chosen))) for m in range(0, len(chosen), micro)]  # as configured
    tokens = [sum(counts[i] for i in g) for g in groups]
    n = sum(1 for t in tokens if t)
    return {id(chosen[i]): (1.0 / (t * n) if t else 0.0) for g, t in zip(groups, tokens, strict=True) for i in g}


def micro_batches(chosen: list[Example], micro: int) -> list[list[Example]]:
    """Cut one optimizer step's sequences into micro-batches of `micro`, longest first, so that sequences of
    similar length share a micro-batch and little padding is computed (config `execution.grouping: configured`)."""
    by_length = sorted(chosen, key=lambda e: len(e.input_ids), reverse=True)
    return [by_length[m : m + micro] for m in range(0, len(by_length), micro)]


def token_budget_passes(chosen: list[Example], token_budget: int, pass_overhead: int = 0) -> list[list[Example]]:
    """Cut one optimizer step's sequences, sorted longest first, into forward/backward passes of at most
    `token_budget` padded tokens (rows × the pass's longest row; a sequence longer than the budget is a pass of
    its own), choosing the cut that computes the fewest padded tokens plus `pass_overhead` token-equivalents per
    pass (what one more pass costs on this machine kind: hardware.EXECUTION). An exact dynamic programme over the
    sorted lengths: a step's handful of sequences costs microseconds. Free of side effects on what is learned: the
    step's loss and gradient are sums over its sequences, whatever the grouping."""
    by_length = sorted(chosen, key=lambda e: len(e.input_ids), reverse=True)
    widths = [len(e.input_ids) for e in by_length]
    n = len(by_length)
    best: list[int | None] = [0] + [None] * n  # best[j]: the cheapest cost of the first j sequences
    cut = [0] * (n + 1)  # cut[j]: where the last pass of that cheapest cost starts
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):  # the last pass is by_length[i:j], padded to widths[i]
            rows = j - i
            if rows > 1 and rows * widths[i] > token_budget:
                break  # an earlier start only adds rows and widens the pass
            best_i, best_j = best[i], best[j]
            assert best_i is not None  # every j' < j has a cost: a pass of one sequence always fits
            cost = best_i + rows * widths[i] + pass_overhead
            if best_j is None or cost < best_j:
                best[j], cut[j] = cost, i
    passes, j = [], n
    while j > 0:
        passes.append(by_length[cut[j] : j])
        j = cut[j]
    return passes[::-1]


def step_passes(chosen: list[Example], micro: int, execution: tuple[int, int] | None) -> list[list[Example]]:
    """How one step's sequences are executed: by (token budget, pass overhead), or as configured (`micro` per pass)
    when None."""
    return micro_batches(chosen, micro) if execution is None else token_budget_passes(chosen, *execution)


def accumulate_step(
    model, passes: list[list[Example]], pad_id: int, device, autocast_dtype, weights: dict[int, float] | None = None
) -> tuple[float, int]:
    """Forward/backward one optimizer step's sequences, pass by pass (step_passes), leaving in .grad the gradient
    of the step's loss: (summed target-token loss / the step's target-token count), or with `weights`
    (sequence_weights) Σ weight × each sequence's summed token loss. Returns (that loss, the target-token count).
    How the sequences are split into passes changes neither number."""
    n_target = sum(target_tokens(group) for group in passes)
    loss_sum = 0.0
    for group in passes:
        if weights is None:
            part = summed_loss(model, collate(group, pad_id, device), autocast_dtype) / n_target
        else:
            row_weights = torch.tensor([weights[id(e)] for e in group], dtype=torch.float32)
            part = summed_loss(model, collate(group, pad_id, device), autocast_dtype, row_weights)
        part.backward()
        loss_sum += part.item()
    return loss_sum, n_target


@torch.no_grad()
def heldout_loss(
    model, examples: list[Example], pad_id: int, device, autocast_dtype, execution: tuple[int, int] = (512, 0)
) -> float | None:
    """Mean cross-entropy per target token over the whole held-out set (same normalisation as training), computed
    in token_budget_passes(examples, *execution) (a sum over examples: the grouping only saves padding)."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for chunk in token_budget_passes(examples, *execution):
        total += summed_loss(model, collate(chunk, pad_id, device), autocast_dtype).item()
        count += target_tokens(chunk)
    model.train(was_training)
    return total / count


# ------------------------------------------------------------------------------------------------ weights
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
        if (
            isinstance(module, torch.nn.Linear)
            and weight is not None
            and not weight.requires_grad
            and weight.dtype != dtype
            and weight is not embedding
        ):
            originals[module] = weight
            module.weight = torch.nn.Parameter(weight.detach().to(dtype), requires_grad=False)
    return originals


def restore_frozen_linears(originals: dict) -> None:
    """Put back the weights `hold_frozen_linears_in` replaced (a merge or an fp32 evaluation needs them)."""
    for module, weight in originals.items():
        module.weight = weight


def lora_state_hash(model) -> str:
    """sha256 of every LoRA tensor (sorted by name): equal hashes mean identical adapters."""
    from peft import get_peft_model_state_dict  # heavy: peft imports transformers

    h = hashlib.sha256()
    for name, tensor in sorted(get_peft_model_state_dict(model).items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ the loop
@dataclass
class Loop:
    """Everything the optimizer steps need, built by the recipe's setup steps (train.py)."""

    cfg: TrainConfig
    model: Any  # a peft.PeftModel: its attributes (those of the wrapped transformers model too) are dynamic
    tokenizer: Any  # a transformers tokenizer
    train_set: list[Example]
    val_set: list[Example]
    trainable: list
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    autocast_dtype: torch.dtype | None
    total_steps: int
    record_path: Path
    ckpt_path: Path
    frozen: dict  # the fp32 weights of the frozen Linears held in bf16 (hold_frozen_linears_in), to restore
    execution: tuple[int, int] | None  # (padded tokens per pass, pass overhead) of config `execution`; None: as
    # configured, batch.micro sequences per pass
    heldout_execution: tuple[int, int]  # the same for held-out passes (the machine kind's, whatever the config)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(done: int, total: int, info: str, elapsed: float, steps_this_process: int) -> str:
    """One line of progress for output that is not a terminal, like HF Trainer's logging."""
    eta = elapsed / max(1, steps_this_process) * (total - done)
    return f"step {done}/{total} ({100 * done / total:.0f}%)  {info}  elapsed {_clock(elapsed)}  ETA {_clock(eta)}"


def optimizer_step(loop: Loop, step: int) -> records.Step | str:
    """Optimizer step `step` (0-based): its record entry, or why the run failed (a non-finite loss or gradient)."""
    cfg = loop.cfg
    t_step = time.perf_counter()
    chosen = [loop.train_set[i] for i in step_indices(len(loop.train_set), cfg.batch.effective, cfg.seed, step)]
    passes = step_passes(chosen, cfg.batch.micro, loop.execution)
    weights = sequence_weights(chosen, cfg.batch.micro, cfg.loss.normalisation)
    loss, n_target = accumulate_step(
        loop.model, passes, loop.tokenizer.pad_token_id, loop.device, loop.autocast_dtype, weights
    )
    if not math.isfinite(loss):
        return f"non-finite training loss ({loss}) at step {step + 1}"
    grad_norm = torch.nn.utils.clip_grad_norm_(loop.trainable, cfg.max_grad_norm).item()
    if not math.isfinite(grad_norm):
        return f"non-finite gradient norm at step {step + 1}"
    lr = loop.scheduler.get_last_lr()[0]
    loop.optimizer.step()
    loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    dt = time.perf_counter() - t_step
    n_tokens = sum(len(e.input_ids) for e in chosen)
    return records.Step(
        step=step + 1,
        loss=loss,
        grad_norm=grad_norm,
        lr=lr,
        sequences=len(chosen),
        passes=len(passes),
        target_tokens=n_target,
        tokens=n_tokens,
        tokens_per_s=n_tokens / dt,
        target_tokens_per_s=n_target / dt,
    )


def _held_out(loop: Loop, record: records.RunRecord, done: int, tracker) -> str | None:
    """The held-out loss (fp32) every val_every steps and at the end; why the run failed if it is not finite."""
    if done % loop.cfg.val_every and done != loop.total_steps:
        return None
    # in fp32 whatever the training precision (the frozen base's fp32 weights put back for it): held-out losses
    # of bf16 and fp32 runs then differ only by what training learned, not by how the loss was computed
    restore_frozen_linears(loop.frozen)
    try:
        val = heldout_loss(
            loop.model, loop.val_set, loop.tokenizer.pad_token_id, loop.device, None, loop.heldout_execution
        )
    finally:
        loop.frozen = hold_frozen_linears_in(loop.model, loop.autocast_dtype)
    if val is None:
        return None
    if not math.isfinite(val):
        return f"non-finite held-out loss at step {done}"
    records.train_section(record).val.append(records.Point(step=done, loss=val))
    if tracker:
        tracker.metrics(done, {"val/loss": val})
    return None


def _progress_bar(console, quiet: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # rich: only here

    return Progress(
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=False,
    )


def _after_step(
    loop: Loop, record: records.RunRecord, done: int, info: str, clock: tuple[float, float, int], console, on_step
) -> None:
    """What follows a step: the record and a progress line every log_every steps, `on_step`, a checkpoint.
    `clock`: (the loop's start, the training seconds before it, its first step)."""
    cfg, total = loop.cfg, loop.total_steps
    t0, wall_before, start_step = clock
    if done % cfg.log_every == 0 or done == total:
        # the steps so far, for `study status`, the live view and anyone reading the record
        records.write_record(loop.record_path.parent, record)
        if not console.is_terminal:  # a log file, nohup, CI: the bar draws nothing there
            console.print(
                progress_line(done, total, info, time.perf_counter() - t0, done - start_step),
                highlight=False,
                markup=False,
            )
    if on_step:  # it sees the model as a study evaluates it: the fp32 base + LoRA
        restore_frozen_linears(loop.frozen)
        on_step(done, loop.model, loop.tokenizer)
        loop.frozen = hold_frozen_linears_in(loop.model, loop.autocast_dtype)
        loop.model.train()
    if done % cfg.checkpoint_every == 0 and done < total:
        checkpoints.save_checkpoint(loop, record, done, wall_before + time.perf_counter() - t0)
        records.train_section(record).last_checkpoint_step = done
        records.write_record(loop.record_path.parent, record)


def train_steps(
    loop: Loop, record: records.RunRecord, start_step: int, wall_before: float, console, quiet: bool, tracker, on_step
) -> str | None:
    """The optimizer steps from `start_step`, with held-out loss, progress, the record kept current and
    checkpoints. Returns why the run failed (a non-finite loss or gradient), or None."""
    loop.model.train()
    train = records.train_section(record)
    clock = (time.perf_counter(), wall_before, start_step)
    progress = _progress_bar(console, quiet)
    try:
        with progress:
            task = progress.add_task("train", total=loop.total_steps, completed=start_step, info="")
            for step in range(start_step, loop.total_steps):
                entry = optimizer_step(loop, step)
                if isinstance(entry, str):
                    return entry
                done = entry.step
                train.steps.append(entry)
                if tracker:
                    tracker.metrics(
                        done,
                        {
                            "train/loss": entry.loss,
                            "train/grad_norm": entry.grad_norm,
                            "train/lr": entry.lr,
                            "train/tokens_per_s": entry.tokens_per_s,
                            "train/target_tokens_per_s": entry.target_tokens_per_s,
                        },
                    )
                failure = _held_out(loop, record, done, tracker)
                if failure:
                    return failure
                info = f"loss {entry.loss:.4f}  {entry.tokens_per_s:,.0f} tok/s"
                if train.val:
                    info += f"  val {train.val[-1].loss:.4f}"
                progress.update(task, completed=done, info=info)
                _after_step(loop, record, done, info, clock, console, on_step)
    except KeyboardInterrupt:
        record.status = records.Status(
            state=records.INTERRUPTED, reason="interrupted by the user; --resume continues from the last checkpoint"
        )
        records.write_record(loop.record_path.parent, record)
        raise
    return None
