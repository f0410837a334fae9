"""The report's first screen: the answer — each decision question in one line (its answer, Δ with its interval, and
what would change it), the recommended next run, the criteria met and not met — then a forest plot of every Δ on
the decision metric. The details follow in the rest of the report; `study serve` shows the same lines."""

from __future__ import annotations

import math
from pathlib import Path

from ada_slm.analysis.analysis import Answer, StudyAnalysis, sample_design
from ada_slm.analysis.criteria import MET, NOT_MET, judge_all
from ada_slm.analysis.report.doc import Doc, signed
from ada_slm.stats import contrasts
from ada_slm.stats.power_simulation import seeds_needed
from ada_slm.study.spec import Study

MAX_RUNS_SUGGESTED = 30  # "runs per arm to detect this Δ" is searched up to here; beyond, more items are the way


def _first_sentence(text: str) -> str:
    """The reason a question is not asked, to its first clause (the whole reason is in the Decision section)."""
    text = text.removeprefix("not asked: ").removeprefix("not asked ")
    cut = min((i for i in (text.find(" — "), text.find(". ")) if i > 0), default=len(text))
    return text[:cut] if cut < len(text) else text


def _what_would_change(a: StudyAnalysis, x: Answer) -> str:
    """For an open answer: the runs per arm that would detect the observed |Δ| at 80 % power (this study's
    variance components, its pairing), or that more runs alone would not."""
    c, pw = x.comparison, a.power
    if c is None or pw is None or not math.isfinite(c.delta.mean) or c.delta.mean == 0:
        return ""
    if x.test == "equivalent":
        return " A narrower interval (more runs or items) could show equivalence."
    needed = seeds_needed(
        pw.inputs, abs(c.delta.mean), alpha=pw.alpha, max_seeds=MAX_RUNS_SUGGESTED, n_sim=1000, paired=pw.paired
    )
    if needed is None:
        return (
            f" A Δ of this size would need more than {MAX_RUNS_SUGGESTED} runs per arm at 80 % power: "
            "more items, or a larger effect."
        )
    return f" ≈ {needed} runs per arm would detect a Δ of this size with 80 % power."


def answer_lines(a: StudyAnalysis) -> list[str]:
    """One line per question, then the next run and the criteria: what the top of report.md and the page say."""
    lines = []
    d = a.decision
    for x in d.answers if d else []:
        head = f"**{x.question}** ({x.compare} vs {x.against}): "
        if x.not_asked:
            lines.append(head + f"not asked — {_first_sentence(x.not_asked)}.")
            continue
        c, e = x.comparison, x.equivalence
        if c is None:
            lines.append(head + "no finished runs to answer it yet.")
            continue
        if x.test == "equivalent" and e is not None:
            evidence = (
                f"Δ {signed(c.delta)}; TOST 90 % CI [{e.low:+.4f}, {e.high:+.4f}] against ±{e.margin:.4f} "
                f"(Holm p {contrasts.format_p(x.p_holm)})"
            )
        else:
            assert d is not None  # x is one of its answers
            evidence = f"Δ {signed(c.delta)} on {d.metric} (Holm p {contrasts.format_p(x.p_holm)})"
        pairing = f", {c.pairing}" if c.pairing != "unpaired" else ""
        other_way = x.test == "better" and not x.yes and c.supported  # a clear difference, the wrong way
        change = "" if x.yes or other_way else _what_would_change(a, x)
        lines.append(
            head
            + f"**{x.answer}**"
            + (" — the other direction is supported" if other_way else "")
            + f" — {evidence}{pairing}"
            + (" — confounded" if x.confounded else "")
            + "."
            + change
        )
    if d is not None:
        lines.append(f"**Next run:** {d.rule.recommend}" if d.rule else "**Next run:** no rule matches these answers.")
    assert isinstance(a.study, Study)  # the answer is a study's (a comparison of imported runs has none)
    if a.study.criteria:
        judged = judge_all(a.study, a.data, sample_design(a.study, a.data))
        met = [j.criterion.text for j in judged if j.verdict == MET]
        not_met = [j.criterion.text for j in judged if j.verdict == NOT_MET]
        open_ = len(judged) - len(met) - len(not_met)
        lines.append(
            f"**Criteria:** met {len(met)} of {len(judged)}"
            + (f" ({'; '.join(met)})" if met else "")
            + f"; not met {len(not_met)}"
            + (f" ({'; '.join(not_met)})" if not_met else "")
            + f"; undecided {open_}."
        )
    return lines


def forest_rows(a: StudyAnalysis) -> list[tuple[str, contrasts.Interval, bool]]:
    """(label, Δ with its CI, supported) on the decision metric: every arm against the baseline."""
    rows = []
    for name, comp in a.comparisons.items():
        c = comp.comparisons.get(a.primary)
        if c is not None and math.isfinite(c.delta.low):
            rows.append((f"{name} − {comp.against}", c.delta, c.supported))
    return rows


def render_answer(doc: Doc, a: StudyAnalysis, out_dir: Path | None = None):
    """The answer block, and (with `out_dir`) the forest plot drawn there."""
    doc.h(2, "The answer")
    lines = answer_lines(a)
    if not lines:
        doc.p(f"The study asks no decision questions; the comparisons with {a.study.baseline} on {a.primary} follow.")
    for line in lines:
        doc.p(line)
    rows = forest_rows(a)
    if out_dir is not None and rows:
        _forest(doc, a.primary, rows, out_dir)


def _forest(doc: Doc, metric: str, rows, out_dir: Path):
    import matplotlib  # heavy: only a written report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    for i, (_label, iv, supported) in enumerate(reversed(rows)):
        colour = "C0" if supported else "0.5"
        ax.errorbar([iv.mean], [i], xerr=[[iv.mean - iv.low], [iv.high - iv.mean]], fmt="o", color=colour, capsize=3)
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel(f"Δ {metric} (95 % CI); blue: supported")
    fig.tight_layout()
    path = out_dir / "forest.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    doc.image(path, f"Δ {metric} of every arm against the baseline, with 95 % CIs")
