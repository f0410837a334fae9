"""Adaptive studies (`ada-slm study run STUDY --until-decided`): rounds of runs until the study's questions are
answered, arms that the leader beats by the elimination test dropped on the way (what that controls: the eventual
best arm is dropped with probability ≤ α / 2 — not that every dropped arm is worse; see sequential.py).

Round 1 runs every arm at the study's seeds; after each round the study looks at its data with the
group-sequential rule of `sequential.py`, and the next round adds `seeds_per_round` runs only to the arms of
questions still open (and, in a sweep, to the arms not yet eliminated), up to `max_seeds` per arm or the budget.
Seeds follow one sequence per study (the study's seeds, then max + 1, max + 2, ...), so arm A's 5th run has the
same seed as arm B's.

The rounds are computed from what is on disk — `replay` walks the looks again over the finished runs — so a
killed study, resumed on either executor, recomputes the same rounds and continues the one it was in.
results/<study>/rounds.json (written atomically after every look) keeps the plan and the round history for the
report; the plan in it is the one the alpha spending was computed for, and a resume with another --max-seeds is
refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ada_slm.analysis.analysis import questions_asked
from ada_slm.analysis.arms import collect, matrix
from ada_slm.analysis.power import power
from ada_slm.errors import UserError
from ada_slm.files import UnreadableFile, atomic_write_text, read_json
from ada_slm.run import records
from ada_slm.run.metrics import higher_is_better
from ada_slm.stats import contrasts, sequential
from ada_slm.stats.power_simulation import PowerInputs
from ada_slm.stats.sequential import OPEN, STATUS_NAMES, Plan
from ada_slm.study.spec import BASE_ARM, RunSpec, Study, expand, is_complete

ROUNDS = "rounds.json"


@dataclass
class Design:
    """A study's adaptive design: which arms, which questions, which plan."""

    study: Study
    source: str
    scale: str | None
    results_root: Path
    exports_root: Path
    seeds: list[int]  # the study's seeds: round 1
    plan: Plan
    metric: str
    margin: float | None
    arms: list[str]  # arms of the study (base first, if any)
    questions: dict[str, tuple[str, str]]  # name -> (compare, against)
    sweep: list[str]  # arms competing for the lead (empty: no elimination)

    @property
    def sign(self) -> float:
        return 1.0 if higher_is_better(self.metric) else -1.0

    def seed_list(self, n: int) -> list[int]:
        extra = range(max(self.seeds) + 1, max(self.seeds) + 1 + max(0, n - len(self.seeds)))
        return (self.seeds + list(extra))[:n]

    def specs(self, arm: str, n: int) -> list[RunSpec]:
        return expand(
            self.study, self.source, self.scale, [arm], self.seed_list(n), self.results_root, self.exports_root
        )

    @property
    def rounds_path(self) -> Path:
        return self.results_root / self.study.name / ROUNDS


def design(
    study: Study,
    source: str,
    scale: str | None,
    seeds: list[int],
    results_root: Path,
    exports_root: Path,
    max_seeds: int | None = None,
) -> Design:
    a = study.adaptive
    metric = a.metric or (study.decision.metric if study.decision else "agl_awareness")
    skipped = set(study.scale[scale].skip) if scale else set()
    # only the questions this scale asks (analysis.question_not_asked: not a skipped arm, not a corpus-size
    # question that max_steps makes moot), on the arms it runs
    asked = questions_asked(
        study,
        expand(study, source, scale, seeds=list(seeds), results_root=results_root, exports_root=exports_root),
        scale,
    )
    questions = (
        {q: (x.compare, x.against) for q, x in study.decision.questions.items() if q in asked} if study.decision else {}
    )
    sweep = [arm for arm in study.arms if arm not in skipped] if a.eliminate else []
    if not questions and not sweep:
        raise UserError(
            f"{source}: --until-decided needs a decision block with questions or adaptive.eliminate: "
            "true (nothing to decide)"
        )
    max_runs = max_seeds or a.max_seeds
    if max_runs < len(seeds):
        raise UserError(f"--max-seeds {max_runs}: fewer than the study's {len(seeds)} seeds")
    margin = (
        a.margin
        or study.equivalence_margins.get(metric)
        or (study.decision.min_effect if study.decision and study.decision.metric == metric else None)
    )
    arms = ([BASE_ARM] if study.include_base else []) + [arm for arm in study.arms if arm not in skipped]
    plan = Plan(len(seeds), a.seeds_per_round, max_runs)
    d = Design(
        study,
        source,
        scale,
        Path(results_root),
        Path(exports_root),
        list(seeds),
        plan,
        metric,
        margin,
        arms,
        questions,
        sweep,
    )
    _check_stored_plan(d)
    return d


def _plan_dict(d: Design) -> dict:
    return {
        "seeds": d.seeds,
        "seeds_per_round": d.plan.step,
        "max_seeds": d.plan.max_runs,
        "alpha": d.plan.alpha,
        "looks": d.plan.looks,
        "metric": d.metric,
        "margin": d.margin,
        "rule": sequential.RULE,
    }


def _check_stored_plan(d: Design) -> None:
    stored = read_rounds(d.rounds_path)
    if stored is None:
        return
    mine, theirs = _plan_dict(d), stored.get("plan", {})
    for key in ("seeds", "seeds_per_round", "max_seeds", "metric"):
        if key in theirs and theirs[key] != mine[key]:
            raise UserError(
                f"{d.rounds_path}: this study was planned with {key} = {theirs[key]}, not {mine[key]}; "
                "the alpha spending is fixed by the plan (use the same options, or a fresh --results)"
            )


def read_rounds(path: Path) -> dict | None:
    try:
        stored = read_json(path)
    except UnreadableFile as e:
        raise UserError(
            f"{path}: corrupt rounds file ({e.reason}); delete it, it is recomputed from the runs"
        ) from None
    if stored is not None and not (isinstance(stored, dict) and isinstance(stored.get("plan", {}), dict)):
        raise UserError(f"{path}: corrupt rounds file (not a rounds record); delete it, it is recomputed from the runs")
    return stored


# ------------------------------------------------------------------------------------------ the looks
@dataclass
class Progress:
    rounds: list[dict] = field(default_factory=list)  # one entry per look taken
    todo: list[RunSpec] = field(default_factory=list)  # the current round's runs (finished ones included)
    new_runs: list[RunSpec] = field(default_factory=list)  # runs this round adds over the previous one
    outcome: str = ""  # "" while running, else why it stopped
    status: dict[str, str] = field(default_factory=dict)  # question -> status name
    eliminated: list[str] = field(default_factory=list)
    leader: str | None = None
    specs: list[RunSpec] = field(default_factory=list)  # every run of the last look taken


def _contrast(a: dict, b: dict, metric: str):
    """(est, se, capped df) of arm a − arm b on the metric: `contrasts.compare`'s seed-level t."""
    c = contrasts.compare(a, b, metric)
    if c is None:
        return 0.0, math.nan, math.nan
    return c.delta.mean, c.delta.se, float(sequential.capped_df(c.delta.df, len(a), len(b)))


def replay(d: Design) -> Progress:
    """Walk the looks over the finished runs: the rounds so far, and the runs the current round needs."""
    n = {arm: d.plan.initial for arm in d.arms}
    q_names = list(d.questions)
    status = np.zeros((1, len(q_names)), int)
    alive = np.array([[arm in d.sweep for arm in d.arms]])
    settled = not d.sweep
    prog, previous = Progress(), set()
    for k, nk in enumerate(d.plan.looks):
        specs = [s for arm in d.arms for s in d.specs(arm, n[arm])]
        prog.todo, prog.new_runs = specs, [s for s in specs if s.key not in previous]
        if not all(is_complete(s) for s in specs):
            return prog
        previous, prog.specs = {s.key for s in specs}, specs
        scores = {a: x.scores[d.metric] for a, x in collect(specs).items()}
        entry: dict[str, Any] = {
            "round": k + 1,
            "runs_per_arm": {a: n[a] for a in d.arms if a != BASE_ARM},
            "threshold": float(d.plan.nominal(d.plan.alpha / max(1, len(q_names)))[k]),
            "questions": {},
        }
        if q_names:
            opened = status == OPEN
            vals = [
                _contrast(scores[d.questions[q][0]], scores[d.questions[q][1]], d.metric)
                if opened[0, i]
                else (0.0, math.nan, math.nan)
                for i, q in enumerate(q_names)
            ]
            est, se, df = (np.array([[v[i] for v in vals]]) for i in range(3))
            status = sequential.answer_questions(est, se, df, status, k, d.plan, d.sign, d.margin)
            for i, q in enumerate(q_names):
                if opened[0, i]:
                    p = float(contrasts.t_test(est[0, i], se[0, i], df[0, i])[0])
                    entry["questions"][q] = {"delta": float(est[0, i]), "p": p, "status": STATUS_NAMES[status[0, i]]}
        if d.sweep and not settled:
            settled = _eliminate(d, scores, alive, k, entry, prog)
        last = k + 1 == len(d.plan.looks)
        need = _needs(d, status, alive, settled, n, nk) if not last else set()
        entry["next_arms"] = sorted(need)
        prog.rounds.append(entry)
        prog.status = {q: STATUS_NAMES[status[0, i]] for i, q in enumerate(q_names)}
        if not need:
            prog.todo, prog.new_runs = [], []
            prog.outcome = "decided" if (status != OPEN).all() and settled else f"max seeds ({d.plan.max_runs}) reached"
            return prog
        for arm in need:
            n[arm] = d.plan.looks[k + 1]
    return prog


def _eliminate(d: Design, scores: dict, alive: np.ndarray, k: int, entry: dict, prog: Progress) -> bool:
    """One look of the sweep; updates `alive` in place, records the look; True when the sweep is settled."""
    n_arms = len(d.arms)
    shape = (1, n_arms, n_arms)
    est, se, df = np.zeros(shape), np.full(shape, np.nan), np.full(shape, np.nan)
    live = [i for i in range(n_arms) if alive[0, i]]
    for i in live:
        y = scores[d.arms[i]]
        est[0, i, i] = float(np.nanmean([v for s in y.values() for v in s.values() if v is not None]))
        for j in live:
            if j != i:
                est[0, i, j], se[0, i, j], df[0, i, j] = _contrast(y, scores[d.arms[j]], d.metric)
    leader, dropped, settled = sequential.eliminate(est, se, df, alive, k, d.plan, d.sign, len(d.sweep), d.margin)
    alive &= ~dropped
    prog.leader = d.arms[int(leader[0])]
    out = [d.arms[i] for i in range(n_arms) if dropped[0, i]]
    prog.eliminated += out
    entry["leader"] = prog.leader
    entry["eliminated"] = out
    entry["versus_leader"] = {
        d.arms[j]: {
            "delta": float(-est[0, leader[0], j]),
            "p": float(contrasts.t_test(est[0, leader[0], j], se[0, leader[0], j], df[0, leader[0], j])[0]),
        }
        for j in live
        if j != leader[0]
    }
    entry["elimination_threshold"] = float(d.plan.nominal(d.plan.alpha / max(1, len(d.sweep) - 1))[k])
    return bool(settled[0])


def _needs(d: Design, status, alive, settled: bool, n: dict, nk: int) -> set[str]:
    need = set()
    for i, (a, b) in enumerate(d.questions.values()):
        if status[0, i] == OPEN:
            need |= {a, b}
    if not settled:
        need |= {arm for i, arm in enumerate(d.arms) if alive[0, i]}
    return {arm for arm in need if arm != BASE_ARM and n[arm] == nk}


def write_rounds(d: Design, prog: Progress) -> None:
    atomic_write_text(
        d.rounds_path,
        json.dumps(
            {
                "plan": _plan_dict(d),
                "questions": {q: list(v) for q, v in d.questions.items()},
                "sweep": d.sweep,
                "rounds": prog.rounds,
                "outcome": prog.outcome or "running",
                "answers": prog.status,
                "eliminated": prog.eliminated,
                "leader": prog.leader,
            },
            indent=2,
            allow_nan=True,
        ),
    )


# ------------------------------------------------------------------------------------------ the runner
def run_seconds(specs: list[RunSpec]) -> list[float]:
    """Measured seconds (training + generation) of the finished runs among `specs`."""
    out = []
    for s in specs:
        rec = records.read_record_or_none(s.run_dir)
        if records.is_complete(rec):
            assert rec.eval is not None  # is_complete: it holds the evaluation
            out.append(((rec.train.wall_s if rec.train is not None else None) or 0.0) + (rec.eval.generation_s or 0.0))
    return out


def run_until_decided(
    d: Design,
    run_round: Callable[[list[RunSpec]], dict],
    budget_hours: float | None = None,
    on_look: Callable[[Progress], None] | None = None,
) -> tuple[Progress, dict]:
    """Rounds until every question is answered (or max seeds / the budget): `run_round(specs)` runs a round's
    unfinished runs (executors.run_study) and returns its counts. A round already begun on disk is finished
    even past the budget, so a resumed study redoes the same rounds."""
    counts = {"done": 0, "failed": 0, "pending": 0}
    while True:
        prog = replay(d)
        if not prog.outcome and budget_hours is not None and len(prog.rounds) >= 1:
            begun = any((s.run_dir / records.SPEC).is_file() for s in prog.new_runs)
            all_specs = [s for arm in d.arms for s in d.specs(arm, d.plan.max_runs)]
            spent = run_seconds(all_specs)
            per_run = sum(spent) / max(1, len(spent))
            if not begun and sum(spent) + per_run * len(prog.new_runs) > budget_hours * 3600:
                prog.outcome = f"budget ({budget_hours:g} h) reached"
        write_rounds(d, prog)
        if on_look:
            on_look(prog)
        if prog.outcome:
            return prog, counts
        counts = run_round(prog.todo)
        if counts.get("failed"):
            return prog, counts


def describe_look(prog: Progress) -> str:
    """One line about the latest look, for the terminal."""
    if not prog.rounds:
        return f"round 1: {len(prog.todo)} runs"
    r = prog.rounds[-1]
    parts = [f"round {r['round']} looked at {', '.join(f'{a} {n}' for a, n in r['runs_per_arm'].items())} runs"]
    parts += [f"{q}: Δ {x['delta']:+.4f}, p {x['p']:.4f} → {x['status']}" for q, x in r["questions"].items()]
    if "leader" in r:
        dropped = f", eliminated {', '.join(r['eliminated'])}" if r["eliminated"] else ""
        parts.append(f"leader {r['leader']}{dropped}")
    if prog.outcome:
        parts.append(f"stopped: {prog.outcome}")
    elif prog.new_runs:
        parts.append(f"next round: {len(prog.new_runs)} runs ({', '.join(r['next_arms'])})")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------ planning
@dataclass
class Expectation:
    scenario: str
    runs_mean: float  # trained runs of the whole adaptive study (base arm excluded)
    runs_p90: float
    decided: float  # share of simulated studies that end "decided" before max seeds
    seconds_left: float | None  # expected time of the runs not yet finished


def expected_cost(d: Design, n_sim: int = 1000, seed: int = 0) -> tuple[list[Expectation], PowerInputs] | None:
    """Expected runs and time of the adaptive study, by simulating its rounds with the variance components and
    arm means measured so far (and with no difference at all); None before two runs of two arms are finished."""
    trained = [a for a in d.arms if a != BASE_ARM]
    specs = [s for a in trained for s in d.specs(a, d.plan.max_runs)]
    arms = collect(specs)
    pw = power(d.study, arms, d.metric, n_tests=len(d.questions) or 1)
    if pw is None:
        return None
    observed = {a: matrix(arms[a].scores[d.metric]) for a in trained}
    base_y = observed.get(d.study.baseline)
    fallback = float(np.nanmean(base_y)) if base_y is not None else 0.0
    means = np.array([float(np.nanmean(y)) if y is not None else fallback for y in observed.values()])
    questions = [(trained.index(a), trained.index(b)) for a, b in d.questions.values() if BASE_ARM not in (a, b)]
    sweep = [trained.index(a) for a in d.sweep] or None
    noise = sequential.Noise.from_power_inputs(pw.inputs)
    seconds = run_seconds(specs)
    per_run = sum(seconds) / len(seconds) if seconds else None
    out = []
    null = np.full(len(means), means.mean())
    for name, mu in (("differences as measured so far", means), ("no difference", null)):
        sim = sequential.simulate(d.plan, mu, noise, questions, sweep, d.sign, d.margin, n_sim, seed)
        decided = ((sim.status != OPEN).all(-1) & (sim.n < d.plan.max_runs).any(-1)).mean()
        left = np.maximum(0, sim.runs - len(seconds)).mean()
        out.append(
            Expectation(
                name,
                float(sim.runs.mean()),
                float(np.percentile(sim.runs, 90)),
                float(decided),
                left * per_run if per_run else None,
            )
        )
    return out, pw.inputs
