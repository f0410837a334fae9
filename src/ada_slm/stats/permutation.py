"""Exact seed-level permutation tests: the training run is what gets shuffled (run labels between two arms), or,
for runs paired by seed, the sign of each pair's difference. The number of arrangements bounds the p-value from
below — 3 vs 3 runs have 20 arrangements (p ≥ 0.1), 3 pairs have 8 sign patterns (p ≥ 0.25) — and the report
prints that bound beside it."""

from __future__ import annotations

import itertools
import math

import numpy as np

N_PERM = 10000  # above this many arrangements the permutation p is a Monte Carlo estimate


def permutation_p(run_a: np.ndarray, run_b: np.ndarray, seed: int = 0, n_perm: int = N_PERM) -> tuple[float, float]:
    """(p, smallest possible p) of an exact two-sided permutation test of run labels on per-run means: the
    training run is what gets shuffled. 3 vs 3 runs have 20 arrangements, so p ≥ 0.1."""
    pooled, n_a = np.concatenate([run_a, run_b]), len(run_a)
    n = len(pooled)
    total = math.comb(n, n_a)
    if total <= n_perm:
        idx = np.array(list(itertools.combinations(range(n), n_a)))
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((n_perm, n)), axis=1)[:, :n_a]
    in_a = np.zeros((len(idx), n), bool)
    np.put_along_axis(in_a, idx, True, axis=1)
    stat = np.abs((in_a * pooled).sum(1) / n_a - (~in_a * pooled).sum(1) / (n - n_a))
    observed = abs(run_a.mean() - run_b.mean())
    p = float(np.mean(stat >= observed - 1e-12 * max(1.0, abs(observed))))
    smallest = (2 if n_a == n - n_a else 1) / total
    return p, smallest


def sign_flip_p(differences: np.ndarray, seed: int = 0, n_perm: int = N_PERM) -> tuple[float, float]:
    """(p, smallest possible p) of an exact two-sided sign-flip test of per-seed paired differences of run means:
    under no effect each seed's difference is as likely to have either sign."""
    n = len(differences)
    if 2**n <= n_perm:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_perm, n))
    stat = np.abs((signs * differences).mean(1))
    observed = abs(differences.mean())
    p = float(np.mean(stat >= observed - 1e-12 * max(1.0, observed)))
    return p, 2 / 2**n
