"""Contrasts over several arms, judged by the same seed-level rule as a pair (`stats`): the main effects and
interaction of a full 2 × 2, and an interior optimum of an ordered factor (rank 16/32/48: 'Goldilocks').
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ada_slm.stats.contrasts import (
    ALPHA,
    N_BOOT,
    Interval,
    apply_holm,
    compare,
    contrast,
    finite_items,
    holm,
    t_interval,
    t_test,
    verdict,
)


@dataclass
class Effect:
    name: str
    interval: Interval
    p: float = math.nan

    @property
    def supported(self) -> bool:
        return bool(math.isfinite(self.p) and self.p < ALPHA)


def _matrices(cells: list[dict[int, dict[str, float | None]]]) -> list[np.ndarray]:
    items = sorted(set.intersection(*(set(c[s]) for c in cells for s in c)))
    mats = [
        np.array([[np.nan if c[s][i] is None else c[s][i] for i in items] for s in sorted(c)], dtype=float)
        for c in cells
    ]
    return finite_items(mats)


def factorial_2x2(
    cells: dict[tuple, dict[int, dict[str, float | None]]], seed: int = 0, n_boot: int = N_BOOT
) -> list[Effect]:
    """Main effects and interaction of a full 2 × 2. `cells[(lo|hi of factor 1, lo|hi of factor 2)]` holds
    run -> item -> score. Each effect is a contrast of the four arm means with the seed and item parts of
    `stats.contrast`; its p is Holm-corrected over the three effects."""
    mats = _matrices([cells[k] for k in [(0, 0), (0, 1), (1, 0), (1, 1)]])
    contrasts = {
        "main effect 1": [-0.5, -0.5, 0.5, 0.5],
        "main effect 2": [-0.5, 0.5, -0.5, 0.5],
        "interaction": [1.0, -1.0, -1.0, 1.0],
    }
    n_s, n_i = min(m.shape[0] for m in mats), mats[0].shape[1]
    out, ps = [], {}
    for name, c in contrasts.items():
        est, se, df = contrast(mats, c)
        ps[name] = float(t_test(est, se, df)[0])
        out.append(Effect(name, t_interval(est, se, df, n_s, n_i)))
    adjusted = holm(ps)
    for e in out:
        e.p = adjusted[e.name]
    return out


def goldilocks(levels: list[tuple[float, dict]], seed: int = 0, higher_is_better: bool = True) -> tuple[bool, str]:
    """Ordered factor (e.g. rank 16/32/48): an interior optimum is claimed only when a middle level is better
    than both neighbours in the metric's better direction (lower for a loss), each comparison supported by the
    rule (Holm over the two)."""
    if len(levels) < 3:
        return False, "not supported by the data (needs at least three levels)"
    sign = 1.0 if higher_is_better else -1.0
    word = "above" if higher_is_better else "below"
    for j in range(1, len(levels) - 1):
        (lo_v, lo), (mid_v, mid), (hi_v, hi) = levels[j - 1], levels[j], levels[j + 1]
        left, right = compare(mid, lo, "m", seed=seed), compare(mid, hi, "m", seed=seed)
        if not (left and right):
            continue
        apply_holm({"l": left, "r": right}, "the two sides of the peak")
        if left.supported and right.supported and sign * left.delta.mean > 0 and sign * right.delta.mean > 0:
            return True, (
                f"interior optimum at {mid_v:g} ({word} both neighbours): Δ vs {lo_v:g} "
                f"{left.delta.mean:+.4f} [{left.delta.low:+.4f}, {left.delta.high:+.4f}], vs {hi_v:g} "
                f"{right.delta.mean:+.4f} [{right.delta.low:+.4f}, {right.delta.high:+.4f}]; "
                f"{verdict(left)}, {verdict(right)}"
            )
    return False, (
        "not supported by the data (no middle level is "
        + ("better" if higher_is_better else "better (lower)")
        + " than both neighbours by the seed-level test)"
    )
