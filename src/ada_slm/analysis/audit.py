"""Audit of a published table of single-run numbers: claim by claim, what the data can and cannot support.

Input: a YAML file like studies/phase14d-reported.yaml — per arm the LoRA shape, the batch as published and as
it actually ran, the published loss and which kind of loss it is, the metrics, optional re-runs; and the claims.
Output: findings, each a short line, for the table as a whole and for every claim.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, ValidationError

from ada_slm.analysis import design
from ada_slm.errors import UserError
from ada_slm.run.config import format_validation_error, load_yaml
from ada_slm.schema import Strict
from ada_slm.stats import contrasts

NEAR_ZERO = 0.01  # below this a density metric is one marker in ~100 words: a ratio over it is noise


class Batch(Strict):
    micro: int = Field(..., gt=0)
    accum: int = Field(..., gt=0)
    steps: int | None = Field(None, gt=0)

    @property
    def effective(self) -> int:
        return self.micro * self.accum


class Loss(Strict):
    value: float
    kind: Literal["last_step", "run_average", "held_out"]


class ReportedArm(Strict):
    lora: dict[str, float]
    published: Batch
    ran: Batch | None = None
    loss: Loss | None = None
    other_losses: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float]
    inconsistencies: list[str] = Field(default_factory=list)
    reruns: dict[str, list[float]] = Field(default_factory=dict)


class Claim(Strict):
    text: str
    type: Literal["ratio", "factor", "loss"]
    metric: str | None = None
    arm: str | None = None
    against: str | None = None
    factor: str | None = None
    direction: Literal["higher", "lower"] = Field(
        "higher", description="The claim says `arm` scores higher (or lower) than `against` on `metric`."
    )


class ReportedCriterion(Strict):
    """A success criterion the study stated before its runs: `arm`'s `metric` above / below a value, or higher
    than another arm's (the reported metrics are all higher-is-better)."""

    text: str
    arm: str
    metric: str
    above: float | None = None
    below: float | None = None
    better_than: str | None = None


class Reported(Strict):
    name: str
    source: str = ""
    train_examples: int | None = None
    arms: dict[str, ReportedArm]
    claims: list[Claim] = Field(default_factory=list)
    criteria: list[ReportedCriterion] = Field(
        default_factory=list,
        description="Success criteria the study stated before its runs: judged met / not met / undecided.",
    )
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
        if c.type in ("ratio", "factor") and (c.arm is None or c.against is None):
            raise UserError(f"{path}: claims.{i}: a {c.type} claim names its `arm` and what it is `against`")
    for i, k in enumerate(rep.criteria):
        for arm in (k.arm, k.better_than):
            if arm is not None and arm not in rep.arms:
                raise UserError(f"{path}: criteria.{i}: unknown arm {arm!r}")
        if sum(x is not None for x in (k.above, k.below, k.better_than)) != 1:
            raise UserError(f"{path}: criteria.{i}: give exactly one of above, below, better_than")
    return rep


def _ran(arm: ReportedArm) -> Batch:
    return arm.ran or arm.published


def _factors(a: ReportedArm, b: ReportedArm) -> design.FactorDiff:
    """Factors that differ between two arms as they actually ran, in the vocabulary of the study report."""
    diffs: dict[str, tuple] = {}
    for key in ("r", "alpha"):
        if a.lora.get(key) != b.lora.get(key):
            diffs[f"lora.{key}"] = (a.lora.get(key), b.lora.get(key))
    ra, rb = _ran(a), _ran(b)
    if (ra.micro, ra.accum) != (rb.micro, rb.accum):
        diffs["batch.micro"], diffs["batch.accum"] = (ra.micro, rb.micro), (ra.accum, rb.accum)
    if ra.micro * ra.accum != rb.micro * rb.accum:
        diffs[design.EFFECTIVE_BATCH] = (ra.micro * ra.accum, rb.micro * rb.accum)
    if ra.steps and rb.steps and ra.steps != rb.steps:
        diffs[design.OPTIMIZER_STEPS] = (ra.steps, rb.steps)
    # the seed trained with HF Trainer's loss, a mean per micro-batch: its splits were different objectives
    return design.factors_between(diffs, split_changes_objective=True)


def _values(arm: ReportedArm, metric: str) -> list[float]:
    """Every run of this arm on `metric`: the re-runs when reported (they include the published run)."""
    return list(arm.reruns.get(metric) or ([arm.metrics[metric]] if metric in arm.metrics else []))


def _seed_level_test(a: list[float], b: list[float]) -> contrasts.Comparison | None:
    """The study's seed-level rule on run-level numbers (one per run); None below two runs per arm."""
    if len(a) < 2 or len(b) < 2:
        return None
    return contrasts.compare({i: {"run": v} for i, v in enumerate(a)}, {i: {"run": v} for i, v in enumerate(b)}, "m")


def _noise(rep: Reported, metric: str) -> float | None:
    """The largest spread between re-runs of the same arm on this metric, if any were reported."""
    spreads = [
        max(v) - min(v) for arm in rep.arms.values() for m, v in arm.reruns.items() if m == metric and len(v) > 1
    ]
    return max(spreads) if spreads else None


def audit(rep: Reported) -> list[tuple[str, list[str]]]:
    """[(heading, findings)] — the whole table first, then one entry per claim."""
    sections: list[tuple[str, list[str]]] = []
    runs = {name: max([len(v) for v in arm.reruns.values()] + [1]) for name, arm in rep.arms.items()}
    single = [n for n, k in runs.items() if k == 1]
    if single:
        who = "every number is a single run" if len(single) == len(runs) else f"{', '.join(single)} are single runs"
        general = [
            f"n = 1: {who} without a seed, so no confidence interval or test is possible; any difference "
            "could be run-to-run noise."
        ]
    else:
        general = [
            "Runs per arm: " + ", ".join(f"{n} {k}" for n, k in runs.items()) + "; claims are tested "
            "at the seed level where both arms have at least two runs."
        ]
    for name, arm in rep.arms.items():
        for m, values in arm.reruns.items():
            if len(values) > 1:
                general.append(
                    f"Re-running {name} gave {m} = "
                    + " and ".join(f"{v:.4f}" for v in values)
                    + f": the run-to-run spread ({max(values) - min(values):.4f}) is as large as the "
                    "effects claimed."
                )
        for text in arm.inconsistencies:
            general.append(f"{name}: {text}.")
        p, r = arm.published, _ran(arm)
        if (p.micro, p.accum) != (r.micro, r.accum):
            general.append(
                f"{name} is published as micro {p.micro} × accum {p.accum} = {p.effective} but ran "
                f"as micro {r.micro} × accum {r.accum} = {r.effective}"
                + (f" ({r.steps} optimizer steps)" if r.steps else "")
                + "."
            )
    general += list(rep.notes)
    sections.append(("The table as a whole", general))

    for claim in rep.claims:
        lines = _pair_claim(rep, claim) if claim.type in ("ratio", "factor") else _loss_claim(rep, claim)
        sections.append((claim.text, lines))
    if rep.criteria:
        sections.append(("Success criteria (stated before the runs)", [_criterion(rep, c) for c in rep.criteria]))
    return sections


def _criterion(rep: Reported, c: ReportedCriterion) -> str:
    """met / not met from a 95 % CI over the arm's runs, as the study report judges them; undecided with one run."""
    runs = _values(rep.arms[c.arm], c.metric)
    if not runs:
        return f"{c.text}: undecided ({c.metric} of {c.arm} is not reported)."
    if c.better_than is not None:
        test = _seed_level_test(runs, _values(rep.arms[c.better_than], c.metric))
        if test is None:
            return f"{c.text}: undecided (n = 1: no CI; as reported {c.arm} {runs[0]:.4f})."
        ci = f"Δ {test.delta.mean:+.4f} [{test.delta.low:+.4f}, {test.delta.high:+.4f}]"
        verdict = "met" if test.supported and test.delta.mean > 0 else "not met" if test.delta.high < 0 else "undecided"
        return f"{c.text}: {verdict} ({ci}, {contrasts.verdict(test)})."
    above = c.above is not None
    t = c.above if above else c.below
    assert t is not None  # load_reported: exactly one of above, below, better_than
    if len(runs) < 2:
        side = "above" if above else "below"
        beyond = runs[0] > t if above else runs[0] < t
        return (
            f"{c.text}: undecided (n = 1: no CI; as reported {c.arm} {runs[0]:.4f}, "
            f"{side if beyond else 'not ' + side} {t:g} on one run)."
        )
    iv = contrasts.arm_interval(np.array(runs)[:, None])
    beyond, short = (iv.low > t, iv.high < t) if above else (iv.high < t, iv.low > t)
    verdict = "met" if beyond else "not met" if short else "undecided"
    return f"{c.text}: {verdict} ({c.arm} {iv.mean:.4f} [{iv.low:.4f}, {iv.high:.4f}] over {len(runs)} runs)."


def _verdict(test: str, reasons: list[str]) -> str:
    # each claim is its own family: p is not corrected over the table's claims, and the verdict says so
    return (
        f"Verdict: supported ({test}; this claim tested alone, not corrected over the other claims)."
        if not reasons
        else f"Verdict: not supported ({', '.join(reasons)})."
    )


def _pair_claim(rep: Reported, claim: Claim) -> list[str]:
    """A claim that `arm` beats `against` on a metric (ratio), or that a factor caused the difference."""
    assert claim.arm is not None and claim.against is not None  # load_reported: a ratio or factor claim names both
    a, b = rep.arms[claim.arm], rep.arms[claim.against]
    metric = claim.metric
    va = a.metrics.get(metric) if metric is not None else None
    vb = b.metrics.get(metric) if metric is not None else None
    if metric is None or va is None or vb is None:
        return [f"{claim.metric} is not reported for both arms: nothing to check.", "Verdict: not supported (no data)."]
    delta = va - vb
    lines = [
        f"Reported: {claim.metric} {claim.against} {vb:.4f} → {claim.arm} {va:.4f} "
        f"(Δ {delta:+.4f}" + (f", ratio {va / vb:.1f} without a CI" if vb > 0 else "") + "), one run each."
    ]
    reasons = []
    runs_a, runs_b = _values(a, metric), _values(b, metric)
    test = _seed_level_test(runs_a, runs_b)
    if test is None:
        reasons.append("n = 1")
    noise = _noise(rep, metric)
    near_zero = vb < NEAR_ZERO or (noise is not None and vb < noise)
    if near_zero:
        why = ([f"below {NEAR_ZERO}"] if vb < NEAR_ZERO else []) + (
            [f"below the re-run spread {noise:.4f}"] if noise is not None and vb < noise else []
        )
        lines.append(
            f"Baseline ≈ 0: {claim.against}'s {vb:.4f} is {' and '.join(why)}; a ratio over "
            "it is not meaningful: n/a (baseline ≈ 0)."
        )
    if noise is not None and abs(delta) <= noise:
        lines.append(f"The difference ({abs(delta):.4f}) is within the re-run spread ({noise:.4f}).")
    fd = _factors(a, b)
    labels = design.factor_labels(fd)
    if claim.type == "factor":
        lines.append(
            f"The claim attributes the difference to {claim.factor}; as run, the arms differ in "
            + (", ".join(labels) if labels else "nothing recorded")
            + "."
        )
        ra, rb = _ran(a), _ran(b)
        claimed = (claim.factor or "").lower()
        varied = any(claimed.startswith(name.lower()) for name in fd.factors)
        if "micro-batch" in claimed:
            varied = ra.micro != rb.micro
            if not varied:
                lines.append(
                    f"Both arms ran with micro-batch {ra.micro}: the micro-batch was never varied, so "
                    "this claim was not tested."
                )
        if not varied:
            reasons.append("the claimed factor was not varied")
    if fd.confounded:
        lines.append(
            "Confounded: " + ", ".join(labels) + " change together; the data cannot say which "
            "one (if any) caused the difference."
        )
        reasons.append("confounded")
    if near_zero and claim.type == "ratio" or near_zero and test is None:
        reasons.append("baseline ≈ 0")
    if test is not None:
        lines.append(
            f"Seed-level test on {len(runs_a)} vs {len(runs_b)} runs ({contrasts.TEST_NAME}): Δ "
            f"{test.delta.mean:+.4f} [{test.delta.low:+.4f}, {test.delta.high:+.4f}], p {test.p:.3f}."
        )
        wanted = 1 if claim.direction == "higher" else -1
        if not test.supported:
            reasons.append(f"not distinguishable, p {test.p:.3f}")
        elif wanted * test.delta.mean <= 0:
            reasons.append("the difference goes the other way")
    ok = f"{claim.direction} by the seed-level test, p {test.p:.3f}" if test else ""
    return lines + [_verdict(ok, reasons)]


def _loss_claim(rep: Reported, claim: Claim) -> list[str]:
    """A claim linking the arms' losses to a metric: it needs held-out losses of one kind, with re-runs, and a
    supported metric difference between the highest- and lowest-loss arms in the claimed direction."""
    lines, reasons = [], []
    losses = {name: arm.loss for name, arm in rep.arms.items() if arm.loss}
    kinds = {name: loss.kind for name, loss in losses.items()}
    lines.append(
        "Published losses: "
        + ", ".join(f"{n} {losses[n].value:.3f} ({k.replace('_', ' ')})" for n, k in kinds.items())
        + "."
    )
    if len(set(kinds.values())) > 1:
        lines.append("They are different quantities (last logged step vs whole-run average) and cannot be compared.")
        reasons.append("losses of different kinds")
    last = {
        n: (arm.loss.value if arm.loss and arm.loss.kind == "last_step" else arm.other_losses.get("last_step"))
        for n, arm in rep.arms.items()
    }
    if all(v is not None for v in last.values()):
        lines.append("Like for like (last logged step): " + ", ".join(f"{n} {v:.3f}" for n, v in last.items()) + ".")
    per_step = [(n, loss.value, _ran(rep.arms[n]).accum) for n, loss in losses.items()]
    held_out = bool(kinds) and set(kinds.values()) == {"held_out"} and len(kinds) == len(rep.arms)
    if len({acc for _, _, acc in per_step}) > 1 and not held_out:
        lines.append(
            "The logged training loss scales with gradient accumulation when it is summed over "
            "micro-batches: "
            + ", ".join(f"{n} {v:.3f} / {acc} = {v / acc:.3f}" for n, v, acc in per_step)
            + " — divided by the accumulation the arms are nearly equal."
        )
        reasons.append("different normalisations")
    if not held_out:
        lines.append(
            "No held-out loss was measured for every arm, so training loss cannot tell overfitting from learning."
        )
        reasons.append("no held-out loss")
    if reasons or claim.metric is None:
        return lines + [_verdict("", reasons or ["no metric named"])]
    high = max(kinds, key=lambda n: losses[n].value)
    low = min(kinds, key=lambda n: losses[n].value)
    loss_test = _seed_level_test(_values(rep.arms[high], "heldout_loss"), _values(rep.arms[low], "heldout_loss"))
    metric_test = _seed_level_test(_values(rep.arms[high], claim.metric), _values(rep.arms[low], claim.metric))
    if loss_test is None or metric_test is None:
        return lines + [_verdict("", ["n = 1"])]
    wanted = 1 if claim.direction == "higher" else -1
    lines.append(
        f"Highest vs lowest held-out loss ({high} vs {low}): loss Δ {loss_test.delta.mean:+.4f} "
        f"(p {loss_test.p:.3f}), {claim.metric} Δ {metric_test.delta.mean:+.4f} (p {metric_test.p:.3f})."
    )
    if not loss_test.supported:
        reasons.append(f"held-out losses not distinguishable, p {loss_test.p:.3f}")
    if not metric_test.supported or wanted * metric_test.delta.mean <= 0:
        reasons.append(f"{claim.metric} does not differ in the claimed direction")
    return lines + [_verdict(f"seed-level tests, p {loss_test.p:.3f} and {metric_test.p:.3f}", reasons)]
