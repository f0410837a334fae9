"""Study report: the seed's tables, regenerated with statistics, plus plots and the decision.

The report is a list of blocks (heading, paragraph, table, image) rendered twice: Markdown (report.md) and a
self-contained HTML page with the images embedded (report.html).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import itertools
import json
import math
from pathlib import Path

import numpy as np

from ada_slm.analysis import sequential, stats
from ada_slm.analysis.analysis import (ArmComparison, ArmData, ArmResult, DecisionResult, StudyAnalysis,  # noqa: F401
                              analyse, collect, matrix)  # (collect: record reading)
from ada_slm.errors import UserError
from ada_slm.files import atomic_write_text, iter_jsonl, read_json
from ada_slm.run.config import TrainConfig
from ada_slm.run.metrics import METRICS, RUN_METRICS, SEED_METRICS
from ada_slm.study.spec import BASE_ARM, RunSpec, Study


# ----------------------------------------------------------------------------------------- formatting
def f4(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def ci4(iv: stats.Interval | None) -> str:
    if iv is None or math.isnan(iv.mean):
        return "—"
    return f"{iv.mean:.4f} [{iv.low:.4f}, {iv.high:.4f}]"


def signed(iv: stats.Interval) -> str:
    return f"{iv.mean:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]"


def arm_matrix(arm: ArmData, metric: str) -> np.ndarray | None:
    return matrix(arm.scores[metric])


def describe(cfg: TrainConfig | None) -> str:
    return "base model, no adapter" if cfg is None else cfg.label()


# ----------------------------------------------------------------------------------------- the report
class Doc:
    def __init__(self):
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]):
        self.blocks.append(("table", header, rows))

    def image(self, path: Path, alt: str):
        self.blocks.append(("img", path, alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "|".join("---" for _ in b[1]) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b[2]]
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1].name})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                 "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
                 "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
                 "{text-align:left}th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6}</style>"
                 "</head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                parts.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                parts.append(f"<p>{html.escape(b[1]).replace(chr(10), '<br>')}</p>")
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(c)}</th>" for c in b[1])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in b[2])
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b[0] == "img":
                data = base64.b64encode(b[1].read_bytes()).decode()
                parts.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'></p>")
        parts.append("</body></html>")
        return "\n".join(parts)


fmt_p = stats.format_p


def _mean_sd(iv: stats.Interval | None, vc: stats.VarianceComponents | None) -> str:
    if iv is None or math.isnan(iv.mean):
        return "—"
    return f"{iv.mean:.3f}" + (f" ± {vc.seed_sd:.3f}" if vc is not None else "")


def _verdict(c: stats.Comparison) -> str:
    return stats.verdict(c)


def comparisons_json(comparisons: dict) -> str:
    """comparisons.json: every arm's comparison with the baseline, per metric, for scripts (studies and compare)."""
    return json.dumps(
        {arm: {m: {"delta": c.delta.mean, "low": c.delta.low, "high": c.delta.high, "df": c.delta.df, "p": c.p,
                   "p_holm": c.p_holm, "p_perm": c.p_perm, "p_perm_min": c.p_perm_min, "test": c.test,
                   "ratio": c.ratio, "ratio_note": c.ratio_note, "supported": c.supported,
                   "holm_family": c.family, "verdict": stats.verdict(c), "significant": c.supported}
               for m, c in comp.comparisons.items()} for arm, comp in comparisons.items()}, indent=2, allow_nan=True)


def ratio_ci(c: stats.Comparison) -> str:
    """× with its 95 % CI — never a bare ratio."""
    return f"{c.ratio[0]:.2f}× [{c.ratio[1]:.2f}, {c.ratio[2]:.2f}]" if c.ratio else c.ratio_note


def render_header(doc: Doc, a: StudyAnalysis):
    study = a.study
    doc.h(1, f"Study {study.name}")
    if study.description.strip():
        doc.p(study.description.strip())
    doc.p(f"Scale preset: {a.scale or 'as written (no preset)'} · seeds {', '.join(map(str, a.seeds))} · "
          f"runs complete {a.n_complete}/{a.n_runs}" + (f", failed {a.n_failed}" if a.n_failed else "") +
          f" · generated {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    if a.eval_info:
        g = a.eval_info["generation"]
        doc.p(f"Every arm: suite {a.eval_info['suite']} ({a.eval_info['n_items']} items), {g['mode']} generation, "
              f"max_new_tokens {g['max_new_tokens']}, eval batch size {g['batch_size']}. Losses are mean "
              "cross-entropy per answer token over each optimizer step (prompt masked), so they are comparable "
              "across arms whatever their micro-batch × accumulation split; the held-out loss is the primary "
              "loss column.")


def render_summary(doc: Doc, a: StudyAnalysis):
    doc.h(2, "Full series summary")
    doc.p(f"Losses: mean ± seed-to-seed SD over the arm's runs. {a.primary}: mean [95 % CI] over runs and items, "
          "and the variance components of one arm — seed SD (training-run effect) vs item SD (spread of item "
          "means): a large seed SD asks for more seeds, a large item SD for more items.")
    doc.table(*summary_table(a))
    left_out = unreadable_runs(a)
    if left_out:
        doc.p("Left out of every number in this report, because their files cannot be read (the run's state is "
              "'unreadable'; move the run's record.json and eval.jsonl away and `study run` redoes it): "
              + "; ".join(left_out) + ".")
    edited = [arm.edited for arm in a.data.values() if arm.edited]
    if edited:
        doc.p("The study file was edited after these runs; every number and config here is of what ran "
              "(record.json): " + "; ".join(edited) + ".")


def unreadable_runs(a: StudyAnalysis) -> list[str]:
    """'ARM/seedK: why' for every run the analysis left out because its record or eval.jsonl cannot be read."""
    return [f"{name}/seed{seed}: {why}" for name, arm in a.data.items() for seed, why in sorted(arm.unreadable.items())]


# The cells of report.md's tables, as pure functions of the analysis: `study serve` shows the same strings.
def summary_table(a: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """The series summary: its header and one row per arm."""
    rows = []
    for name, arm in a.arms.items():
        iv, vc = arm.intervals.get(a.primary), arm.components.get(a.primary)
        vs = "—"
        comp = a.comparisons.get(name)
        c = comp.comparisons.get(a.primary) if comp else None
        if c:
            vs = f"Δ {signed(c.delta)} ({_verdict(c)}); {ratio_ci(c)}"
        status = ", ".join(f"{v} {list(arm.states.values()).count(v)}" for v in sorted(set(arm.states.values())))
        rows.append([name + (" (baseline)" if name == a.study.baseline else ""), describe(arm.config),
                     _mean_sd(arm.intervals.get("heldout_loss"), arm.components.get("heldout_loss")),
                     _mean_sd(arm.intervals.get("train_loss"), arm.components.get("train_loss")), ci4(iv),
                     f"{vc.seed_sd:.4f} / {vc.item_sd:.4f}" if vc else "—", vs, status])
    return (["arm", "config", "held-out loss", "final train loss", f"{a.primary} [95% CI]", "seed SD / item SD",
             "vs baseline", "runs"], rows)


def comparison_table(a: StudyAnalysis, comp: ArmComparison) -> tuple[list[str], list[list[str]]]:
    """One arm against the baseline: its header and one row per metric (item and run-level)."""
    rows = []
    for m, c in comp.comparisons.items():
        pct = f"{c.percent[0]:+.1f}% [{c.percent[1]:+.1f}, {c.percent[2]:+.1f}]" if c.percent else c.ratio_note
        ratio = ratio_ci(c)
        perm = f"{fmt_p(c.p_perm)} (≥ {c.p_perm_min:.3g})" if math.isfinite(c.p_perm) else "—"
        rows.append([m, ci4(c.baseline), f4(c.baseline.mean + c.delta.mean), signed(c.delta), pct, ratio,
                     f"{c.delta.df:.1f}", fmt_p(c.p_holm), perm, _verdict(c)])
    return (["metric", f"{comp.against} [CI]", comp.arm, "Δ [95% CI]", "%", "×", "d.f.", "p (t, Holm)",
             "perm p (min)", "difference"], rows)


def no_comparison_note(arm: ArmResult) -> str:
    states = ", ".join(f"seed {k}: {v}" for k, v in sorted(arm.states.items()))
    return f"No finished runs to compare ({states})."


def equivalence_note(a: StudyAnalysis, comp: ArmComparison) -> str | None:
    if not comp.equivalence:
        return None
    return ("Equivalence (TOST, 90 % CI of Δ inside ±margin; margin = "
            + ("the study's equivalence_margins or " if a.study.equivalence_margins else "")
            + "10 % of the baseline's mean): "
            + "; ".join(f"{m} ±{e.margin:.4g}: [{e.low:+.4f}, {e.high:+.4f}] → "
                        + ("equivalent" if e.equivalent else "not shown equivalent") + f" (p {fmt_p(e.p)})"
                        for m, e in comp.equivalence.items()) + ".")


def render_comparisons(doc: Doc, a: StudyAnalysis):
    baseline = a.study.baseline
    doc.h(2, f"Per-metric comparison against {baseline}")
    doc.p(f"The training run is the unit: Δ is the difference of arm means over the items both arms share; its "
          f"95 % CI and p come from a {stats.TEST_NAME} — the seed part is the spread of per-run means, the item "
          "part the arm × item interaction, so the interval is about new runs and new items, not only these. "
          "p is Holm-corrected across the metrics of one comparison; 'supported' = Holm p < 0.05 (the one rule "
          "used everywhere in this report), and every verdict names the family its p was corrected over: the "
          "same Δ is corrected over the metrics of its comparison here and over the decision's questions in the "
          "Decision, so the two verdicts can differ. 'perm p' is the exact permutation test of run labels (its smallest "
          "possible value in brackets: 3 vs 3 runs have 20 arrangements, so it cannot go below 0.1). Held-out "
          "loss, final train loss and tokens/s are one number per run, tested the same way (lower loss is "
          "better). % and × are shown only when the baseline's CI excludes 0 and its mean is above the base "
          "model's noise floor; otherwise 'n/a (baseline ≈ 0)'. 'not distinguishable' = these runs and items "
          "cannot tell the arms apart — it is not a claim that they are equal.")
    for name, arm in a.arms.items():
        if name == baseline:
            continue
        comp = a.comparisons.get(name)
        doc.h(3, f"{name} vs {baseline}")
        if comp is None:
            doc.p(no_comparison_note(arm))
            continue
        doc.p(factor_note(comp, name))
        doc.table(*comparison_table(a, comp))
        if comp.equivalence:
            doc.p(equivalence_note(a, comp))


def factor_note(comp, name: str) -> str:
    fd = comp.factors
    label = ", ".join(f"{k}: {v[1]} → {v[0]}" for k, v in fd.factors.items()) or "nothing"
    note = f"Differs in {label}."
    if name == BASE_ARM:
        note += " (The base model: the untrained floor.)"
    elif fd.confounded:
        note += (" CONFOUNDED: more than one factor changes, so this difference cannot be attributed to "
                 "any one of them.")
    if "batch split" in fd.factors:
        note += (" The micro × accum split keeps the effective batch; with the per-token loss both splits train "
                 "the same objective in expectation (with LoRA dropout not the same run). Their equality is "
                 "claimed only by the equivalence test, never from 'not distinguishable'.")
    return note


def render_designs(doc: Doc, a: StudyAnalysis):
    doc.h(2, "Factorial analysis")
    if not a.factorials:
        doc.p("No four trained arms form a full 2 × 2 with everything else in the config equal, so main effects "
              "and interactions cannot be separated; pairwise comparisons that change two factors at once are "
              "labelled confounded.")
    for f in a.factorials:
        names = {"main effect 1": f"main effect of {f.factor1}", "main effect 2": f"main effect of {f.factor2}",
                 "interaction": "interaction"}
        doc.p(f"{f.factor1} ({f.levels1[0]} → {f.levels1[1]}) × {f.factor2} ({f.levels2[0]} → {f.levels2[1]}) on "
              f"{a.primary}, arms {', '.join(f.cells[k] for k in sorted(f.cells))} (contrasts of arm means, "
              "same seed-level t rule, Holm over the three effects):")
        doc.table(["effect", "estimate [95% CI]", "p (Holm)", "supported"],
                  [[names[e.name], signed(e.interval), fmt_p(e.p), "yes" if e.supported else "no"]
                   for e in f.effects])
        supported = [names[e.name] for e in f.effects if e.supported]
        doc.p("What explains the differences: " + (", ".join(supported) if supported else
              "none of the effects is distinguishable from zero with these runs") + ".")
    doc.h(2, "Rank: is there a Goldilocks zone?")
    g = a.goldilocks
    if g is None or len(g.by_rank) < 3:
        doc.p("Not supported by the data: fewer than three ranks at otherwise equal settings.")
    else:
        doc.p(f"Ranks {', '.join(f'{r} ({n})' for r, n in g.by_rank.items())} on {a.primary}: {g.text}.")


def render_decision(doc: Doc, a: StudyAnalysis):
    if a.decision is None:
        return
    doc.h(2, "Decision")
    doc.p(decision_intro(a.decision))
    doc.table(*decision_table(a.decision))
    for note in decision_notes(a):
        doc.p(note)


CRITERIA_INTRO = ("Stated in the study file before the runs. A threshold is met when the arm's 95 % CI lies beyond it, "
                  "not met when the CI lies on the other side, undecided while the CI contains it; 'better than' is "
                  "met when the seed-level rule supports the difference in the better direction, not met when its "
                  "CI lies on the worse side of 0. Each criterion is judged alone (not corrected over the criteria).")


def criteria_table(a: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """The study's success criteria, judged from the runs' CIs: header and one row per criterion."""
    from ada_slm.analysis.criteria import judge_all

    rows = [[j.criterion.text, j.verdict, j.evidence] for j in judge_all(a.study, a.data)]
    return ["criterion (stated before the runs)", "judged", "evidence [95 % CI]"], rows


def render_criteria(doc: Doc, a: StudyAnalysis):
    if not a.study.criteria:
        return
    doc.h(2, "Success criteria")
    doc.p(CRITERIA_INTRO)
    doc.table(*criteria_table(a))


def decision_intro(d: DecisionResult) -> str:
    better = "higher" if d.metric not in RUN_METRICS or RUN_METRICS[d.metric] else "lower"
    asked = [x for x in d.answers if x.not_asked is None]
    text = (f"A `better` question is answered yes when the comparison is supported by the seed-level test in the "
            f"better direction ({better} {d.metric}); an `equivalent` question when two one-sided tests (TOST) put "
            f"Δ inside ±margin — Holm over the {len(asked)} question(s) asked.")
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
            evidence = (f"Δ {signed(c.delta)}; TOST: 90 % CI [{e.low:+.4g}, {e.high:+.4g}] within ±{e.margin:.4g}?"
                        f" p (Holm) {fmt_p(x.p_holm)}")
        else:
            evidence = f"Δ {signed(c.delta)}, {_verdict(c)}" if c else "no data"
        kind = " (equivalent?)" if x.test == "equivalent" else ""
        rows.append([x.question, f"{x.compare} vs {x.against}{kind}" + (" (confounded)" if x.confounded else ""),
                     evidence, x.answer])
    return ["question", "comparison", f"{d.metric} evidence", "answer"], rows


def decision_notes(a: StudyAnalysis) -> list[str]:
    """What follows the questions: the recommended next run, its config, the `study next` command, its time."""
    d = a.decision
    if d.rule is None:
        return ["No rule matches these answers."]
    notes = [f"Recommended next run: {d.rule.recommend}"]
    if d.rule.config:
        notes.append("Config (baseline arm with these changes): " + json.dumps(d.rule.config, ensure_ascii=False))
        notes.append(f"Write it as a study to read, edit and run: `ada-slm study next {a.study.name}"
                     + (f" --scale {a.scale}" if a.scale else "") + "` (`--run` runs it).")
    if d.seconds and d.next_config:
        cfg = d.next_config
        notes.append(f"Estimated training time on this machine: {d.seconds / 3600:.1f} h per seed "
                     f"({cfg.data.size} examples × {cfg.epochs:g} epochs at the measured {d.rate:,.0f} "
                     f"tokens/s, {d.per_seq:.0f} tokens per sequence; the study's runs used base {cfg.base}).")
    return notes


def render_power(doc: Doc, a: StudyAnalysis):
    doc.h(2, "Power")
    pw = a.power
    if pw is None:
        doc.p(f"Not estimable: needs at least two finished runs in the baseline and in another arm on {a.primary}.")
        return
    i = pw.inputs
    doc.p(f"By simulation of the same seed-level rule (4000 simulated studies per point) from this study's "
          f"variance components on {pw.metric}: SD of one run's mean {i.run_mean_sd:.4f}, arm × item SD "
          f"{i.interaction_sd:.4f}, residual SD {i.residual_sd:.4f}, {i.n_items} items; α = {pw.alpha:.3g} (the "
          "first Holm step over the decision's questions). With the current "
          f"{pw.n_seeds} runs per arm the smallest difference detected with 80 % power is "
          f"{pw.detectable[pw.n_seeds]:.4f}.")
    doc.table(["runs per arm", "smallest Δ at 80 % power"], [[str(k), f"{v:.4f}"] for k, v in pw.detectable.items()])
    if pw.min_effect:
        doc.p(f"Runs per arm to detect the decision's min_effect {pw.min_effect:g} with 80 % power: "
              + (str(pw.seeds_for_min_effect) if pw.seeds_for_min_effect else "more than 100") + ".")


def render_rounds(doc: Doc, rounds: dict | None):
    """The round history of an adaptive study (results/<study>/rounds.json)."""
    if not rounds:
        return
    plan = rounds["plan"]
    doc.h(2, "Adaptive rounds")
    doc.p(f"Run with `--until-decided`: the study's seeds {plan['seeds']}, then {plan['seeds_per_round']} more run(s) "
          f"per round to each arm still open, at most {plan['max_seeds']} per arm (looks at {plan['looks']} runs per "
          f"arm) on {plan['metric']}. Rule: {plan['rule']}; overall α {plan['alpha']:g}"
          + (f"; equivalence margin ±{plan['margin']:g}" if plan.get("margin") else "") + ". The answers below "
          "are this rule's; the fixed-sample p-values elsewhere in the report ignore the repeated looks. "
          f"Outcome: **{rounds['outcome']}**.")
    rows = []
    for r in rounds["rounds"]:
        qs = "; ".join(f"{q}: Δ {x['delta']:+.4f}, p {fmt_p(x['p'])} → {x['status']}" for q, x in r["questions"].items())
        sweep = ""
        if "leader" in r:
            vs = ", ".join(f"{a} {x['delta']:+.4f} (p {fmt_p(x['p'])})" for a, x in r["versus_leader"].items())
            sweep = (f"leader {r['leader']}; vs leader: {vs or '—'}; threshold {fmt_p(r['elimination_threshold'])}"
                     + (f"; **eliminated {', '.join(r['eliminated'])}**" if r["eliminated"] else ""))
        runs = ", ".join(f"{a} {n}" for a, n in r["runs_per_arm"].items())
        rows.append([str(r["round"]), runs, qs or "—", fmt_p(r["threshold"]), sweep or "—",
                     ", ".join(r["next_arms"]) or "stop"])
    doc.table(["round", "runs per arm", "questions (open at this look)", "threshold (first Holm step)",
               "elimination", "next round"], rows)
    if rounds.get("answers"):
        doc.p("Answers: " + "; ".join(f"{q}: {s}" for q, s in rounds["answers"].items()) + ".")
    if rounds.get("sweep"):
        doc.p(f"Sweep over {', '.join(rounds['sweep'])}: leader {rounds.get('leader')}; eliminated "
              f"{', '.join(rounds['eliminated']) or 'none'}. What the sweep controls: each arm's elimination "
              "threshold is α / (arms − 1), so the eventual best arm is dropped with probability ≤ α / 2. An "
              "eliminated arm is not shown to be worse: when all arms are equal, some arm is still eliminated in "
              f"some sweeps ({sequential.SWEEP_COMPLETE_NULL}).")


def render_rounds_or_why(doc: Doc, rounds) -> str | None:
    """render_rounds; for a rounds.json that lacks what it needs, nothing rendered and the reason returned."""
    before = len(doc.blocks)
    try:
        render_rounds(doc, rounds)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        del doc.blocks[before:]
        return f"not a rounds record ({type(e).__name__}: {e})"
    return None


def build_report(study: Study, specs: list[RunSpec], scale: str | None, out_dir: Path,
                 analysis: StudyAnalysis | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = analysis or analyse(study, specs, scale)
    arms = a.data
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Doc()
    render_header(doc, a)
    render_summary(doc, a)
    render_comparisons(doc, a)
    render_designs(doc, a)
    render_decision(doc, a)
    render_criteria(doc, a)
    render_power(doc, a)
    rounds_path = out_dir / "rounds.json"
    try:
        why = render_rounds_or_why(doc, read_json(rounds_path))
    except UserError as e:
        why = str(e)
    if why:  # a damaged rounds.json costs its own section only
        doc.p(f"The adaptive rounds are not shown: {rounds_path}: {why}.")
    _seed_compatible(doc, arms)
    _plots(doc, arms, a.primary, out_dir, plt)
    _examples(doc, arms, specs)
    md_path = out_dir / "report.md"
    atomic_write_text(md_path, doc.markdown())
    atomic_write_text(out_dir / "report.html", doc.html(f"Study {study.name}"))
    atomic_write_text(out_dir / "comparisons.json", comparisons_json(a.comparisons))
    return md_path


def summary(a: StudyAnalysis) -> str:
    """What the CLI prints: the series summary, designs, decision and power, as Markdown."""
    doc = Doc()
    render_summary(doc, a)
    render_designs(doc, a)
    render_decision(doc, a)
    render_criteria(doc, a)
    render_power(doc, a)
    return doc.markdown()


def _seed_compatible(doc: Doc, arms: dict[str, ArmData]):
    doc.h(2, "Our metrics | seed-compatible scoring")
    doc.p("The seed study's scorer (distinct marker-list entries found as substrings ÷ word count; certainty "
          "= distinct glyphs / 5; protocol 1 / 0.5 / 0) applied to the same outputs. It differs from AGL.md's "
          "metrics in its marker lists, substring matching and ignoring repeats, so the two columns are not "
          "interchangeable.")
    rows = []
    for m in SEED_METRICS:
        row = [m]
        for arm in arms.values():
            y = arm_matrix(arm, m)
            ours = float(np.nanmean(y)) if y is not None else None
            s = arm.seed_scores[m]
            theirs = float(np.mean([v for seed in s.values() for v in seed.values()])) if s else None
            row.append(f"{f4(ours)} | {f4(theirs)}")
        rows.append(row)
    doc.table(["metric"] + [f"{n} (ours | seed)" for n in arms], rows)


def _examples(doc: Doc, arms: dict[str, ArmData], specs: list[RunSpec]):
    doc.h(2, "Example outputs")
    for name in arms:
        spec = next((s for s in specs if s.arm == name and s.seed in arms[name].records), None)  # readable runs
        if spec is None:
            continue
        try:
            rows = [[str(r.get("id")), str(r.get("prompt"))[:60], str(r.get("output"))[:80]]
                    for _, r in itertools.islice(iter_jsonl(spec.run_dir / "eval.jsonl"), 3)]
        except UserError:  # changed since the analysis read it
            continue
        doc.h(3, f"{name} (seed {spec.seed})")
        doc.table(["item", "prompt", "output"], rows)

def _plots(doc: Doc, arms: dict[str, ArmData], primary: str, out_dir: Path, plt):
    doc.h(2, "Plots")
    # loss curves
    fig, ax = plt.subplots(figsize=(8, 4))
    drew = False
    for i, (name, arm) in enumerate(arms.items()):
        for seed, rec in sorted(arm.records.items()):
            if rec.train is None:
                continue
            steps = rec.train.steps
            colour = f"C{i % 10}"
            ax.plot([s.step for s in steps], [s.loss for s in steps], color=colour, alpha=0.5,
                    label=f"{name} train" if seed == min(arm.records) else None)
            val = rec.train.val
            if val:
                ax.plot([v.step for v in val], [v.loss for v in val], "o--", color=colour,
                        label=f"{name} held-out" if seed == min(arm.records) else None)
            drew = True
    if drew:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss per answer token")
        ax.legend(fontsize=7)
        ax.set_title("Training and held-out loss (same normalisation in every arm)")
        fig.tight_layout()
        fig.savefig(out_dir / "loss_curves.png", dpi=110)
        doc.image(out_dir / "loss_curves.png", "loss curves")
    plt.close(fig)
    # emergence chart: metric means with CIs per arm
    metrics = [m for m in METRICS if any(arm_matrix(a, m) is not None for a in arms.values())]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        names, means, errs = [], [], [[], []]
        for name, arm in arms.items():
            y = arm_matrix(arm, m)
            if y is None:
                continue
            iv = stats.arm_interval(y)
            names.append(name)
            means.append(iv.mean)
            errs[0].append(max(0.0, iv.mean - iv.low))
            errs[1].append(max(0.0, iv.high - iv.mean))
        ax.bar(range(len(names)), means, yerr=errs, color=[f"C{i % 10}" for i in range(len(names))], capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
        ax.set_title(m, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Metric per arm, mean with 95% CI (emergence chart)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "metrics.png", dpi=110)
    doc.image(out_dir / "metrics.png", "metric bars with CIs")
    plt.close(fig)
    # primary metric vs LoRA rank
    points = [(arm.config.lora.r, name, stats.arm_interval(arm_matrix(arm, primary)))
              for name, arm in arms.items() if arm.config and arm_matrix(arm, primary) is not None]
    if points:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r, name, iv in points:
            ax.errorbar([r], [iv.mean], yerr=[[iv.mean - iv.low], [iv.high - iv.mean]], fmt="o", capsize=3)
            ax.annotate(name, (r, iv.mean), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("LoRA rank r")
        ax.set_ylabel(primary)
        ax.set_title(f"{primary} vs rank (95% CI)")
        fig.tight_layout()
        fig.savefig(out_dir / "metric_vs_rank.png", dpi=110)
        doc.image(out_dir / "metric_vs_rank.png", "metric vs rank")
        plt.close(fig)
