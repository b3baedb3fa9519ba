"""Per-dataset normalisation: running MedGRPO-style and reference-frozen (Quark RFN)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medreward.shape import (
    ReferenceFrozenNormalizer,
    RunningMedianNormalizer,
    median_logistic,
    robust_stats,
)


def test_median_maps_to_half_and_symmetric_quartiles_to_quarters():
    values = [0.0, 0.25, 0.5, 0.75, 1.0]  # q25 = 0.25, median 0.5, q75 = 0.75
    out = RunningMedianNormalizer()(values, "ds")
    np.testing.assert_allclose(out[1:4], [0.25, 0.5, 0.75], rtol=1e-12)
    s = robust_stats(values)
    assert s.center == 0.5 and s.scale == pytest.approx(0.5 / (2 * math.log(3)))


def test_sources_on_different_scales_share_the_common_value():
    rng = np.random.default_rng(0)
    easy = rng.normal(0.8, 0.05, 201)
    hard = rng.normal(0.1, 0.02, 201)
    norm = RunningMedianNormalizer(window=1000)
    out = norm(np.concatenate([easy, hard]), ["easy"] * 201 + ["hard"] * 201)
    assert np.median(out[:201]) == pytest.approx(0.5)
    assert np.median(out[201:]) == pytest.approx(0.5)
    assert norm.stats("easy").center == pytest.approx(np.median(easy))


def test_window_keeps_only_the_most_recent_values():
    norm = RunningMedianNormalizer(window=4)
    norm.update([100.0, 200.0, 300.0], "a")
    norm.update([1.0, 2.0, 3.0, 4.0, 5.0], "a")
    assert norm.stats("a") == robust_stats([2.0, 3.0, 4.0, 5.0])
    norm.update([10.0], "a")
    assert norm.stats("a") == robust_stats([3.0, 4.0, 5.0, 10.0])


def test_degenerate_scale_uses_fallback():
    norm = RunningMedianNormalizer(fallback_scale=2.0)
    out = norm([1.0, 1.0, 1.0, 1.0, 0.0], "binary")  # IQR 0
    np.testing.assert_allclose(out, [0.5, 0.5, 0.5, 0.5, 1 / (1 + math.exp(0.5))])


def test_nan_excluded_and_mapped_to_nan():
    norm = RunningMedianNormalizer()
    out = norm([None, 1.0, 2.0, 3.0], "a")
    assert math.isnan(out[0]) and out[2] == 0.5
    assert norm.stats("a").count == 3


def test_running_state_roundtrip_continues_identically():
    rng = np.random.default_rng(1)
    batches = [(rng.random(12), rng.choice(["x", "y", "z"], 12)) for _ in range(6)]
    whole = RunningMedianNormalizer(window=20)
    expected = [whole(v, s) for v, s in batches]
    first = RunningMedianNormalizer(window=20)
    for v, s in batches[:3]:
        first(v, s)
    resumed = RunningMedianNormalizer()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for (v, s), exp in zip(batches[3:], expected[3:]):
        np.testing.assert_array_equal(resumed(v, s), exp)


def test_running_bad_input():
    with pytest.raises(ValueError, match="window"):
        RunningMedianNormalizer(window=0)
    with pytest.raises(ValueError, match="method"):
        RunningMedianNormalizer(method="minmax")  # type: ignore[arg-type]
    norm = RunningMedianNormalizer()
    with pytest.raises(ValueError, match="'new'"):
        norm.transform([1.0], "new")
    with pytest.raises(ValueError, match="values has length 2 but sources has length 1"):
        norm.update([1.0, 2.0], ["a"])
    assert norm([], []).shape == (0,)


def test_median_logistic_function():
    with pytest.raises(ValueError, match="scale"):
        median_logistic([1.0], center=0.0, scale=0.0)
    np.testing.assert_allclose(median_logistic([1.0], center=0.0, scale=1.0), [1 / (1 + math.exp(-1))])


def test_rfn_zscore_hand_computed_and_frozen():
    rfn = ReferenceFrozenNormalizer().fit([1.0, 2.0, 3.0, 4.0])
    mu, sd = 2.5, np.std([1, 2, 3, 4], ddof=1)
    np.testing.assert_allclose(rfn.transform([2.5, 5.0]), [0.0, 2.5 / sd])
    before = rfn.stats
    rfn.transform([100.0, 200.0, 300.0])  # RL batches never move the statistics
    assert rfn.stats == before
    with pytest.raises(RuntimeError, match="already fitted"):
        rfn.fit([0.0, 1.0])
    assert mu == before[None][0].center


def test_rfn_per_source_and_per_column():
    ref = np.array([[0.0, 10.0], [2.0, 30.0], [5.0, 1.0], [7.0, 3.0]])
    rfn = ReferenceFrozenNormalizer().fit(ref, ["a", "a", "b", "b"])
    out = rfn.transform([[1.0, 20.0], [6.0, 2.0]], ["a", "b"])
    sd_a0, sd_a1 = np.std([0, 2], ddof=1), np.std([10, 30], ddof=1)
    sd_b0, sd_b1 = np.std([5, 7], ddof=1), np.std([1, 3], ddof=1)
    np.testing.assert_allclose(out, [[(1 - 1) / sd_a0, (20 - 20) / sd_a1], [(6 - 6) / sd_b0, (2 - 2) / sd_b1]])
    out2 = rfn.transform([[3.0, 40.0]], ["a"])
    np.testing.assert_allclose(out2, [[2 / sd_a0, 20 / sd_a1]])
    with pytest.raises(ValueError, match="'c'"):
        rfn.transform([[1.0, 1.0]], ["c"])
    with pytest.raises(ValueError, match="reward columns"):
        rfn.transform([[1.0, 1.0, 1.0]], ["a"])


def test_rfn_median_logistic_and_save_load(tmp_path):
    rfn = ReferenceFrozenNormalizer(method="median_logistic").fit([0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(rfn.transform([0.25, 0.5, 0.75]), [0.25, 0.5, 0.75])
    path = tmp_path / "rfn.json"
    rfn.save(path)
    loaded = ReferenceFrozenNormalizer.load(path)
    assert loaded.is_fitted and loaded.stats == rfn.stats
    np.testing.assert_array_equal(loaded.transform([0.1, 0.9]), rfn.transform([0.1, 0.9]))


def test_rfn_unfitted_and_degenerate():
    rfn = ReferenceFrozenNormalizer()
    with pytest.raises(RuntimeError, match="not fitted"):
        rfn.transform([1.0])
    rfn.fit([3.0, 3.0, None])
    np.testing.assert_allclose(rfn.transform([4.0, None]), [1.0, np.nan])  # σ = 0 → fallback scale 1
