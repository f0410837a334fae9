"""The report of `ada-slm compare`: report.md, report.html and comparisons.json, built from the study report's own
blocks and tables (report_doc.Doc, report.comparison_table) over the imported runs' analysis."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from ada_slm.analysis.compare.analysis import CompareResult
from ada_slm.analysis.compare.readers import RUN_ITEM
from ada_slm.analysis.report import doc as report_doc
from ada_slm.analysis.report import writer as report
from ada_slm.errors import UserError
from ada_slm.files import atomic_write_text
from ada_slm.stats import contrasts

SHOW_DROPPED = 12  # dropped item ids listed per run (the rest counted)
TOOLS = {
    "lm-eval": "lm-evaluation-harness",
    "inspect": "Inspect",
    "trainer": "HF Trainer / TRL (trainer_state.json)",
    "ada-slm": "ada-slm",
    "table": "a table",
}


def _items_note(result: CompareResult) -> list[str]:
    notes = []
    for m, mi in result.matched.metrics.items():
        if mi.shared == [RUN_ITEM]:
            notes.append(f"{m}: one number per run.")
            continue
        line = f"{m}: {len(mi.shared)} of {mi.n_items} items scored in every run"
        if mi.dropped:
            line += " — left out: " + "; ".join(
                f"{run} lacks {len(items)} ({', '.join(items[:SHOW_DROPPED])}"
                + (f", … {len(items) - SHOW_DROPPED} more" if len(items) > SHOW_DROPPED else "")
                + ")"
                for run, items in mi.dropped.items()
            )
        else:
            line += " (none dropped)"
        notes.append(line + ".")
    for m, runs in result.matched.left_out.items():
        notes.append(f"{m}: not compared, missing in {', '.join(runs)}.")
    return notes


def _model(r) -> str:
    # whole: a setting cut off here may be the one that tells two runs apart (a seed at the end of a long line)
    parts = [f"{k} {v}" for k, v in r.model.items() if v not in (None, "", {}, [])]
    return "; ".join(parts) or "—"


def summary_table(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    a = result.analysis
    rows = []
    for name, arm in a.arms.items():
        iv, vc = arm.intervals.get(a.primary), arm.components.get(a.primary)
        comp = a.comparisons.get(name)
        c = comp.comparisons.get(a.primary) if comp else None
        vs = "—"
        if c:
            vs = f"Δ {report_doc.signed(c.delta)} ({contrasts.short_verdict(c)}); {report_doc.ratio_ci(c)}"
        rows.append(
            [
                name + (" (baseline)" if name == result.spec.baseline_arm else ""),
                str(arm.n_complete),
                report_doc.ci4(iv),
                report_doc.components(vc, iv is not None and iv.n_items <= 1),
                vs,
            ]
        )
    return ["arm", "runs", f"{a.primary} [95% CI]", "run SD / item SD", "vs baseline"], rows


def equivalence_note(comp) -> str:
    return (
        "Equivalence (TOST, 90 % CI of Δ inside ±margin): "
        + "; ".join(
            f"{m} ±{e.margin:.4g}: [{e.low:+.4f}, {e.high:+.4f}] → "
            + ("equivalent" if e.equivalent else "not shown equivalent")
            + f" (p {report_doc.fmt_p(e.p)})"
            for m, e in comp.equivalence.items()
        )
        + "."
    )


def provenance(result: CompareResult) -> str:
    """The line under the title: which tool made the runs, the arms, the baseline and the primary metric."""
    runs = result.matched.runs
    source = next(iter(runs.values()))[0].source
    allowed = result.spec.allow_differing
    return (
        f"Runs made with {TOOLS[source]}, read by `ada-slm compare` · arms {', '.join(runs)} · baseline "
        f"{result.spec.baseline_arm} · primary metric {result.analysis.primary}"
        + (f" · allowed to differ between runs (the factor compared): {', '.join(allowed)}" if allowed else "")
    )


def runs_table(result: CompareResult) -> tuple[list[str], list[list[str]]]:
    return ["arm", "run", "model / settings"], [
        [arm, r.name, _model(r)] for arm, rs in result.matched.runs.items() for r in rs
    ]


def render(result: CompareResult) -> report_doc.Doc:
    a, spec = result.analysis, result.spec
    baseline = spec.baseline_arm
    doc = report_doc.Doc()
    doc.h(1, f"Comparison {spec.name}")
    if spec.description.strip():
        doc.p(spec.description.strip())
    doc.p(f"{provenance(result)} · generated {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    doc.table(*runs_table(result))
    doc.h(2, "Items")
    doc.p(
        "Items are matched by id across every run; only items scored in every run are compared. "
        + " ".join(_items_note(result))
    )
    if result.matched.lower_is_better:
        doc.p(f"Lower is better for {', '.join(result.matched.lower_is_better)}.")
    doc.h(2, "Summary")
    doc.p(
        f"{a.primary}: mean [95 % CI] over runs and items, and the variance components of one arm — run SD "
        "(run-to-run effect) vs item SD (spread of item means): a large run SD asks for more runs, a large item "
        "SD for more items."
    )
    doc.table(*summary_table(result))
    doc.h(2, f"Per-metric comparison against {baseline}")
    doc.p(
        f"The run is the unit: Δ is the difference of arm means over the shared items; its 95 % CI and p come "
        f"from a {contrasts.TEST_NAME} — the run part is the spread of per-run means, the item part the arm × item "
        "interaction, so the interval is about new runs and new items, not only these. p is Holm-corrected "
        "across the metrics of one comparison; 'real' = Holm p < 0.05. 'perm p' is the exact permutation test "
        "of run labels (its smallest possible value in brackets). With one run in an arm there is no "
        "run-to-run variance to estimate and no test. 'not distinguishable' = these runs and items cannot tell "
        "the arms apart — it is not a claim that they are equal; only the equivalence test claims that."
    )
    for name in a.arms:
        if name == baseline:
            continue
        comp = a.comparisons.get(name)
        doc.h(3, f"{name} vs {baseline}")
        if comp is None or not comp.comparisons:
            doc.p("Nothing to compare.")
            continue
        doc.table(*report.comparison_table(a, comp))
        if comp.equivalence:
            doc.p(equivalence_note(comp))
    doc.h(2, "Power")
    pw = a.power
    if pw is None:
        doc.p(f"Not estimable: needs at least two runs in the baseline and in another arm on {a.primary}.")
    else:
        i = pw.inputs
        doc.p(
            f"By simulation of the same run-level rule (4000 simulated comparisons per point) from these runs' "
            f"variance components on {pw.metric}: SD of one run's mean {i.run_mean_sd:.4f}, arm × item SD "
            f"{i.interaction_sd:.4f}, residual SD {i.residual_sd:.4f}, {i.n_items} items; α = {pw.alpha:.3g}. "
            f"With the current {pw.n_seeds} runs per arm the smallest difference detected with 80 % power is "
            f"{pw.detectable[pw.n_seeds]:.4f}."
        )
        doc.table(
            ["runs per arm", "smallest Δ at 80 % power"], [[str(k), f"{v:.4f}"] for k, v in pw.detectable.items()]
        )
        if pw.min_effect:
            doc.p(
                f"Runs per arm to detect Δ = {pw.min_effect:g} with 80 % power: "
                + (str(pw.seeds_for_min_effect) if pw.seeds_for_min_effect else "more than 100")
                + "."
            )
    return doc


def write_report(result: CompareResult, out_dir: Path, force: bool = False) -> Path:
    """report.md, report.html and comparisons.json (the study report's format) in `out_dir`; a folder that
    already holds one of them is refused unless `force` (a report is replaced only when asked to)."""
    doc = render(result)
    md = Path(out_dir) / "report.md"
    there = [n for n in ("report.md", "report.html", "comparisons.json") if os.path.lexists(Path(out_dir) / n)]
    if there and not force:
        raise UserError(
            f"{out_dir}: already holds a report ({', '.join(there)}); give another --out, or --force to replace it"
        )
    atomic_write_text(md, doc.markdown())
    atomic_write_text(md.with_suffix(".html"), doc.html(f"Comparison {result.spec.name}"))
    atomic_write_text(md.with_name("comparisons.json"), report.comparisons_json(result.analysis.comparisons))
    return md
