"""Resumable checkpoints of a training run: LoRA weights, optimizer, schedule, RNG states and the steps so far.

A checkpoint is written atomically (temp file + rename) every `checkpoint_every` steps, and a resumed run checks
that it was made by the same config (the output locations and logging cadence may differ), so a SIGKILLed run
resumed with `--resume` ends with the adapter of an uninterrupted one (tested).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from ada_slm.errors import UserError
from ada_slm.run.config import TrainConfig
from ada_slm.run.records import Point, RunRecord, Step, train_section


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a folder removed under the run
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the checkpoint ({e.strerror or e})") from None


def _python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _as_python_rng_state(saved: list) -> tuple:
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def _numpy_rng_state() -> list:
    state = np.random.get_state(legacy=True)
    if not isinstance(state, tuple):  # the legacy tuple is a plain list of tensors and numbers: weights_only loads it
        raise TypeError("numpy's global generator is not the legacy MT19937 one")
    kind, keys, pos, has_gauss, cached = state
    return [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]


def _as_numpy_rng_state(saved: list) -> tuple:
    kind, keys, pos, has_gauss, cached = saved
    return kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached


CHECKPOINT_KEYS = {"step", "wall_s", "fingerprint", "lora", "optimizer", "scheduler", "steps", "val", "rng"}


def _config_fingerprint(cfg: TrainConfig) -> str:
    """What must not change between a checkpoint and its resume (the output locations may)."""
    d = cfg.model_dump(exclude={"out_dir", "export_dir", "val_every", "checkpoint_every", "log_every", "execution"})
    if cfg.loss.normalisation == "token":  # the loss before it was a setting: checkpoints of then still resume
        d.pop("loss")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def save_checkpoint(loop, record: RunRecord, step: int, wall: float) -> None:
    """`loop` is the run's steps.Loop (model, optimizer, scheduler, device, checkpoint path). The steps so far
    are stored as the plain dicts record.json holds (checkpoints of earlier versions hold the same)."""
    from peft import get_peft_model_state_dict  # heavy: loaded by a run that checkpoints, not on import

    _atomic_torch_save(
        {
            "step": step,
            "wall_s": wall,
            "fingerprint": _config_fingerprint(loop.cfg),
            "execution": list(loop.execution) if loop.execution is not None else [],  # []: as configured
            "lora": get_peft_model_state_dict(loop.model),
            "optimizer": loop.optimizer.state_dict(),
            "scheduler": loop.scheduler.state_dict(),
            "steps": [s.model_dump(exclude_unset=True) for s in train_section(record).steps],
            "val": [v.model_dump(exclude_unset=True) for v in train_section(record).val],
            "rng": {
                "torch": torch.get_rng_state(),
                "python": _python_rng_state(),
                "numpy": _numpy_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if loop.device.type == "cuda" else None,
            },
        },
        loop.ckpt_path,
    )


def restore_checkpoint(loop, record: RunRecord) -> tuple[int, float]:
    """Weights, optimizer, schedule, RNG and the steps so far from the checkpoint: (next step, wall s so far)."""
    from peft import set_peft_model_state_dict  # heavy: see save_checkpoint

    try:
        # weights_only: tensors and plain containers only — a checkpoint planted in a shared results folder
        # cannot run code on --resume (the RNG states are stored as plain lists for this)
        state = torch.load(loop.ckpt_path, weights_only=True)
    except Exception as e:  # torch.load fails in many types (pickle, zip, EOF, runtime): all mean "damaged"
        raise UserError(
            f"{loop.ckpt_path}: damaged checkpoint, or one holding more than tensors and plain data "
            f"({type(e).__name__}); delete it to start the run over"
        ) from None
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= set(state):
        raise UserError(f"{loop.ckpt_path}: not a checkpoint of ada-slm; delete it to start the run over")
    if state["fingerprint"] != _config_fingerprint(loop.cfg):
        raise UserError(f"{loop.ckpt_path}: made with a different config; resume needs the same config")
    if "execution" in state:  # resumed in the passes it started with, whatever this machine's kind would pick
        loop.execution = tuple(state["execution"]) or None
    set_peft_model_state_dict(loop.model, state["lora"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(_as_python_rng_state(state["rng"]["python"]))
    np.random.set_state(_as_numpy_rng_state(state["rng"]["numpy"]))
    if loop.device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    train = train_section(record)
    train.steps = [Step.model_validate(s) for s in state["steps"]]
    train.val = [Point.model_validate(v) for v in state["val"]]
    assert record.meta is not None  # train() sets the provenance before it resumes
    record.meta["resumed_from_step"] = state["step"]
    return state["step"], state["wall_s"]
