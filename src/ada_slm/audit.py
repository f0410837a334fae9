"""Audit of a published table of single-run numbers: claim by claim, what the data can and cannot support.

Input: a YAML file like studies/phase14d-reported.yaml — per arm the LoRA shape, the batch as published and as
it actually ran, the published loss and which kind of loss it is, the metrics, optional re-runs; and the claims.
Output: findings, each a short line, for the table as a whole and for every claim.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ada_slm.config import format_validation_error, load_yaml
from ada_slm.errors import UserError

NEAR_ZERO = 0.01  # below this a density metric is one marker in ~100 words: a ratio over it is noise


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Batch(Strict):
    micro: int = Field(..., gt=0)
    accum: int = Field(..., gt=0)
    steps: Optional[int] = Field(None, gt=0)


class Loss(Strict):
    value: float
    kind: Literal["last_step", "run_average", "held_out"]


class ReportedArm(Strict):
    lora: dict[str, float]
    published: Batch
    ran: Optional[Batch] = None
    loss: Optional[Loss] = None
    other_losses: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float]
    inconsistencies: list[str] = Field(default_factory=list)
    reruns: dict[str, list[float]] = Field(default_factory=dict)


class Claim(Strict):
    text: str
    type: Literal["ratio", "factor", "loss"]
    metric: Optional[str] = None
    arm: Optional[str] = None
    against: Optional[str] = None
    factor: Optional[str] = None


class Reported(Strict):
    name: str
    source: str = ""
    train_examples: Optional[int] = None
    arms: dict[str, ReportedArm]
    claims: list[Claim] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def load_reported(path) -> Reported:
    try:
        rep = Reported.model_validate(load_yaml(path))
    except ValidationError as e:
        raise UserError(format_validation_error(e, str(path))) from None
    for i, c in enumerate(rep.claims):
        for arm in (c.arm, c.against):
            if arm is not None and arm not in rep.arms:
                raise UserError(f"{path}: claims.{i}: unknown arm {arm!r}")
    return rep


def _ran(arm: ReportedArm) -> Batch:
    return arm.ran or arm.published


def _differences(a: ReportedArm, b: ReportedArm) -> list[str]:
    """Factors that differ between two arms as they actually ran."""
    out = []
    if a.lora.get("r") != b.lora.get("r"):
        out.append(f"rank {b.lora.get('r'):g}→{a.lora.get('r'):g}")
    ra, rb = _ran(a), _ran(b)
    ea, eb = ra.micro * ra.accum, rb.micro * rb.accum
    if ea != eb:
        out.append(f"effective batch {eb}→{ea}")
    if ra.micro != rb.micro:
        out.append(f"micro-batch {rb.micro}→{ra.micro}")
    if ra.steps and rb.steps and ra.steps != rb.steps:
        out.append(f"optimizer steps {rb.steps}→{ra.steps}")
    return out


def _noise(rep: Reported, metric: str) -> float | None:
    """The largest spread between re-runs of the same arm on this metric, if any were reported."""
    spreads = [max(v) - min(v) for arm in rep.arms.values() for m, v in arm.reruns.items() if m == metric and len(v) > 1]
    return max(spreads) if spreads else None


def audit(rep: Reported) -> list[tuple[str, list[str]]]:
    """[(heading, findings)] — the whole table first, then one entry per claim."""
    sections: list[tuple[str, list[str]]] = []
    general = [f"n = 1: every number is a single run without a seed, so no confidence interval or test is "
               f"possible; any difference could be run-to-run noise."]
    for name, arm in rep.arms.items():
        for m, values in arm.reruns.items():
            if len(values) > 1:
                general.append(f"Re-running {name} gave {m} = " + " and ".join(f"{v:.4f}" for v in values)
                               + f": the run-to-run spread ({max(values) - min(values):.4f}) is as large as the "
                               "effects claimed.")
        for text in arm.inconsistencies:
            general.append(f"{name}: {text}.")
        p, r = arm.published, _ran(arm)
        if (p.micro, p.accum) != (r.micro, r.accum):
            general.append(f"{name} is published as micro {p.micro} × accum {p.accum} = {p.micro * p.accum} but ran "
                           f"as micro {r.micro} × accum {r.accum} = {r.micro * r.accum}"
                           + (f" ({r.steps} optimizer steps)" if r.steps else "") + ".")
    general += list(rep.notes)
    sections.append(("The table as a whole", general))

    for claim in rep.claims:
        lines: list[str] = []
        if claim.type in ("ratio", "factor"):
            a, b = rep.arms[claim.arm], rep.arms[claim.against]
            va, vb = a.metrics.get(claim.metric), b.metrics.get(claim.metric)
            if va is None or vb is None:
                lines.append(f"{claim.metric} is not reported for both arms: nothing to check.")
                sections.append((claim.text, lines))
                continue
            delta = va - vb
            lines.append(f"Reported: {claim.metric} {claim.against} {vb:.4f} → {claim.arm} {va:.4f} "
                         f"(Δ {delta:+.4f}" + (f", {va / vb:.1f}×" if vb > 0 else "") + "), one run each.")
            noise = _noise(rep, claim.metric)
            near_zero = vb < NEAR_ZERO or (noise is not None and vb < noise)
            if near_zero:
                reasons = ([f"below {NEAR_ZERO}"] if vb < NEAR_ZERO else []) + (
                    [f"below the re-run spread {noise:.4f}"] if noise is not None and vb < noise else [])
                lines.append(f"Baseline ≈ 0: {claim.against}'s {vb:.4f} is {' and '.join(reasons)}; a ratio over "
                             "it is not meaningful: n/a (baseline ≈ 0).")
            if noise is not None and abs(delta) <= noise:
                lines.append(f"The difference ({abs(delta):.4f}) is within the re-run spread ({noise:.4f}).")
            diffs = _differences(a, b)
            if claim.type == "factor":
                lines.append(f"The claim attributes the difference to {claim.factor}; as run, the arms differ in "
                             + (", ".join(diffs) if diffs else "nothing recorded") + ".")
                ra, rb = _ran(a), _ran(b)
                if claim.factor and "micro-batch" in claim.factor and ra.micro == rb.micro:
                    lines.append(f"Both arms ran with micro-batch {ra.micro}: the micro-batch was never varied, so "
                                 "this claim was not tested.")
            if len(diffs) > 1:
                lines.append("Confounded: " + ", ".join(diffs) + " change together; the data cannot say which "
                             "one (if any) caused the difference.")
            lines.append("Verdict: not supported (n = 1" + (", confounded" if len(diffs) > 1 else "")
                         + (", baseline ≈ 0" if near_zero else "") + ").")
        else:  # loss claims
            kinds = {name: arm.loss.kind for name, arm in rep.arms.items() if arm.loss}
            lines.append("Published losses: " + ", ".join(
                f"{n} {rep.arms[n].loss.value:.3f} ({k.replace('_', ' ')})" for n, k in kinds.items()) + ".")
            if len(set(kinds.values())) > 1:
                lines.append("They are different quantities (last logged step vs whole-run average) and cannot be "
                             "compared.")
            last = {n: (arm.loss.value if arm.loss and arm.loss.kind == "last_step" else arm.other_losses.get("last_step"))
                    for n, arm in rep.arms.items()}
            if all(v is not None for v in last.values()):
                lines.append("Like for like (last logged step): " + ", ".join(f"{n} {v:.3f}" for n, v in last.items())
                             + ".")
            per_step = [(n, arm.loss.value, _ran(arm).accum) for n, arm in rep.arms.items() if arm.loss]
            if len({acc for _, _, acc in per_step}) > 1:
                lines.append("The logged training loss scales with gradient accumulation when it is summed over "
                             "micro-batches: " + ", ".join(f"{n} {v:.3f} / {acc} = {v / acc:.3f}" for n, v, acc in per_step)
                             + " — divided by the accumulation the arms are nearly equal.")
            lines.append("No held-out loss was measured (evaluation every 100 steps never ran for the 87-step arms), "
                         "so training loss cannot tell overfitting from learning.")
            lines.append("Verdict: not supported (losses of different kinds and normalisations; no held-out loss).")
        sections.append((claim.text, lines))
    return sections
