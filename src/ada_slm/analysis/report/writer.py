"""Study report: the seed's tables, regenerated with statistics, plus plots and the decision.

The report is a list of blocks (report_doc.Doc) rendered twice: Markdown (report.md) and a self-contained HTML page
with the images embedded (report.html). This module writes the header, the summary, the comparisons, the designs and
the example outputs, and puts the report together; report_decision writes the decision, criteria, power and rounds
sections, report_plots the plots.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from pathlib import Path

import numpy as np

from ada_slm.analysis.analysis import ArmComparison, ArmData, ArmResult, StudyAnalysis, analyse
from ada_slm.analysis.report.answer import render_answer
from ada_slm.analysis.report.decision import render_criteria, render_decision, render_power, render_rounds_or_why
from ada_slm.analysis.report.doc import Doc, ci4, components, f4, fmt_p, mean_sd, ratio_ci, shorten, signed
from ada_slm.analysis.report.plots import arm_matrix, plots
from ada_slm.errors import UserError
from ada_slm.files import atomic_write_text, iter_jsonl, read_json
from ada_slm.run.config import TrainConfig
from ada_slm.run.metrics import RUN_METRICS, SEED_METRICS
from ada_slm.stats import contrasts
from ada_slm.study.spec import BASE_ARM, RunSpec, Study


def describe(cfg: TrainConfig | None) -> str:
    return "base model, no adapter" if cfg is None else cfg.label()


def _verdict(c: contrasts.Comparison) -> str:
    return contrasts.verdict(c)


def comparisons_json(comparisons: dict) -> str:
    """comparisons.json: every arm's comparison with the baseline, per metric, for scripts (studies and compare)."""
    return json.dumps(
        {
            arm: {
                m: {
                    "delta": c.delta.mean,
                    "low": c.delta.low,
                    "high": c.delta.high,
                    "df": c.delta.df,
                    "p": c.p,
                    "p_holm": c.p_holm,
                    "p_perm": c.p_perm,
                    "p_perm_min": c.p_perm_min,
                    "test": c.test,
                    "ratio": c.ratio,
                    "ratio_note": c.ratio_note,
                    "supported": c.supported,
                    "holm_family": c.family,
                    "verdict": contrasts.verdict(c),
                    "significant": c.supported,
                    "pairing": c.pairing,
                    "item_clusters": c.n_clusters or None,
                    "effective_items": c.effective_items if math.isfinite(c.effective_items) else None,
                }
                for m, c in comp.comparisons.items()
            }
            for arm, comp in comparisons.items()
        },
        indent=2,
        allow_nan=True,
    )


def render_header(doc: Doc, a: StudyAnalysis):
    study = a.study
    doc.h(1, f"Study {study.name}")
    if study.description.strip():
        doc.p(study.description.strip())
    doc.p(
        f"Scale preset: {a.scale or 'as written (no preset)'} · seeds {', '.join(map(str, a.seeds))} · "
        f"runs complete {a.n_complete}/{a.n_runs}"
        + (f", failed {a.n_failed}" if a.n_failed else "")
        + f" · generated {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}"
    )
    if a.eval_info:
        g = a.eval_info["generation"]
        doc.p(
            f"Every arm: suite {a.eval_info['suite']} ({a.eval_info['n_items']} items), {g['mode']} generation, "
            f"max_new_tokens {g['max_new_tokens']}, eval batch size {g['batch_size']}. " + _loss_words(a)
        )


def _loss_words(a: StudyAnalysis) -> str:
    """What the loss columns are, from the configs that ran: the held-out loss is per answer token in every arm;
    the training loss is weighted as each arm's loss.normalisation says — comparable only where they agree."""
    kinds = sorted(
        {arm.config.loss.normalisation for arm in a.arms.values() if arm.config is not None and arm.n_complete}
    ) or ["token"]
    text = (
        "The held-out loss (the primary loss column) is the mean cross-entropy per answer token (prompt "
        "masked) in every arm, whatever it trained with. "
    )
    if kinds == ["token"]:
        return text + (
            "Training losses are per answer token over each optimizer step too, so they compare across "
            "arms whatever their micro-batch × accumulation split."
        )
    return text + (
        f"Training losses are weighted as each arm's loss.normalisation says ({', '.join(kinds)}): a "
        "micro_batch or sequence loss is not the same quantity as a per-token one, and a micro_batch "
        "loss changes with the split, so compare training losses only between arms of one kind."
    )


def render_summary(doc: Doc, a: StudyAnalysis):
    doc.h(2, "Full series summary")
    doc.p(
        f"Losses: mean ± seed-to-seed SD over the arm's runs. {a.primary}: mean [95 % CI] over runs and items, "
        "and the variance components of one arm — seed SD (training-run effect) vs item SD (spread of item "
        "means): a large seed SD asks for more seeds, a large item SD for more items."
    )
    doc.table(*summary_table(a))
    left_out = unreadable_runs(a)
    if left_out:
        doc.p(
            "Left out of every number in this report, because their files cannot be read (the run's state is "
            "'unreadable'; move the run's record.json and eval.jsonl away and `study run` redoes it): "
            + "; ".join(left_out)
            + "."
        )
    edited = [arm.edited for arm in a.data.values() if arm.edited]
    if edited:
        doc.p(
            "The study file was edited after these runs; every number and config here is of what ran "
            "(record.json): " + "; ".join(edited) + "."
        )


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
            vs = f"Δ {signed(c.delta)} ({contrasts.short_verdict(c)}); {ratio_ci(c)}"
        status = ", ".join(f"{v} {list(arm.states.values()).count(v)}" for v in sorted(set(arm.states.values())))
        rows.append(
            [
                name + (" (baseline)" if name == a.study.baseline else ""),
                describe(arm.config),
                mean_sd(arm.intervals.get("heldout_loss"), arm.components.get("heldout_loss")),
                mean_sd(arm.intervals.get("train_loss"), arm.components.get("train_loss")),
                ci4(iv),
                components(vc, a.primary in RUN_METRICS),
                vs,
                status,
            ]
        )
    return (
        [
            "arm",
            "config",
            "held-out loss",
            "final train loss",
            f"{a.primary} [95% CI]",
            "seed SD / item SD",
            "vs baseline",
            "runs",
        ],
        rows,
    )


def comparison_table(a: StudyAnalysis, comp: ArmComparison) -> tuple[list[str], list[list[str]]]:
    """One arm against the baseline: its header and one row per metric (item and run-level)."""
    rows = []
    for m, c in comp.comparisons.items():
        pct = f"{c.percent[0]:+.1f}% [{c.percent[1]:+.1f}, {c.percent[2]:+.1f}]" if c.percent else c.ratio_note
        ratio = ratio_ci(c)
        perm = f"{fmt_p(c.p_perm)} (≥ {c.p_perm_min:.3g})" if math.isfinite(c.p_perm) else "—"
        rows.append(
            [
                m,
                ci4(c.baseline),
                f4(c.baseline.mean + c.delta.mean),
                signed(c.delta),
                pct,
                ratio,
                f"{c.delta.df:.1f}",
                fmt_p(c.p_holm),
                perm,
                contrasts.short_verdict(c),
            ]
        )
    return (
        [
            "metric",
            f"{comp.against} [CI]",
            comp.arm,
            "Δ [95% CI]",
            "%",
            "×",
            "d.f.",
            "p (t, Holm)",
            "perm p (min)",
            "difference",
        ],
        rows,
    )


def samples_note(c: contrasts.Comparison | None) -> str:
    """How the runs and items of a comparison were taken (the study's pairing and item clusters), in one clause."""
    if c is None:
        return ""
    items = f"{c.delta.n_items} items"
    if c.n_clusters and c.n_clusters < c.delta.n_items:
        items += f" in {c.n_clusters} clusters, worth ≈ {c.effective_items:.0f} independent items"
    return f" Runs {c.pairing}; {items}."


def no_comparison_note(arm: ArmResult) -> str:
    states = ", ".join(f"seed {k}: {v}" for k, v in sorted(arm.states.items()))
    return f"No finished runs to compare ({states})."


def equivalence_note(a: StudyAnalysis, comp: ArmComparison) -> str | None:
    if not comp.equivalence:
        return None
    return (
        "Equivalence (TOST, 90 % CI of Δ inside ±margin; margin = "
        + ("the study's equivalence_margins or " if a.study.equivalence_margins else "")
        + "10 % of the baseline's mean): "
        + "; ".join(
            f"{m} ±{e.margin:.4g}: [{e.low:+.4f}, {e.high:+.4f}] → "
            + ("equivalent" if e.equivalent else "not shown equivalent")
            + f" (p {fmt_p(e.p)})"
            for m, e in comp.equivalence.items()
        )
        + "."
    )


def render_comparisons(doc: Doc, a: StudyAnalysis):
    baseline = a.study.baseline
    doc.h(2, f"Per-metric comparison against {baseline}")
    doc.p(
        "Each table: one arm against the baseline on every metric. 'supported' = Holm p < 0.05 over the metrics "
        "of that comparison (a row's own family); '—' = these runs and items cannot tell the arms apart, which is "
        "no claim that they are equal. How the intervals are made: 'How to read this' at the end."
    )
    for name, arm in a.arms.items():
        if name == baseline:
            continue
        comp = a.comparisons.get(name)
        doc.h(3, f"{name} vs {baseline}")
        if comp is None:
            doc.p(no_comparison_note(arm))
            continue
        doc.p(factor_note(comp, name) + samples_note(comp.comparisons.get(a.primary)))
        doc.table(*comparison_table(a, comp))
        note = equivalence_note(a, comp)  # None without equivalence tests
        if note is not None:
            doc.p(note)


def factor_note(comp, name: str) -> str:
    fd = comp.factors
    label = ", ".join(f"{k}: {v[1]} → {v[0]}" for k, v in fd.factors.items()) or "nothing"
    note = f"Differs in {label}."
    if name == BASE_ARM:
        note += " (The base model: the untrained floor.)"
    elif fd.confounded:
        note += " CONFOUNDED: more than one factor changes, so this difference cannot be attributed to any one of them."
    if "batch split" in fd.factors and fd.same_steps:
        note += (
            " The micro × accum split keeps the effective batch, the loss is normalised per target token over "
            "the step, and both arms executed their steps grouped by length: a seed of one is the same run as "
            "that seed of the other, number for number, so any difference here is not an effect of the split."
        )
    elif "batch split" in fd.factors and fd.split_changes_objective:
        note += (
            " The loss is normalised per micro-batch (loss.normalisation micro_batch, the seed study's loss): "
            "a micro-batch of 1 weighs every sequence the same, a larger one weighs tokens, so the split is a "
            "real factor here. Equality of two arms is claimed only by the equivalence test."
        )
    elif "batch split" in fd.factors:
        note += (
            " The micro × accum split keeps the effective batch; with the per-token loss both splits train "
            "the same objective, and where both arms execute their steps grouped by length (config "
            "`execution`, the default) they compute the same steps: the split is then no difference at all "
            "(executed as configured with LoRA dropout, not the same run). Equality of two arms is claimed "
            "only by the equivalence test, never from 'not distinguishable'."
        )
    return note


def render_designs(doc: Doc, a: StudyAnalysis):
    doc.h(2, "Factorial analysis")
    if not a.factorials:
        doc.p(
            "No four trained arms form a full 2 × 2 with everything else in the config equal, so main effects "
            "and interactions cannot be separated; pairwise comparisons that change two factors at once are "
            "labelled confounded."
        )
    for f in a.factorials:
        names = {
            "main effect 1": f"main effect of {f.factor1}",
            "main effect 2": f"main effect of {f.factor2}",
            "interaction": "interaction",
        }
        doc.p(
            f"{f.factor1} ({f.levels1[0]} → {f.levels1[1]}) × {f.factor2} ({f.levels2[0]} → {f.levels2[1]}) on "
            f"{a.primary}, arms {', '.join(f.cells[k] for k in sorted(f.cells))} (contrasts of arm means, "
            "same seed-level t rule, Holm over the three effects):"
        )
        doc.table(
            ["effect", "estimate [95% CI]", "p (Holm)", "supported"],
            [[names[e.name], signed(e.interval), fmt_p(e.p), "yes" if e.supported else "no"] for e in f.effects],
        )
        supported = [names[e.name] for e in f.effects if e.supported]
        doc.p(
            "What explains the differences: "
            + (
                ", ".join(supported)
                if supported
                else "none of the effects is distinguishable from zero with these runs"
            )
            + "."
        )
    doc.h(2, "Rank: is there a Goldilocks zone?")
    g = a.goldilocks
    if g is None or len(g.by_rank) < 3:
        doc.p("Not supported by the data: fewer than three ranks at otherwise equal settings.")
    else:
        doc.p(f"Ranks {', '.join(f'{r} ({n})' for r, n in g.by_rank.items())} on {a.primary}: {g.text}.")


def render_how_to_read(doc: Doc, a: StudyAnalysis):
    """The long explanations, once, at the end of the report."""
    assert isinstance(a.study, Study)  # a study's report (compare/report.py writes its own)
    doc.h(2, "How to read this")
    doc.p(
        f"The training run is the unit: Δ is the difference of arm means over the items both arms share; its "
        f"95 % CI and p come from a {contrasts.TEST_NAME} — the seed part is the spread of per-run means, the item "
        "part the arm × item interaction, so the interval is about new runs and new items, not only these. "
        "p is Holm-corrected across the metrics of one comparison; 'supported' = Holm p < 0.05 (the one rule "
        "used everywhere in this report), and every verdict names the family its p was corrected over: the "
        "same Δ is corrected over the metrics of its comparison here and over the decision's questions in the "
        "Decision, so the two verdicts can differ. Arms that share seeds are compared seed by seed (the study's "
        f"`pairing: {a.study.pairing}`: same-seed runs share data order, LoRA init and items, so the interval is "
        "of the same-seed differences) and items of one template are one cluster of the item part (`item_clusters: "
        f"{a.study.item_clusters}`); each table says what it used. 'perm p' is the exact permutation test of run "
        "labels, or with pairs the sign-flip test of the same-seed differences (its smallest possible value in "
        "brackets: 3 vs 3 runs have 20 arrangements, ≥ 0.1; 3 pairs 8 sign patterns, ≥ 0.25). Held-out "
        "loss, final train loss and tokens/s are one number per run, tested the same way (lower loss is "
        "better). % and × are shown only when the baseline's CI excludes 0 and its mean is above the base "
        "model's noise floor; otherwise 'n/a (baseline ≈ 0)'. 'not distinguishable' = these runs and items "
        "cannot tell the arms apart — it is not a claim that they are equal."
    )


def build_report(
    study: Study, specs: list[RunSpec], scale: str | None, out_dir: Path, analysis: StudyAnalysis | None = None
) -> Path:
    a = analysis or analyse(study, specs, scale)
    arms = a.data
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = Doc()
    render_header(doc, a)
    render_answer(doc, a, out_dir)
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
    plots(doc, arms, a.primary, out_dir)
    _examples(doc, arms, specs)
    render_how_to_read(doc, a)
    md_path = out_dir / "report.md"
    atomic_write_text(md_path, doc.markdown())
    atomic_write_text(out_dir / "report.html", doc.html(f"Study {study.name}"))
    atomic_write_text(out_dir / "comparisons.json", comparisons_json(a.comparisons))
    return md_path


def summary(a: StudyAnalysis) -> str:
    """What the CLI prints: the series summary, designs, decision and power, as Markdown."""
    doc = Doc()
    render_answer(doc, a)
    render_summary(doc, a)
    render_designs(doc, a)
    render_decision(doc, a)
    render_criteria(doc, a)
    render_power(doc, a)
    return doc.markdown()


def _seed_compatible(doc: Doc, arms: dict[str, ArmData]):
    doc.h(2, "Our metrics | seed-compatible scoring")
    doc.p(
        "The seed study's scorer (distinct marker-list entries found as substrings ÷ word count; certainty "
        "= distinct glyphs / 5; protocol 1 / 0.5 / 0) applied to the same outputs. It differs from AGL.md's "
        "metrics in its marker lists, substring matching and ignoring repeats, so the two columns are not "
        "interchangeable."
    )
    rows = []
    for m in SEED_METRICS:
        row = [m]
        for arm in arms.values():
            y = arm_matrix(arm, m)
            ours = float(np.nanmean(y)) if y is not None else None
            s = arm.seed_scores.get(m)
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
            rows = [
                [str(r.get("id")), shorten(str(r.get("prompt")), 60), shorten(str(r.get("output")), 80)]
                for _, r in itertools.islice(iter_jsonl(spec.run_dir / "eval.jsonl"), 3)
            ]
        except UserError:  # changed since the analysis read it
            continue
        doc.h(3, f"{name} (seed {spec.seed})")
        doc.table(["item", "prompt", "output"], rows)
