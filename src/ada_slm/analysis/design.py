"""What differs between two arms of a study, named as study factors — the one vocabulary of the report, the
plan, the decision and the audit.

Everything here is derived from `TrainConfig` itself: `differences` walks the model's fields (not the keys of
a dumped dict), so every raw difference is keyed by a real field path (`lora.r`, `batch.micro`, `data.mix`) or
by a value the config derives (`batch.effective`, `optimizer_steps`); `factors_between` groups those into
factors ('rank', 'batch split', 'data size and steps', 'rsLoRA', ...). An arm without a config (None) is the
base model: no adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from ada_slm.run.config import TrainConfig

# Fields that name a run (its seed and where it writes), not what it trains: never a difference between arms.
IGNORED = frozenset({"seed", "out_dir", "export_dir"})
# Values the config derives: `BatchConfig.effective` (micro × accum) and `TrainConfig.optimizer_steps()`.
EFFECTIVE_BATCH = "batch.effective"
OPTIMIZER_STEPS = "optimizer_steps"
ADAPTER = "adapter"  # the one difference between the base model and a trained arm


def field_paths(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[str]:
    """Dotted paths of a config model's leaf fields, in declaration order. A sub-model is walked; anything else
    (a list like lora.targets, a mapping like data.mix or data.columns) is one value."""
    paths = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            paths += field_paths(kind, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def value_at(cfg: TrainConfig, path: str):
    """The config's value at a field path or derived path (`optimizer_steps` is called)."""
    node = cfg
    for part in path.split("."):
        node = getattr(node, part)
    return node() if callable(node) else node


COMPARED = sorted(set(field_paths()) - IGNORED)  # sorted: the order factors are listed in (report text)


def differences(a: TrainConfig | None, b: TrainConfig | None) -> dict[str, tuple]:
    """Field path -> (value in a, value in b) for every setting in which two resolved configs differ (None =
    the base model: then the one difference is the adapter). A batch split is named by both numbers; a
    different effective batch or number of optimizer steps is added as the derived difference it is."""
    if a is None or b is None:
        return {ADAPTER: ("none" if a is None else "LoRA", "none" if b is None else "LoRA")}
    out = {p: (value_at(a, p), value_at(b, p)) for p in COMPARED if value_at(a, p) != value_at(b, p)}
    if "batch.micro" in out or "batch.accum" in out:
        out["batch.micro"], out["batch.accum"] = (a.batch.micro, b.batch.micro), (a.batch.accum, b.batch.accum)
    for path in (EFFECTIVE_BATCH, OPTIMIZER_STEPS):
        if value_at(a, path) != value_at(b, path):
            out[path] = (value_at(a, path), value_at(b, path))
    return out


def same_objective(a: TrainConfig | None, b: TrainConfig | None) -> bool:
    """Whether two trained arms train the same objective, seen from their configs alone: they differ at most in the
    micro × accum split (same effective batch) and in how steps are executed, and their loss normalisation
    (config `loss`, the same in both) does not depend on the split — token or sequence, not micro_batch. Their
    difference is then no effect of anything: a question between them is an identity, answered with no runs."""
    if a is None or b is None or a.loss.split_changes_objective() or b.loss.split_changes_objective():
        return False
    return all(p in ("batch.micro", "batch.accum") or p.startswith("execution.") for p in differences(a, b))


def same_computation(a: TrainConfig | None, b: TrainConfig | None) -> bool:
    """Whether two trained arms compute the same optimizer steps: the same objective (same_objective), differing
    at most in the micro × accum split, and both execute their steps grouped by length (config `execution`),
    whose passes do not depend on the split — so a seed of one repeats the same seed of the other, number for
    number (study/twins.py then trains it once)."""
    if (
        a is None
        or b is None
        or not same_objective(a, b)
        or "by_length" != a.execution.grouping
        or "by_length" != b.execution.grouping
    ):
        return False
    return set(differences(a, b)) <= {"batch.micro", "batch.accum"}


def effective_changes(a: TrainConfig | None, b: TrainConfig | None) -> bool:
    """Whether two trained arms step with different effective batches (a different objective and step count)."""
    return a is not None and b is not None and a.effective_batch != b.effective_batch


@dataclass
class FactorDiff:
    factors: dict[str, tuple] = field(default_factory=dict)  # factor name -> (value in a, value in b)
    notes: list[str] = field(default_factory=list)
    same_steps: bool = False  # the two arms compute the same optimizer steps (same_computation)
    split_changes_objective: bool = False  # a 'batch split' is a real factor (loss.normalisation micro_batch)

    @property
    def confounded(self) -> bool:
        """More than one factor changes. A batch split under a split-invariant loss is the same objective and so
        no factor of its own; under the seed's micro_batch loss it is one."""
        return len([f for f in self.factors if f != "batch split" or self.split_changes_objective]) > 1

    @property
    def split_only(self) -> bool:
        return list(self.factors) == ["batch split"]


# Factor names of single fields, keyed by their TrainConfig field path (a test checks every key is one).
FACTOR_NAMES = {
    "data.size": "data size",
    "lora.dropout": "LoRA dropout",
    "lora.targets": "LoRA targets",
    "lora.use_rslora": "rsLoRA",
    "lora.use_dora": "DoRA",
    "data.mix": "data mix",
    "lr": "learning rate",
    "base": "base model",
    "loss.normalisation": "loss normalisation",
}


def factors_of(a: TrainConfig | None, b: TrainConfig | None) -> FactorDiff:
    """The factors between two arms' configs (factors_between of their differences), knowing from the configs
    whether a batch split changes the objective."""
    split_matters = any(c is not None and c.loss.split_changes_objective() for c in (a, b))
    return factors_between(differences(a, b), split_changes_objective=split_matters)


def factors_between(diffs: dict[str, tuple], split_changes_objective: bool = False) -> FactorDiff:
    """Group raw differences (`differences`, or the audit's from a published table) into study factors.

    r and α that change together at a fixed α/r are one factor, 'rank'. micro × accum that keep the effective
    batch are one factor, 'batch split' — with a split-invariant loss (token, sequence) it is the same objective
    (in expectation, when LoRA dropout is on), so it is noted but does not confound; with
    `split_changes_objective` (the seed's micro_batch loss) it is a factor like any other. A change of
    effective batch is its own factor. A corpus size that also changes the number of optimizer steps is 'data size and
    steps'; other step
    changes (epochs, max_steps) are 'training length'. Any other field is named by FACTOR_NAMES, else by its
    path."""
    diffs = dict(diffs)
    out = FactorDiff(split_changes_objective=split_changes_objective)
    r, alpha = diffs.pop("lora.r", None), diffs.pop("lora.alpha", None)
    if r is not None and alpha is not None and r[0] and r[1] and alpha[0] / r[0] == alpha[1] / r[1]:
        out.factors["rank"] = r
    else:
        if r is not None:
            out.factors["rank"] = r
        if alpha is not None:
            out.factors["lora.alpha"] = alpha
    micro, accum = diffs.pop("batch.micro", None), diffs.pop("batch.accum", None)
    effective = diffs.pop(EFFECTIVE_BATCH, None)
    if micro or accum:
        m, ac = micro or ("=", "="), accum or ("=", "=")  # a missing entry means the two arms agree on it
        split = (f"{m[0]}×{ac[0]}", f"{m[1]}×{ac[1]}")
        if effective:  # a different effective batch is a real factor (different objective and step count)
            st = [f", {s} steps" for s in diffs[OPTIMIZER_STEPS]] if OPTIMIZER_STEPS in diffs else ["", ""]
            out.factors["effective batch"] = (f"{split[0]}={effective[0]}{st[0]}", f"{split[1]}={effective[1]}{st[1]}")
        else:
            out.factors["batch split"] = split
    steps = diffs.pop(OPTIMIZER_STEPS, None)
    length = {k: diffs.pop(k) for k in ("epochs", "max_steps") if k in diffs}
    if effective and steps and steps[0] * effective[0] == steps[1] * effective[1]:
        length = {}  # fewer steps of a larger batch over the same sequences: the effective batch factor says it
    size = diffs.pop("data.size", None)
    if size is not None:
        if steps is not None and not effective:
            out.factors["data size and steps"] = (f"{size[0]} ex, {steps[0]} steps", f"{size[1]} ex, {steps[1]} steps")
        else:
            out.factors["data size"] = size
    elif length or (steps is not None and not effective):
        out.factors["training length"] = steps or next(iter(length.values()))
    for k, v in diffs.items():
        if k.startswith("execution."):  # how steps were computed (config `execution`), not what was learned
            out.notes.append(f"executed differently ({k}: {v[1]} → {v[0]}); the objective is the same")
            continue
        out.factors[FACTOR_NAMES.get(k, k)] = v
    return out


def factor_labels(fd: FactorDiff) -> list[str]:
    """Each factor as 'name b→a' (numbers shortest, as the audit prints them)."""
    return [
        f"{name} {v[1]:g}→{v[0]:g}" if isinstance(v[0], (int, float)) else f"{name} {v[1]} → {v[0]}"
        for name, v in fd.factors.items()
    ]
