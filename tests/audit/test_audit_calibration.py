"""Calibration (medreward.audit.calibration): Brier against sklearn.metrics.brier_score_loss, the
equal-mass reliability bins against sklearn's calibration_curve(strategy="quantile") and a hand
computation, ECE by hand, and undefined inputs (None with a note, never 0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from medreward.audit.calibration import calibration, equal_mass_bins


def _data(seed: int, n: int = 400, ties: bool = False):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    if ties:
        p = np.round(p * 4) / 4  # five distinct values: bins share tied rewards
    o = (rng.uniform(size=n) < p**1.5).astype(int)  # over-confident on purpose
    return p, o


@pytest.mark.parametrize(("seed", "n_bins", "ties"), [(0, 10, False), (1, 5, False), (2, 10, True), (3, 3, True), (4, 1, False)])
def test_brier_and_bins_equal_sklearn(seed, n_bins, ties):
    p, o = _data(seed, ties=ties)
    report = calibration(p.tolist(), o.tolist(), n_bins=n_bins)
    assert report.brier == pytest.approx(brier_score_loss(o, p), abs=1e-12)
    prob_true, prob_pred = calibration_curve(o, p, n_bins=n_bins, strategy="quantile")
    assert [b["frac_pos"] for b in report.bins] == pytest.approx(prob_true.tolist(), abs=1e-12)
    assert [b["mean_pred"] for b in report.bins] == pytest.approx(prob_pred.tolist(), abs=1e-12)
    assert sum(b["count"] for b in report.bins) == len(p) == report.n
    # ECE from the same bins
    expected = sum(b["count"] / len(p) * abs(b["frac_pos"] - b["mean_pred"]) for b in report.bins)
    assert report.ece == pytest.approx(expected, abs=1e-12)
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False)) == report.to_dict()
    if not ties:  # equal mass: counts differ by at most one
        counts = [b["count"] for b in report.bins]
        assert len(counts) == n_bins and max(counts) - min(counts) <= 1


def test_hand_computed_bins_and_ece():
    probs = [0.05, 0.15, 0.25, 0.35, 0.55, 0.65, 0.85, 0.95, 0.9]
    outcomes = [0, 0, 1, 0, 1, 0, 1, 1, 1]
    # 3 equal-mass bins over 9 values: inner edges at the 1/3 and 2/3 quantiles, by linear
    # interpolation between the sorted values 0.25|0.35 (position 8/3) and 0.65|0.85 (position 16/3)
    report = calibration(probs, outcomes, n_bins=3)
    assert equal_mass_bins(probs, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # a value on an inner edge goes to the lower bin: the median of 0.1, 0.2, 0.3 is 0.2
    assert equal_mass_bins([0.1, 0.2, 0.3], 2).tolist() == [0, 0, 1]
    assert report.bins == [
        {"mean_pred": pytest.approx(0.15), "frac_pos": pytest.approx(1 / 3), "count": 3},
        {"mean_pred": pytest.approx(1.55 / 3), "frac_pos": pytest.approx(1 / 3), "count": 3},
        {"mean_pred": pytest.approx(0.9), "frac_pos": pytest.approx(1.0), "count": 3},
    ]
    ece = (abs(1 / 3 - 0.15) + abs(1 / 3 - 1.55 / 3) + abs(1.0 - 0.9)) / 3
    assert report.ece == pytest.approx(ece)
    brier = sum((p - o) ** 2 for p, o in zip(probs, outcomes)) / 9
    assert report.brier == pytest.approx(brier)


def test_perfectly_calibrated_bins_give_zero_ece():
    probs = [0.25] * 4 + [0.75] * 4
    outcomes = [1, 0, 0, 0, 1, 1, 1, 0]
    report = calibration(probs, outcomes, n_bins=2)
    assert report.ece == pytest.approx(0.0, abs=1e-12)
    assert [b["count"] for b in report.bins] == [4, 4]


def test_ties_share_a_bin_and_the_note_says_so():
    report = calibration([0.5] * 10, [1, 0] * 5, n_bins=4)
    assert report.bins == [{"mean_pred": 0.5, "frac_pos": 0.5, "count": 10}]
    assert report.ece == pytest.approx(0.0) and "1 non-empty bin(s) of 4" in report.note


def test_booleans_and_missing_pairs():
    report = calibration([0.9, None, 0.2, 0.6], [True, False, False, None], n_bins=2)
    assert report.n == 2 and report.n_missing == 2 and "2 pair(s)" in report.note
    assert report.brier == pytest.approx(((0.9 - 1) ** 2 + 0.2**2) / 2)


@pytest.mark.parametrize(
    ("probs", "outcomes", "reason"),
    [
        ([0.2, 1.4], [0, 1], "not probability-like"),
        ([-0.1, 0.4], [0, 1], "not probability-like"),
        ([0.2, 0.4], [0, 0.5], "outcomes must be 0/1"),
        ([], [], "no pairs"),
        ([None], [1], "no pairs"),
    ],
)
def test_undefined_calibration_is_none_not_zero(probs, outcomes, reason):
    report = calibration(probs, outcomes)
    assert report.ece is None and report.brier is None and report.bins == []
    assert reason in report.note
    assert report.to_dict()["ece"] is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_bins"):
        calibration([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="same length"):
        calibration([0.5, 0.2], [1])
