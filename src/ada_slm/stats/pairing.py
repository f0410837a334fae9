"""How two arms' runs and items relate, fixed by the study's design before any score is seen — the samples a
contrast (stats.contrast) is computed over.

Runs: arms that share a seed share its data order, its LoRA initialisation and the items they are scored on, so
same-seed runs are correlated (measured on phase14d's cpu runs: v9B vs v9C r = +0.87, v9C vs v9D +1.00 over the
three seeds). `pairing: seed` contrasts the same-seed differences — the seed is a block — instead of treating
the runs as independent samples. Items: a generated suite is templates × items, and items of one template share
its effect, so the item term samples templates (clusters), not items (`clustered_mean_variance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def clustered_mean_variance(d: np.ndarray, clusters: np.ndarray | None) -> tuple[np.ndarray, int]:
    """(variance of the mean over items of d[..., item], the number of clusters) with the items' clusters
    (templates) as the units sampled: Σ_g (Σ_{i∈g} (dᵢ − d̄))² · G / (G − 1) / n² — the cluster-robust (CR1)
    variance, which is var(d) / n when every item is its own cluster. Items of one template share its effect,
    so 80 templates × 12 items tell less than 960 independent items."""
    n = d.shape[-1]
    if clusters is None:
        return d.var(-1, ddof=1) / n, n
    labels, index = np.unique(clusters, return_inverse=True)
    g = len(labels)
    if g < 2:
        return d.var(-1, ddof=1) / n, n  # one cluster: nothing to be robust over; items as they are
    centred = d - d.mean(-1, keepdims=True)
    totals = centred @ np.eye(g)[index]  # (..., clusters): each cluster's summed deviation
    return (totals**2).sum(-1) * g / (g - 1) / (n * n), g


def finite_columns(mats: list[np.ndarray]) -> np.ndarray:
    """The items (columns) scored in every run of every one of `mats`."""
    return np.all([np.isfinite(m).all(axis=-2) for m in mats], axis=0)


def align(
    a: dict[int, dict[str, float | None]], b: dict[int, dict[str, float | None]]
) -> tuple[np.ndarray, np.ndarray]:
    """Matrices A[run, item], B[run, item] over the items every run of both arms has (runs need not pair)."""
    A, B, _ = align_items(a, b)
    return A, B


def align_items(a: dict[int, dict[str, float | None]], b: dict[int, dict[str, float | None]]):
    """`align`, and the item ids of the columns."""
    if not a or not b:
        return np.empty((0, 0)), np.empty((0, 0)), []
    items = sorted(set.intersection(*(set(x[s]) for x in (a, b) for s in x)))

    def mat(x):
        return np.array([[np.nan if x[s][i] is None else x[s][i] for i in items] for s in sorted(x)], dtype=float)

    return mat(a), mat(b), items


PAIRINGS = ("seed", "none")
# Fewest shared seeds that are paired: k pairs leave k − 1 d.f. for the seed part against ≈ 2k − 2 unpaired, so at
# 2 seeds (1 d.f.: t quantile 12.7 against 4.3) pairing pays only for near-identical same-seed runs; from 3 seeds it
# pays from a seed correlation of ≈ 0.6 (measured between phase14d's arms: 0.87–1.00). Fixed, like the pairing,
# before any score is seen: it is a count of the design's seeds.
MIN_PAIRS = 3


@dataclass
class Design:
    """How two arms' runs and items relate, fixed before any score is seen: `pairing` 'seed' pairs the runs of
    the seeds both arms have (they share data order, LoRA init and items: same-seed runs are correlated), 'none'
    treats the runs as independent; `clusters` maps item id -> its template (or category): items of one template
    are a cluster in the item term."""

    pairing: str = "none"
    clusters: dict[str, str] | None = None


@dataclass
class Matrices:
    """Two arms' Y[run, item] over their shared finite items, ready for a contrast: all runs (A, B), and — when
    paired — the same-seed rows (PA, PB) in seed order; `labels` the items' clusters (None: independent)."""

    A: np.ndarray
    B: np.ndarray
    labels: np.ndarray | None
    PA: np.ndarray | None = None
    PB: np.ndarray | None = None

    @property
    def paired(self) -> bool:
        return self.PA is not None

    @property
    def pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(PA, PB) when paired (matrices sets both), else None."""
        return None if self.PA is None or self.PB is None else (self.PA, self.PB)


def matrices(a: dict, b: dict, design: Design | None = None) -> Matrices | None:
    """The Matrices of arms a and b (run seed -> item id -> score) under `design`; None without shared data.
    Pairs only where at least MIN_PAIRS seeds are shared."""
    design = design or Design()
    A, B, items = align_items(a, b)
    if A.size == 0:
        return None
    labels = None if design.clusters is None else np.array([design.clusters.get(i, i) for i in items], dtype=object)
    keep = finite_columns([A, B])
    if not keep.any():
        return None
    out = Matrices(A[:, keep], B[:, keep], None if labels is None else labels[keep])
    shared = sorted(set(a) & set(b))
    if design.pairing == "seed" and len(shared) >= MIN_PAIRS:
        rows_a, rows_b = sorted(a), sorted(b)
        out.PA = out.A[[rows_a.index(k) for k in shared]]
        out.PB = out.B[[rows_b.index(k) for k in shared]]
    return out
