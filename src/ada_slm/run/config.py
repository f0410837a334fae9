"""Run configuration: one pydantic model whose fields document themselves. Unknown keys are errors.

A run config is YAML; any field can be overridden on the command line as `key.sub=value`
(`lora.r=32 batch.micro=1 batch.accum=16`). The resolved config is what the run record stores.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, WithJsonSchema, create_model, model_validator

from ada_slm.agl import MAX_CORPUS_SIZE
from ada_slm.errors import UserError
from ada_slm.files import load_yaml  # noqa: F401  (the one loader of user YAML, re-exported)
from ada_slm.schema import Strict

SEED_LIMIT = 2**32  # numpy seeds (transformers.set_seed) are 0 ≤ seed < 2**32


# Fields of an example that `data.columns` can read from a differently named column.
DataField = Literal[
    "id",
    "category",
    "lang",
    "messages",
    "conversations",
    "prompt",
    "completion",
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "text",
]


class DataConfig(Strict):
    """Where training examples come from: your corpus (any format of datasets_io.py), or the AGL builder."""

    path: str | None = Field(
        None,
        description="Training data: a .jsonl/.json/.parquet/.csv/.arrow file, a "
        "`save_to_disk` or data-file folder, or a Hub dataset id already in the local HF "
        "cache. If unset, the AGL corpus is built from size/mix/seed below.",
    )
    val_path: str | None = Field(
        None,
        description="Held-out data (same kinds as `path`) for the validation "
        "loss; default: <name>.val.<ext> next to `path` if it exists.",
    )
    format: Literal["auto", "messages", "sharegpt", "prompt_completion", "alpaca", "text"] = Field(
        "auto",
        description="Example format of `path`: auto detects it per file from the fields (messages, "
        "conversations, prompt+completion, instruction+output); `text` (loss on every token) only when set here.",
    )
    columns: dict[DataField, str] = Field(
        default_factory=dict,
        description="Read a field from a differently named column: {prompt: question, completion: answer}.",
    )
    split: str = Field("train", description="Split of `path` to train on (a folder or Hub dataset has several).")
    val_split: str | None = Field(None, description="Split of `path` for the held-out loss, e.g. test.")
    size: int = Field(2000, gt=0, le=MAX_CORPUS_SIZE, description="Builder: total examples (train + held-out).")
    mix: str | dict[str, float] = Field(
        "pure", description="Builder: 'pure', 'polyglot', a YAML file or a {category: weight} mapping."
    )
    seed: int = Field(
        0,
        description="Builder: corpus seed (independent of the training seed); with `path`: "
        "which examples val_fraction holds out.",
    )
    val_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Held-out share. Builder: split by template. "
        "With `path` and no val_path, val_split or <name>.val.<ext>: this share of its "
        "examples, drawn with `seed`.",
    )
    val_size: int | None = Field(
        None,
        gt=0,
        description="Builder: a fixed held-out set of this many "
        "examples, the same items at every `size` (same seed, mix and val_fraction), "
        "so arms with different corpus sizes report held-out loss on the same items; "
        "`size - val_size` examples are trained on. Default: size × val_fraction, "
        "drawn along with the training side.",
    )

    @model_validator(mode="after")
    def _check(self):
        if self.path is None:
            chosen = {
                "format": self.format != "auto",
                "columns": bool(self.columns),
                "split": self.split != "train",
                "val_split": self.val_split is not None,
            }
            for name in (name for name, is_set in chosen.items() if is_set):
                raise ValueError(f"data.{name} needs data.path (the builder's corpus has no such choice)")
        if self.val_size is not None:
            if self.path is not None:
                raise ValueError(
                    "data.val_size is the builder's fixed held-out set; with data.path use "
                    "data.val_path, data.val_split or data.val_fraction"
                )
            if self.val_size >= self.size:
                raise ValueError(f"data.val_size ({self.val_size}) must be smaller than data.size ({self.size})")
            if self.val_fraction <= 0:
                raise ValueError(
                    "data.val_size needs data.val_fraction > 0 (the share of prompt templates only "
                    "the held-out side uses)"
                )
        if self.val_path is not None and self.val_split is not None:
            raise ValueError("give data.val_path or data.val_split, not both")
        if self.val_split is not None and self.val_split == self.split:
            raise ValueError(f"data.val_split {self.val_split!r} is the training split")
        return self


class LoraConfig(Strict):
    """LoRA adapter shape (PEFT)."""

    r: int = Field(16, gt=0, description="Rank of the update matrices.")
    alpha: float = Field(
        32, gt=0, description="Scaling numerator: the update is scaled by alpha/r (alpha/sqrt(r) with use_rslora)."
    )
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    targets: Literal["default", "all-linear"] | list[str] = Field(
        "default",
        description="'default' (LFM2: q,k,v,out_proj,in_proj,w1,w2,w3; Llama: attention + MLP), "
        "'all-linear', or a list of module names.",
    )
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r).")
    use_dora: bool = Field(
        False,
        description="DoRA (PEFT's use_dora): the update is split into a per-output "
        "magnitude vector (trained) and a LoRA direction; more parameters and slower steps.",
    )
    init_adapter: str | None = Field(
        None,
        description="Continue training this PEFT adapter directory "
        "(its r/alpha/targets/use_rslora/use_dora win over the fields above).",
    )


class BatchConfig(Strict):
    """Effective batch = micro × accum sequences per optimizer step (one device)."""

    micro: int = Field(4, gt=0, description="Sequences per forward/backward pass.")
    accum: int = Field(4, gt=0, description="Micro-batches accumulated per optimizer step.")

    @property
    def effective(self) -> int:
        return self.micro * self.accum


class LossConfig(Strict):
    """How an optimizer step's token losses are weighted into the one number that is minimised.

    With `token` (the default) and `sequence` the objective is a function of the step's sequences alone, so every
    micro × accum split of one effective batch trains the same objective — the split is not a factor and a study
    says so from the configs (analysis.design.same_objective). `micro_batch` is the loss of the seed study (HF
    Trainer without `num_items_in_batch`): each micro-batch's mean over its own target tokens, averaged over the
    micro-batches of the step — at micro 1 every sequence weighs the same, at micro = the effective batch every
    token does, so there the split is a real factor."""

    normalisation: Literal["token", "sequence", "micro_batch"] = Field(
        "token",
        description="token: mean over every target token of the optimizer step. sequence: each "
        "sequence's mean target-token loss, averaged over the step's sequences (every sequence weighs the same). "
        "micro_batch: each configured micro-batch's mean target-token loss (its batch.micro sequences in data "
        "order), averaged over the step's micro-batches (the seed study's loss; depends on micro × accum). "
        "Held-out loss is per target token whatever this says, so arms compare on one measure.",
    )

    def split_changes_objective(self) -> bool:
        """Whether two splits of one effective batch train different objectives under this normalisation."""
        return self.normalisation == "micro_batch"


class ExecutionConfig(Strict):
    """How an optimizer step's sequences pass through the model — chosen for speed, never what is learned.

    What a run learns is `batch` (micro × accum sequences per optimizer step) with the loss normalised per target
    token over the whole step: the step's loss and gradient are sums over its sequences, so the way they are
    grouped into forward/backward passes does not change the objective (LoRA dropout masks are drawn per element,
    so their distribution does not depend on the grouping either). `batch.micro` is what the config means and
    what the report names; this section is how the step is computed."""

    grouping: Literal["by_length", "configured"] = Field(
        "by_length",
        description="by_length: the step's sequences sorted by length and cut into passes of at most "
        "`token_budget` padded tokens (fewest passes, least padding); configured: passes of batch.micro sequences "
        "(longest first), as the config is written.",
    )
    token_budget: int | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Padded tokens (rows × the longest "
        "row) per forward/backward pass with grouping by_length; a sequence longer "
        "than this is a pass of its own. Default: the machine kind's measured value "
        "(ada_slm.run.hardware.EXECUTION), never timed at run time.",
    )
    pass_overhead: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="What one more pass costs, in "
        "padded tokens: the cut into passes minimises padded tokens + this × "
        "passes. Default: the machine kind's measured value.",
    )


class TrainConfig(Strict):
    """One LoRA fine-tuning run."""

    base: str = Field(
        "smollm2-135m",
        description="Base model: smollm2-135m, tiny-lfm2, a local dir, a .gguf file or a Hub id in the local cache.",
    )
    data: DataConfig = Field(
        default_factory=DataConfig,
        description="Training and held-out data: your corpus or the AGL builder's: see DataConfig.",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, description="The adapter's shape: see LoraConfig.")
    batch: BatchConfig = Field(
        default_factory=BatchConfig, description="Sequences per optimizer step, micro × accum: see BatchConfig."
    )
    loss: LossConfig = Field(
        default_factory=LossConfig, description="How a step's token losses are weighted: see LossConfig."
    )
    execution: ExecutionConfig = Field(
        default_factory=ExecutionConfig,
        description="How a step's sequences are computed (speed only): see ExecutionConfig.",
    )
    epochs: float = Field(3.0, gt=0, description="Passes over the training set (ignored if max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; overrides epochs.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate (AdamW).")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="LR decay after warmup.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Share of steps with linear warmup.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay on LoRA weights.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    max_length: int = Field(
        256,
        gt=8,
        description="Longer examples are truncated (the answer's end kept "
        "only if it fits); batches pad only to their longest sequence.",
    )
    seed: int = Field(
        0, ge=0, lt=SEED_LIMIT, description="Training seed: LoRA init, data order, dropout (0 ≤ seed < 2**32)."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: a fixed rule of the hardware "
        "(ada_slm.run.hardware): bf16 on CUDA with bf16 and on CPUs "
        "with AMX, else fp32. Never timed, so every run of a "
        "config on one machine kind gets the same precision.",
    )
    val_every: int = Field(50, gt=0, description="Held-out loss every N optimizer steps (and at the end).")
    checkpoint_every: int = Field(50, gt=0, description="Resumable checkpoint every N optimizer steps.")
    log_every: int = Field(
        10,
        gt=0,
        description="Without a terminal (a log file, nohup, CI): one progress line "
        "(step, loss, tokens/s, ETA) every N optimizer steps; record.json is rewritten too.",
    )
    out_dir: str = Field("runs/run", description="Run directory: record.json and checkpoints.")
    export_dir: str | None = Field(None, description="Where the PEFT adapter goes; default <out_dir>/adapter.")

    @model_validator(mode="after")
    def _check(self):
        if self.data.path is None and self.data.val_path is not None:
            raise ValueError("data.val_path needs data.path")
        return self

    def adapter_dir(self) -> Path:
        return Path(self.export_dir) if self.export_dir else Path(self.out_dir) / "adapter"

    def batch_arithmetic(self) -> str:
        b = self.batch
        return f"micro {b.micro} × accum {b.accum} = {b.effective} sequences/step"

    def execution_plan(self, kind_default: tuple[int, int]) -> tuple[int, int] | None:
        """(padded tokens per pass, pass overhead) the steps are cut with, from the config or the machine kind's
        `kind_default`; None where the configured micro-batches are executed."""
        if self.execution.grouping == "configured":
            return None
        budget, overhead = kind_default
        return (
            self.execution.token_budget or budget,
            overhead if self.execution.pass_overhead is None else self.execution.pass_overhead,
        )

    def executed_split(self, plan: tuple[int, int] | None) -> str:
        """The configured split and how it is executed with `plan` (execution_plan()), as the record states it."""
        b = self.batch
        how = (
            f"executed as configured (micro-batches of {b.micro})"
            if plan is None
            else f"executed grouped by length, passes of ≤ {plan[0]} padded tokens (pass cost {plan[1]})"
        )
        return f"configured {b.micro}×{b.accum}={b.effective}, {how}"

    def steps_identity(self) -> str | None:
        """What fixes the optimizer steps this config computes, as one string: every field but where the run writes
        and how often it logs, with the batch as its effective size — grouped by length (config `execution`), the
        passes do not depend on micro × accum, nor does the loss unless loss.normalisation is micro_batch (then the
        split is kept). Two configs with the same identity (the same seed included) train the same adapter, number
        for number, on one machine kind. None where steps are executed as configured."""
        if self.execution.grouping != "by_length":
            return None
        fields = self.model_dump(mode="json", exclude={"out_dir", "export_dir", "log_every"})
        if not self.loss.split_changes_objective():  # under micro_batch the split weights the tokens: it stays
            fields["batch"] = {"effective": self.batch.effective}
        return json.dumps(fields, sort_keys=True)

    # ---- derived values: computed here once, never by hand from dicts
    @property
    def effective_batch(self) -> int:
        return self.batch.effective

    @property
    def train_examples(self) -> int:
        """Training examples of a builder corpus: size - val_size, or ≈ size × (1 - val_fraction) (the builder
        allocates the held-out share per category)."""
        if self.data.val_size:
            return self.data.size - self.data.val_size
        return int(self.data.size * (1 - self.data.val_fraction))

    def optimizer_steps(self) -> int:
        """Optimizer steps as train.py counts them: max_steps, or ⌈epochs × ⌈train examples / effective batch⌉⌉."""
        if self.max_steps:
            return self.max_steps
        return max(1, math.ceil(self.epochs * math.ceil(self.train_examples / self.effective_batch)))

    def distinct_examples_seen(self) -> int | None:
        """How many different training examples a run of the builder's corpus sees: all of them, unless max_steps
        stops it first (steps × effective batch sequences, each a different example within an epoch). None for a
        corpus from data.path, whose size the config does not say."""
        if self.data.path:
            return None
        return min(self.train_examples, self.optimizer_steps() * self.effective_batch)

    def label(self) -> str:
        """The run's shape in one line, as the report names arms: `r16/α32, 4×4=16, 2000 ex, 3 epochs`."""
        steps = f"{self.max_steps} steps" if self.max_steps else f"{self.epochs:g} epochs"
        b = self.batch
        return f"r{self.lora.r}/α{self.lora.alpha:g}, {b.micro}×{b.accum}={b.effective}, {self.data.size} ex, {steps}"


# A mapping that is one value: a data mix is replaced whole by a later layer, never blended with an earlier one.
WHOLE_VALUES = {("data", "mix")}


def expand_dotted(tree: dict, at: tuple = ()) -> dict:
    """`{"lora.r": 32, "data": {"mix": {...}}}` -> `{"lora": {"r": 32}, "data": {"mix": {...}}}`: every dotted key
    of a config mapping (at any level) as nested sections; a later key wins over an earlier one for the same field."""
    out: dict = {}
    for key, value in tree.items():
        path = (*at, *key.split(".")) if isinstance(key, str) else (*at, key)
        if isinstance(value, dict) and path not in WHOLE_VALUES:
            value = expand_dotted(value, path)
        for name in reversed(path[len(at) :]):
            value = {name: value}
        out = deep_merge(out, value, at=at)
    return out


def deep_merge(base: dict, *layers: dict, at: tuple = ()) -> dict:
    """A new mapping: `base` with each layer laid over it in turn. Sections merge field by field; any other value
    (a list, a data mix, a scalar) replaces what was there. Nothing given is changed."""
    out = dict(base)
    for layer in layers:
        for key, value in layer.items():
            old = out.get(key)
            if isinstance(value, dict) and isinstance(old, dict) and (*at, key) not in WHOLE_VALUES:
                value = deep_merge(old, value, at=(*at, key))
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> list[tuple[str, object]]:
    out = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise UserError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        except (RecursionError, ValueError):  # nested too deeply; an integer too long to convert
            raise UserError(f"override {item!r}: not a value this tool can read") from None
        out.append((key.strip(), value))
    return out


def format_validation_error(e: ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        # a key holding a newline or control character is shown escaped: the error stays one line
        loc = ".".join(str(x) if str(x).isprintable() else repr(str(x)) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        else:  # in the user's words: pydantic's "Value error, " prefix says where the check lives, not what failed
            parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
    return f"{source}: " + "; ".join(parts)


def build_config(raw: dict, overrides: Sequence[str] = (), source: str = "config") -> TrainConfig:
    """A config file's mapping with the command line's `key.sub=value` overrides laid over it, validated."""
    layers = [expand_dotted({key: value}) for key, value in parse_overrides(list(overrides))]
    return validate_config(deep_merge(expand_dotted(raw), *layers), source)


def validate_config(raw: dict, source: str) -> TrainConfig:
    """TrainConfig of a merged mapping; a mistake is one UserError line naming `source` and the field."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(e, source)) from None


@functools.cache
def patch_model(model: type[BaseModel]) -> type[Strict]:
    """`model` with every field optional (None: not set) and the same types and bounds, nested sections too, unknown
    keys rejected: what a layer that changes part of a config (a study's defaults, an arm, a scale preset, a rule)
    may hold. Derived from the model, so a field added to TrainConfig is one a patch can set."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        kind: Any = info.annotation  # a type form built at run time
        if isinstance(kind, type) and issubclass(kind, Strict):
            kind = patch_model(kind)
        elif info.metadata:  # the field's bounds (gt=0, le=…) apply to a value that is set
            kind = Annotated[(kind, *info.metadata)]
        fields[name] = (kind | None, Field(None, description=info.description))
    return create_model(
        f"{model.__name__}Patch",
        __base__=Strict,
        __doc__=f"Part of a {model.__name__}: every field optional.",
        **fields,
    )


TrainConfigPatch = patch_model(TrainConfig)


def patch_layer(model: type[BaseModel], raw: Any) -> dict:
    """A patch mapping (nested or `key.sub` keys) checked against `model`'s patch and returned as the nested mapping
    of the fields it sets, values in their validated form; a mistake is a ValueError naming every bad key."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping of config keys, got {type(raw).__name__}")
    try:
        patch = patch_model(model).model_validate(expand_dotted(raw))
    except ValidationError as e:  # the patch classes are this module's, not words the user knows
        raise ValueError(re.sub(r" or instance of \w+Patch", "", format_validation_error(e, "")[2:])) from None
    return patch.model_dump(exclude_unset=True)


# A study's `defaults`, an arm, a scale preset's overrides and a decision rule's `config`: part of a TrainConfig,
# checked field by field when the study file is read, held as the nested mapping that deep_merge lays over a config.
ConfigPatch = Annotated[
    dict[str, Any],
    BeforeValidator(lambda raw: patch_layer(TrainConfig, raw)),
    WithJsonSchema(TrainConfigPatch.model_json_schema()),
]


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    raw = load_yaml(path) if path else {}
    return build_config(raw, overrides, source=str(path) if path else "config")
