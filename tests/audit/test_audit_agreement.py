"""Agreement statistics (medreward.audit.agreement) against scipy.stats and scikit-learn on the same
data (ties included), hand-computed values, the binning of rewards for κ, the bootstrap interval,
and undefined inputs reported as None with a reason (never 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau, pearsonr, rankdata, spearmanr
from sklearn.metrics import cohen_kappa_score

from medreward.audit.agreement import (
    agreement, bin_to_categories, bootstrap_ci, cohen_kappa, kendall_tau_b, pearson, rank_average, spearman,
)  # fmt: skip


def _datasets():
    rng = np.random.default_rng(0)
    yield "continuous", rng.normal(size=50), rng.normal(size=50)
    x = rng.normal(size=200)
    yield "correlated", x, x + rng.normal(scale=0.5, size=200)
    a = rng.integers(0, 3, size=120).astype(float)  # heavy ties in both
    yield "ties", a, rng.integers(0, 4, size=120) + a
    yield "ties in x only", rng.integers(0, 2, size=40).astype(float), rng.normal(size=40)
    yield "two points", np.array([0.0, 1.0]), np.array([3.0, 1.0])
    yield "anti", np.arange(30.0), -np.arange(30.0) ** 2
    big = rng.integers(0, 50, size=3000).astype(float)
    yield "large with ties", big, big + rng.integers(0, 30, size=3000)


DATA = list(_datasets())


@pytest.mark.parametrize(("name", "x", "y"), DATA, ids=[d[0] for d in DATA])
def test_correlations_equal_scipy(name, x, y):
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y, variant="b").statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
    assert rank_average(x).tolist() == rankdata(x).tolist()


def _label_sets():
    rng = np.random.default_rng(1)
    yield "random 3", rng.integers(0, 3, size=80), rng.integers(0, 3, size=80)
    truth = rng.integers(1, 6, size=150)
    yield "close 5-point", np.clip(truth + rng.integers(-1, 2, size=150), 1, 5), truth
    yield "labels missing on one side", np.array([0, 0, 1, 1, 3, 3, 1]), np.array([0, 1, 1, 2, 2, 3, 0])
    yield "gapped values", np.array([1, 2, 3, 5, 5, 1, 2, 3]), np.array([1, 3, 3, 5, 2, 1, 2, 5])
    yield "strings", np.array(["a", "b", "b", "c", "a"]), np.array(["a", "b", "c", "c", "b"])


LABELS = list(_label_sets())


@pytest.mark.parametrize(("name", "a", "b"), LABELS, ids=[d[0] for d in LABELS])
def test_kappa_equals_sklearn(name, a, b):
    assert cohen_kappa(list(a), list(b)) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert cohen_kappa(list(a), list(b), weights="quadratic") == pytest.approx(
        cohen_kappa_score(a, b, weights="quadratic"), abs=1e-12
    )


def test_kappa_with_many_categories_equals_sklearn_without_a_category_table():
    # hundreds of categories (sklearn takes them as integer labels); a k×k table of the 20,000
    # distinct values below would hold 4·10⁸ cells
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 250, size=300), rng.integers(0, 250, size=300)
    for weights in (None, "quadratic"):
        assert cohen_kappa(a, b, weights=weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)
    big = rng.normal(size=20000)
    assert cohen_kappa(big, big + 1.0, weights="quadratic") is not None


def test_hand_computed_values():
    # Kendall: 6 pairs, one discordant (2,3 vs 3,2): (5 − 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # κ on [0,1,1,2] vs [0,1,2,2]: p_o = 3/4, marginals (1,2,1)/4 and (1,1,2)/4, p_e = (1+2+2)/16 = 5/16
    assert cohen_kappa([0, 1, 1, 2], [0, 1, 2, 2]) == pytest.approx((3 / 4 - 5 / 16) / (1 - 5 / 16))
    # quadratic: one disagreement at distance 1 → Σw·O = 1; Σw·E = Σ_ij (i−j)² r_i c_j / 4 = 20/4 → 1 − 1/5
    assert cohen_kappa([0, 1, 1, 2], [0, 1, 2, 2], weights="quadratic") == pytest.approx(1 - 1 / 5)


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        ([0.1, 0.5, 0.9], [2, 2, 2], "the ratings are constant"),
        ([0.3, 0.3, 0.3], [1, 2, 3], "the rewards are constant"),
        ([0.3], [1], "1 pair(s), need at least 2"),
        ([], [], "0 pair(s), need at least 2"),
        ([0.5, None, 0.5], [1.0, 2.0, None], "1 pair(s), need at least 2"),
    ],
)
def test_undefined_is_none_with_a_reason_never_zero(x, y, reason):
    report = agreement(x, y, n_boot=50)
    for stat in (report.spearman, report.kendall, report.pearson):
        assert stat.value is None and stat.ci_low is None and stat.ci_high is None
        assert reason in stat.note
    assert report.cohen_kappa.value is None and report.quadratic_kappa.value is None
    assert report.to_dict()["spearman"]["value"] is None


def test_the_pure_functions_are_undefined_on_constant_or_short_input():
    for fn in (spearman, kendall_tau_b, pearson):
        assert fn([1, 1, 1], [1, 2, 3]) is None
        assert fn([1, 2, 3], [4, 4, 4]) is None
        assert fn([1], [2]) is None
    assert cohen_kappa([1, 1, 1], [1, 2, 3]) is None and cohen_kappa([1], [1]) is None


def test_missing_pairs_are_left_out_and_counted():
    pred = [0.9, None, 0.2, 0.6, 0.1, 0.7]
    truth = [1.0, 0.0, 0.0, None, 0.0, 1.0]
    report = agreement(pred, truth, n_boot=0)
    assert report.n == 4 and report.n_missing == 2 and "2 pair(s)" in report.note
    assert report.spearman.value == pytest.approx(spearmanr([0.9, 0.2, 0.1, 0.7], [1, 0, 0, 1]).statistic)


def test_kappa_bins_rewards_onto_the_rating_categories():
    # nearest category on the same scale (a tie goes to the lower category)
    assert bin_to_categories([0.1, 0.25, 0.26, 0.74, 0.75, 1.3, -2], [0, 0.5, 1]).tolist() == [0, 0, 0.5, 0.5, 0.5, 1, 0]
    # given edges for ratings on another scale: [−inf, 0.3) → 1, [0.3, 0.6) → 2, [0.6, inf) → 3
    assert bin_to_categories([0.0, 0.3, 0.59, 0.6, 1.0], [3, 1, 2, 2], edges=[0.3, 0.6]).tolist() == [1, 2, 2, 3, 3]
    rewards = [0.05, 0.2, 0.45, 0.5, 0.7, 0.9, 0.95, 0.35]
    ratings = [1, 1, 2, 2, 3, 3, 3, 1]
    report = agreement(rewards, ratings, kappa_bins=[0.3, 0.6], n_boot=0)
    binned = [1, 1, 2, 2, 3, 3, 3, 2]
    assert report.cohen_kappa.value == pytest.approx(cohen_kappa_score(binned, ratings))
    assert report.quadratic_kappa.value == pytest.approx(cohen_kappa_score(binned, ratings, weights="quadratic"))
    assert "kappa_bins" in report.note
    with pytest.raises(ValueError, match="need 2 edges"):
        agreement(rewards, ratings, kappa_bins=[0.5], n_boot=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        agreement(rewards, ratings, kappa_bins=[0.6, 0.3], n_boot=0)


def test_bootstrap_interval_is_seeded_and_covers_the_value():
    rng = np.random.default_rng(2)
    x = rng.normal(size=80)
    y = x + rng.normal(size=80)
    report = agreement(x, np.round(y), n_boot=300, seed=4)
    again = agreement(x, np.round(y), n_boot=300, seed=4)
    for stat, same in zip(
        (report.spearman, report.kendall, report.pearson, report.cohen_kappa, report.quadratic_kappa),
        (again.spearman, again.kendall, again.pearson, again.cohen_kappa, again.quadratic_kappa),
    ):
        assert stat.ci_low is not None and stat.ci_low <= stat.value <= stat.ci_high, stat
        assert (stat.ci_low, stat.ci_high) == (same.ci_low, same.ci_high)
    # the percentile interval by hand for one statistic
    idx_rng = np.random.default_rng(9)
    values = []
    for _ in range(200):
        idx = idx_rng.integers(0, 80, size=80)
        values.append(pearsonr(x[idx], y[idx]).statistic)
    low, high, undefined = bootstrap_ci(pearson, x, y, n_boot=200, seed=9)
    assert undefined == 0
    assert (low, high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12)


def test_bootstrap_counts_undefined_resamples():
    # 2 of 20 ratings differ: many resamples of the ratings are constant
    x = list(range(20))
    y = [0] * 18 + [1, 1]
    low, high, undefined = bootstrap_ci(spearman, x, y, n_boot=100, seed=0)
    assert undefined > 0
    assert (low is None) == (undefined > 50)
    assert math.isfinite(spearman(x, y))


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="same length"):
        agreement([1, 2], [1], n_boot=0)
    with pytest.raises(ValueError, match="same length"):
        cohen_kappa([1, 2], [1])
