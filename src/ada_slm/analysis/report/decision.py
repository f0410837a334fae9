"""The report's decision sections, as pure functions of the analysis (`study serve` shows the same strings): the
decision's questions and recommended next run, the success criteria, the power of the design, and an adaptive
study's rounds."""

from __future__ import annotations

import json

from ada_slm.analysis.analysis import DecisionResult, StudyAnalysis, sample_design
from ada_slm.analysis.criteria import judge_all
from ada_slm.analysis.report.doc import Doc, fmt_p, signed
from ada_slm.run.metrics import RUN_METRICS
from ada_slm.stats import contrasts, sequential
from ada_slm.study.spec import Study


def render_decision(doc: Doc, a: StudyAnalysis):
    if a.decision is None:
        return
    doc.h(2, "Decision")
    doc.p(decision_intro(a.decision))
    doc.table(*decision_table(a.decision))
    for note in decision_notes(a):
        doc.p(note)


CRITERIA_INTRO = (
    "Stated in the study file before the runs. A threshold is met when the arm's 95 % CI lies beyond it, "
    "not met when the CI lies on the other side, undecided while the CI contains it; 'better than' is "
    "met when the seed-level rule supports the difference in the better direction, not met when its "
    "CI lies on the worse side of 0. Each criterion is judged alone (not corrected over the criteria)."
)


def criteria_table(a: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """The study's success criteria, judged from the runs' CIs: header and one row per criterion."""
    assert isinstance(a.study, Study)  # criteria are a study file's (a comparison of imported runs has none)
    rows = [
        [j.criterion.text, j.verdict, j.evidence] for j in judge_all(a.study, a.data, sample_design(a.study, a.data))
    ]
    return ["criterion (stated before the runs)", "judged", "evidence [95 % CI]"], rows


def render_criteria(doc: Doc, a: StudyAnalysis):
    assert isinstance(a.study, Study)  # criteria are a study file's (a comparison of imported runs has none)
    if not a.study.criteria:
        return
    doc.h(2, "Success criteria")
    doc.p(CRITERIA_INTRO)
    doc.table(*criteria_table(a))


def decision_intro(d: DecisionResult) -> str:
    better = "higher" if d.metric not in RUN_METRICS or RUN_METRICS[d.metric] else "lower"
    asked = [x for x in d.answers if x.not_asked is None]
    text = (
        f"A `better` question is answered yes when the comparison is supported by the seed-level test in the "
        f"better direction ({better} {d.metric}); an `equivalent` question when two one-sided tests (TOST) put "
        f"Δ inside ±margin — Holm over the {len(asked)} question(s) asked."
    )
    if len(asked) < len(d.answers):
        text += " A question these runs cannot ask is not answered, and no rule that names it matches."
    return text


def decision_table(d: DecisionResult) -> tuple[list[str], list[list[str]]]:
    rows = []
    for x in d.answers:
        c, e = x.comparison, x.equivalence
        if x.not_asked:
            evidence = x.not_asked
        elif x.test == "equivalent" and c and e:
            evidence = (
                f"Δ {signed(c.delta)}; TOST: 90 % CI [{e.low:+.4g}, {e.high:+.4g}] within ±{e.margin:.4g}?"
                f" p (Holm) {fmt_p(x.p_holm)}"
            )
        else:
            evidence = f"Δ {signed(c.delta)}, {contrasts.verdict(c)}" if c else "no data"
        if c and not x.not_asked and c.pairing != "unpaired":
            evidence += f" ({c.pairing})"
        kind = " (equivalent?)" if x.test == "equivalent" else ""
        rows.append(
            [
                x.question,
                f"{x.compare} vs {x.against}{kind}" + (" (confounded)" if x.confounded else ""),
                evidence,
                x.answer,
            ]
        )
    return ["question", "comparison", f"{d.metric} evidence", "answer"], rows


def decision_notes(a: StudyAnalysis) -> list[str]:
    """What follows the questions: the recommended next run, its config, the `study next` command, its time."""
    d = a.decision
    assert d is not None  # its callers show a decision only where the study has one
    if d.rule is None:
        return ["No rule matches these answers."]
    notes = [f"Recommended next run: {d.rule.recommend}"]
    if d.rule.config:
        notes.append("Config (baseline arm with these changes): " + json.dumps(d.rule.config, ensure_ascii=False))
        notes.append(
            f"Write it as a study to read, edit and run: `ada-slm study next {a.study.name}"
            + (f" --scale {a.scale}" if a.scale else "")
            + "` (`--run` runs it)."
        )
    if d.seconds and d.next_config:
        cfg = d.next_config
        notes.append(
            f"Estimated training time on this machine: {d.seconds / 3600:.1f} h per seed "
            f"({cfg.data.size} examples × {cfg.epochs:g} epochs at the measured {d.rate:,.0f} "
            f"tokens/s, {d.per_seq:.0f} tokens per sequence; the study's runs used base {cfg.base})."
        )
    return notes


def render_power(doc: Doc, a: StudyAnalysis):
    doc.h(2, "Power")
    pw = a.power
    if pw is None:
        doc.p(f"Not estimable: needs at least two finished runs in the baseline and in another arm on {a.primary}.")
        return
    i = pw.inputs
    doc.p(
        f"By simulation of the same seed-level rule (4000 simulated studies per point) from this study's "
        f"variance components on {pw.metric}: SD of one run's mean {i.run_mean_sd:.4f}, arm × item SD "
        f"{i.interaction_sd:.4f}, residual SD {i.residual_sd:.4f}, {i.n_items} items; α = {pw.alpha:.3g} (the "
        "first Holm step over the decision's questions). With the current "
        f"{pw.n_seeds} runs per arm the smallest difference detected with 80 % power is "
        f"{pw.detectable[pw.n_seeds]:.4f}"
        + (
            f" with runs paired by seed (what pairing leaves of a run: SD of its mean {i.paired_run_mean_sd:.4f}, "
            f"residual SD {i.paired_residual_sd:.4f}); {pw.detectable_unpaired[pw.n_seeds]:.4f} unpaired."
            if pw.paired and pw.detectable_unpaired is not None
            else "."
        )
    )
    if pw.paired and pw.detectable_unpaired is not None:  # power_from computes both with pairs
        doc.table(
            ["runs per arm", "smallest Δ at 80 % power, paired by seed", "unpaired"],
            [[str(k), f"{v:.4f}", f"{pw.detectable_unpaired[k]:.4f}"] for k, v in pw.detectable.items()],
        )
    else:
        doc.table(
            ["runs per arm", "smallest Δ at 80 % power"], [[str(k), f"{v:.4f}"] for k, v in pw.detectable.items()]
        )
    if pw.min_effect:
        doc.p(
            f"Runs per arm to detect the decision's min_effect {pw.min_effect:g} with 80 % power: "
            + (str(pw.seeds_for_min_effect) if pw.seeds_for_min_effect else "more than 100")
            + "."
        )


def render_rounds(doc: Doc, rounds: dict | None):
    """The round history of an adaptive study (results/<study>/rounds.json)."""
    if not rounds:
        return
    plan = rounds["plan"]
    doc.h(2, "Adaptive rounds")
    doc.p(
        f"Run with `--until-decided`: the study's seeds {plan['seeds']}, then {plan['seeds_per_round']} more run(s) "
        f"per round to each arm still open, at most {plan['max_seeds']} per arm (looks at {plan['looks']} runs per "
        f"arm) on {plan['metric']}. Rule: {plan['rule']}; overall α {plan['alpha']:g}"
        + (f"; equivalence margin ±{plan['margin']:g}" if plan.get("margin") else "")
        + ". The answers below "
        "are this rule's; the fixed-sample p-values elsewhere in the report ignore the repeated looks. "
        f"Outcome: **{rounds['outcome']}**."
    )
    rows = []
    for r in rounds["rounds"]:
        qs = "; ".join(
            f"{q}: Δ {x['delta']:+.4f}, p {fmt_p(x['p'])} → {x['status']}" for q, x in r["questions"].items()
        )
        sweep = ""
        if "leader" in r:
            vs = ", ".join(f"{a} {x['delta']:+.4f} (p {fmt_p(x['p'])})" for a, x in r["versus_leader"].items())
            sweep = f"leader {r['leader']}; vs leader: {vs or '—'}; threshold {fmt_p(r['elimination_threshold'])}" + (
                f"; **eliminated {', '.join(r['eliminated'])}**" if r["eliminated"] else ""
            )
        runs = ", ".join(f"{a} {n}" for a, n in r["runs_per_arm"].items())
        rows.append(
            [str(r["round"]), runs, qs or "—", fmt_p(r["threshold"]), sweep or "—", ", ".join(r["next_arms"]) or "stop"]
        )
    doc.table(
        [
            "round",
            "runs per arm",
            "questions (open at this look)",
            "threshold (first Holm step)",
            "elimination",
            "next round",
        ],
        rows,
    )
    if rounds.get("answers"):
        doc.p("Answers: " + "; ".join(f"{q}: {s}" for q, s in rounds["answers"].items()) + ".")
    if rounds.get("sweep"):
        doc.p(
            f"Sweep over {', '.join(rounds['sweep'])}: leader {rounds.get('leader')}; eliminated "
            f"{', '.join(rounds['eliminated']) or 'none'}. What the sweep controls: each arm's elimination "
            "threshold is α / (arms − 1), so the eventual best arm is dropped with probability ≤ α / 2. An "
            "eliminated arm is not shown to be worse: when all arms are equal, some arm is still eliminated in "
            f"some sweeps ({sequential.SWEEP_COMPLETE_NULL})."
        )


def render_rounds_or_why(doc: Doc, rounds) -> str | None:
    """render_rounds; for a rounds.json that lacks what it needs, nothing rendered and the reason returned."""
    before = len(doc.blocks)
    try:
        render_rounds(doc, rounds)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        del doc.blocks[before:]
        return f"not a rounds record ({type(e).__name__}: {e})"
    return None
