"""`ada-slm study next`: the follow-up study the decision block recommends, written as a YAML file to read and edit.

This is the seed study's "overnight run", chosen by the tool instead of by hand:

  defaults   the resolved config of the current best arm (by the decision metric, in its better direction)
  arms       that arm (the new baseline, unchanged) and `next`: the study's baseline with the matching rule's
             changes (Path A / B / C) — shown as the fields in which it differs from the best arm
  seeds      from the power simulation: runs per arm the seed-level rule needs to detect the effect that decided
             the path (or the decision's min_effect) with 80 % power, at least 3 and at most 20
  eval       the study's eval settings at the scale it ran at, unchanged (same suite, budget and batch size)
  decision   one question — does `next` beat the best arm? — under the same seed-level rule
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ada_slm.analysis.analysis import StudyAnalysis, analyse
from ada_slm.errors import UserError
from ada_slm.files import atomic_write_text
from ada_slm.run.config import TrainConfig
from ada_slm.run.metrics import higher_is_better
from ada_slm.stats.power_simulation import seeds_needed
from ada_slm.study.spec import BASE_ARM, RunSpec, Study, load_study

RUN_ONLY_FIELDS = ("seed", "out_dir", "export_dir")  # where and which replicate: set per run by the study
MIN_SEEDS, MAX_SEEDS = 3, 20


@dataclass
class NextStudy:
    recommendation: str
    best_arm: str | None = None
    path: Path | None = None  # None: the matching rule changes no config, so there is nothing to write
    seeds: int | None = None
    seeds_reason: str = ""
    changes: dict = field(default_factory=dict)


def _portable(cfg: TrainConfig) -> dict:
    """The config as a study file's `defaults` (plain YAML values), without what the study sets per run."""
    return cfg.model_dump(mode="json", exclude=set(RUN_ONLY_FIELDS))


def _changed(new: BaseModel, old: BaseModel, skip: tuple = RUN_ONLY_FIELDS) -> dict:
    """The fields of `new` whose values differ from `old`, as a study arm's nested overrides."""
    out = {}
    for name in type(new).model_fields:
        if name in skip:
            continue
        a, b = getattr(new, name), getattr(old, name)
        if isinstance(a, BaseModel):
            if sub := _changed(a, b, skip=()):
                out[name] = sub
        elif a != b:
            out[name] = new.model_dump(mode="json", include={name})[name]
    return out


def best_arm(a: StudyAnalysis) -> str | None:
    """The trained arm with the best mean on the decision metric (its better direction)."""
    sign = 1.0 if higher_is_better(a.primary) else -1.0
    scored = [
        (sign * r.intervals[a.primary].mean, name)
        for name, r in a.arms.items()
        if name != BASE_ARM and a.primary in r.intervals and math.isfinite(r.intervals[a.primary].mean)
    ]
    return max(scored)[1] if scored else None


def _seeds(a: StudyAnalysis) -> tuple[int, str]:
    """Runs per arm for the follow-up, from the power simulation of the same rule."""
    d, pw = a.decision, a.power
    # write_next_study: a study with a decision block
    assert d is not None and isinstance(a.study, Study) and a.study.decision is not None
    effect = a.study.decision.min_effect
    if effect is None:
        decided = [abs(x.comparison.delta.mean) for x in d.answers if x.yes and x.comparison and x.test == "better"]
        effect = max(decided) if decided else None
    if pw is None or not effect:
        n = max(MIN_SEEDS, len(a.seeds))
        return n, f"{n}: no variance components or effect to size it from (the study's own count, at least 3)"
    needed = seeds_needed(pw.inputs, effect, alpha=pw.alpha, max_seeds=MAX_SEEDS)
    n = MAX_SEEDS if needed is None else min(MAX_SEEDS, max(MIN_SEEDS, needed))
    found = f"{needed}" if needed is not None else f"more than {MAX_SEEDS}"
    return n, (
        f"{n}: the seed-level rule needs {found} runs per arm to detect Δ = {effect:.4g} on {a.primary} "
        f"with 80 % power (simulated from this study's variance components; kept within "
        f"{MIN_SEEDS}–{MAX_SEEDS})"
    )


def write_next_study(
    study: Study, specs: list[RunSpec], scale: str | None, out: Path, name: str | None = None
) -> NextStudy:
    """Analyse the finished runs, and write the recommended follow-up study to `out` (if the rule changes a
    config). The file is a complete study: `ada-slm study plan/run FILE` take it as it is."""
    if study.decision is None:
        raise UserError(f"{study.name}: the study has no decision block, so there is no recommended next run")
    a = analyse(study, specs, scale)
    if a.n_complete == 0:
        raise UserError(f"{study.name}: no finished runs yet (run `ada-slm study run` first)")
    d = a.decision
    assert d is not None  # analyse decides every study with a decision block
    if d.rule is None:
        return NextStudy("no rule of the decision block matches the answers")
    if not d.rule.config or d.next_config is None:
        return NextStudy(d.rule.recommend)
    best = best_arm(a)
    if best is None:
        raise UserError(f"{study.name}: no trained arm has a {a.primary} score yet")
    trained = a.data[best].config
    assert trained is not None  # best_arm is a trained arm (not the base arm)
    best_cfg = _portable(trained)
    changes = _changed(d.next_config, trained)
    n_seeds, why = _seeds(a)
    eval_settings = next(s.eval for s in specs)
    new_name = name or f"{study.name}-next"
    question = {"compare": "next", "against": best}
    doc: dict[str, Any] = {
        "name": new_name,
        "description": f"Follow-up of {study.name}" + (f" (scale {scale})" if scale else "") + f": {d.rule.recommend}",
        "followup_of": study.name,
        "baseline": best,
        "include_base": study.include_base,
        "seeds": list(range(n_seeds)),
        "defaults": best_cfg,
        "eval": eval_settings,
        "arms": {best: {}, "next": changes},
        "decision": {
            "metric": d.metric,
            "questions": {"better": question},
            "rules": [
                {"when": {"better": True}, "recommend": f"adopt `next` ({d.rule.recommend})"},
                {"when": {}, "recommend": f"keep {best}: `next` is not supported as better on {d.metric}"},
            ],
        },
    }
    if study.decision.min_effect is not None:
        doc["decision"]["min_effect"] = study.decision.min_effect
    header = _header(study, scale, a, best, why, best_cfg.get("max_steps"))
    atomic_write_text(out, header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110))
    load_study(out)  # what we wrote must load as a study (raises a one-line error otherwise)
    return NextStudy(d.rule.recommend, best, out, n_seeds, why, changes)


def _header(study: Study, scale: str | None, a: StudyAnalysis, best: str, why: str, max_steps: int | None) -> str:
    """The comment lines on top of the follow-up study: where it comes from and why it looks as it does."""
    d = a.decision
    assert d is not None and d.rule is not None  # write_next_study: a rule matched
    answers = "; ".join(
        f"{x.question}: {x.answer}"
        + (
            f" (Δ {x.comparison.delta.mean:+.4g}, Holm p {x.p_holm:.3g}"
            + (", equivalence" if x.test == "equivalent" else "")
            + ")"
            if x.comparison and not x.not_asked
            else ""
        )
        for x in d.answers
    )
    steps_note = ""
    if max_steps:
        steps_note = (
            f"\n# At this scale max_steps = {max_steps} fixes the optimizer steps: a larger corpus "
            "changes what those steps see, not how many there are. Edit max_steps or epochs to taste."
        )
    return (
        f"# Written by `ada-slm study next {study.name}" + (f" --scale {scale}" if scale else "") + "` on "
        f"{date.today().isoformat()} from {a.n_complete} finished runs.\n"
        f"# Decision on {d.metric}: {answers}.\n"
        f"# Recommended: {d.rule.recommend}\n"
        f"# Baseline: {best}, the best arm on {d.metric}; `next` = {study.baseline} with the rule's changes.\n"
        f"# Seeds: {why}." + steps_note + "\n"
    )
