"""The report's plots (PNG files beside report.md, embedded in report.html): loss curves, the metric bars with CIs
per arm (emergence chart) and the primary metric against LoRA rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ada_slm.analysis.arms import ArmData, matrix
from ada_slm.analysis.report.doc import Doc
from ada_slm.run.metrics import METRICS
from ada_slm.run.records import RunRecord
from ada_slm.stats import contrasts


def arm_matrix(arm: ArmData, metric: str) -> np.ndarray | None:
    return matrix(arm.scores.get(metric, {}))


def plots(doc: Doc, arms: dict[str, ArmData], primary: str, out_dir: Path):
    """The "Plots" section: draws each plot into out_dir and adds it to `doc`."""
    import matplotlib  # heavy, and only a report draws: imported when one is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc.h(2, "Plots")
    _loss_curves(doc, arms, out_dir, plt)
    _metric_bars(doc, arms, out_dir, plt)
    _metric_vs_rank(doc, arms, primary, out_dir, plt)


def _loss_curves(doc: Doc, arms: dict[str, ArmData], out_dir: Path, plt):
    fig, ax = plt.subplots(figsize=(8, 4))
    drew = False
    for i, (name, arm) in enumerate(arms.items()):
        for seed, rec in sorted(arm.records.items()):
            if not isinstance(rec, RunRecord) or rec.train is None:  # an imported run (compare) has no steps
                continue
            steps = rec.train.steps
            colour = f"C{i % 10}"
            ax.plot(
                [s.step for s in steps],
                [s.loss for s in steps],
                color=colour,
                alpha=0.5,
                label=f"{name} train" if seed == min(arm.records) else None,
            )
            val = rec.train.val
            if val:
                ax.plot(
                    [v.step for v in val],
                    [v.loss for v in val],
                    "o--",
                    color=colour,
                    label=f"{name} held-out" if seed == min(arm.records) else None,
                )
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


def _metric_bars(doc: Doc, arms: dict[str, ArmData], out_dir: Path, plt):
    """The emergence chart: metric means with CIs per arm."""
    metrics = [m for m in METRICS if any(arm_matrix(a, m) is not None for a in arms.values())]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        names, means = [], []
        errs: list[list[float]] = [[], []]
        for name, arm in arms.items():
            y = arm_matrix(arm, m)
            if y is None:
                continue
            iv = contrasts.arm_interval(y)
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


def _metric_vs_rank(doc: Doc, arms: dict[str, ArmData], primary: str, out_dir: Path, plt):
    points = [
        (arm.config.lora.r, name, contrasts.arm_interval(y))
        for name, arm in arms.items()
        if arm.config and (y := arm_matrix(arm, primary)) is not None
    ]
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
