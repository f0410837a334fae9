"""Seeds as blocks and items in clusters (analysis.pairing), calibrated by simulation at the designs users run:
3 runs per arm (and unequal runs: 3 vs 2, 4 vs 3), shared items, seed correlation 0, 0.5 and 0.95; generated
suites of templates × items with template effects. Every simulated study goes through the very contrast
`contrasts.compare` computes (vectorised over studies); a handful also through `compare` itself."""

import numpy as np
import pytest

from ada_slm.stats import contrasts
from ada_slm.stats.pairing import MIN_PAIRS

N_ITEMS = 133
SDS = dict(seed_sd=0.02, item_sd=0.05, inter_sd=0.02, resid_sd=0.08)  # seed noise dominates: the hard case for d.f.


def correlated_arms(
    rng,
    n_sim,
    runs=(3, 3),
    rho=0.0,
    delta=0.0,
    n_items=N_ITEMS,
    seed_sd=0.02,
    item_sd=0.05,
    inter_sd=0.02,
    resid_sd=0.08,
):
    """Y_a, Y_b of shape (study, run, item), run k of each arm trained with seed k: a seed's training effect and
    its run × item noise are correlated `rho` across the arms (the same data order, init and items)."""
    k = max(runs)
    items = rng.normal(0, item_sd, (n_sim, 1, n_items))
    shared_u, shared_e = rng.normal(0, 1, (n_sim, k, 1)), rng.normal(0, 1, (n_sim, k, n_items))

    def arm(mu, n):
        u = np.sqrt(rho) * shared_u + np.sqrt(1 - rho) * rng.normal(0, 1, (n_sim, k, 1))
        e = np.sqrt(rho) * shared_e + np.sqrt(1 - rho) * rng.normal(0, 1, (n_sim, k, n_items))
        y = mu + seed_sd * u + items + rng.normal(0, inter_sd, (n_sim, 1, n_items)) + resid_sd * e
        return y[:, :n]

    return arm(0.3 + delta, runs[0]), arm(0.3, runs[1])


def paired(a, b):
    """compare's contrast under `pairing: seed`: the same-seed rows' differences (seeds 0 … min − 1 are the shared
    ones) from MIN_PAIRS shared seeds on, else the runs as independent samples."""
    n = min(a.shape[1], b.shape[1])
    if n < MIN_PAIRS:
        return contrasts.contrast([a, b], [1.0, -1.0])
    return contrasts.contrast([a[:, :n] - b[:, :n]], [1.0])


def calibration(est_se_df, delta):
    est, se, df = est_se_df
    p, lo, hi = contrasts.t_test(est, se, df)
    return float(np.mean(p < 0.05)), float(np.mean((lo <= delta) & (delta <= hi))), float(np.median(hi - lo))


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.95])
@pytest.mark.parametrize("runs", [(3, 3), (3, 2), (4, 3)])
def test_paired_by_seed_is_calibrated_whatever_the_seed_correlation(rho, runs):
    rng = np.random.default_rng(int(rho * 100) + 10 * runs[0] + runs[1])
    a, b = correlated_arms(rng, 4000, runs, rho)
    false_positive, coverage, _ = calibration(paired(a, b), 0.0)
    assert false_positive <= 0.058 and coverage >= 0.942, (false_positive, coverage)  # 0.05 + 2.3 s.e. of 4000
    a, b = correlated_arms(rng, 2000, runs, rho, delta=0.05)
    _, coverage, _ = calibration(paired(a, b), 0.05)
    assert coverage >= 0.94


def test_pairing_is_what_buys_the_power_when_seeds_are_correlated():
    """At the seed correlation measured between phase14d's arms (0.87–1.00) the paired interval is far narrower and
    finds a real 0.03 far more often; the unpaired one, still calibrated, is merely conservative."""
    rng = np.random.default_rng(7)
    a, b = correlated_arms(rng, 3000, (3, 3), rho=0.95)
    _, cover_paired, width_paired = calibration(paired(a, b), 0.0)
    fp_unpaired, cover_unpaired, width_unpaired = calibration(contrasts.contrast([a, b], [1.0, -1.0]), 0.0)
    assert width_paired < 0.6 * width_unpaired and fp_unpaired <= 0.05
    a, b = correlated_arms(rng, 3000, (3, 3), rho=0.95, delta=0.03)
    found_paired = calibration(paired(a, b), 0.03)[0]
    found_unpaired = calibration(contrasts.contrast([a, b], [1.0, -1.0]), 0.03)[0]
    assert found_paired > found_unpaired + 0.2, (found_paired, found_unpaired)


def test_compare_pairs_the_shared_seeds_and_flips_signs():
    rng = np.random.default_rng(3)
    a, b = correlated_arms(rng, 1, (3, 2), rho=0.9, delta=0.02)
    as_dict = lambda y: {s: {f"i{j}": float(v) for j, v in enumerate(row)} for s, row in enumerate(y)}  # noqa: E731
    c = contrasts.compare(as_dict(a[0]), as_dict(b[0]), "m", design=contrasts.Design("seed"))
    assert c.pairing == "unpaired"  # 2 shared seeds: fewer than pairing.MIN_PAIRS, so not paired (1 d.f.)
    a, b = correlated_arms(rng, 1, (4, 3), rho=0.9, delta=0.02)
    c = contrasts.compare(as_dict(a[0]), as_dict(b[0]), "m", design=contrasts.Design("seed"))
    est, se, df = paired(a, b)
    assert c.pairing == "paired by seed (3 pairs)" and c.delta.mean == pytest.approx(float(est[0]))
    assert c.delta.se == pytest.approx(float(se[0])) and c.delta.df == pytest.approx(float(df[0]))
    assert c.p_perm_min == pytest.approx(0.25)  # 3 pairs: 8 sign patterns, 2 as extreme
    unpaired = contrasts.compare(as_dict(a[0]), as_dict(b[0]), "m")
    assert unpaired.pairing == "unpaired" and unpaired.p_perm_min == pytest.approx(1 / 35)
    one_shared = contrasts.compare(
        as_dict(a[0]),
        {0: as_dict(b[0])[0], 6: as_dict(b[0])[1], 7: as_dict(b[0])[2]},
        "m",
        design=contrasts.Design("seed"),
    )
    assert one_shared.pairing == "unpaired"  # one seed in common: nothing to pair


TEMPLATES, PER_TEMPLATE = 80, 12  # the generated agl-heldout suite's shape


def templated_arms(rng, n_sim, template_sd=0.04, delta=0.0):
    """Two arms on 80 templates × 12 items whose arm × item interaction has a template part: items of one
    template move together."""
    n = TEMPLATES * PER_TEMPLATE
    labels = np.repeat(np.arange(TEMPLATES), PER_TEMPLATE)

    def arm(mu):
        w = rng.normal(0, template_sd, (n_sim, 1, TEMPLATES))[..., labels] + rng.normal(0, 0.02, (n_sim, 1, n))
        return mu + rng.normal(0, 0.005, (n_sim, 3, 1)) + w + rng.normal(0, 0.08, (n_sim, 3, n))

    return arm(0.3 + delta), arm(0.3), labels


def test_items_of_one_template_are_one_cluster():
    """Template effects make 960 items worth far fewer: treated as independent the test calls null differences real
    too often; with templates as clusters it is calibrated, and the effective item count says what they are worth."""
    rng = np.random.default_rng(11)
    a, b, labels = templated_arms(rng, 2000)
    fp_items, cover_items, _ = calibration(contrasts.contrast([a, b], [1.0, -1.0]), 0.0)
    fp_clusters, cover_clusters, _ = calibration(contrasts.contrast([a, b], [1.0, -1.0], labels), 0.0)
    assert fp_items > 0.10 and cover_items < 0.90, (fp_items, cover_items)
    assert fp_clusters <= 0.06 and cover_clusters >= 0.94, (fp_clusters, cover_clusters)
    m = contrasts.Matrices(a[0], b[0], labels)
    assert 40 < contrasts.effective_items(m) < 300  # ≈ 80 templates' worth, not 960
    independent = contrasts.Matrices(a[0], b[0], np.arange(len(labels)))
    assert contrasts.effective_items(independent) == pytest.approx(len(labels))
