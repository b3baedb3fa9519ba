"""PPO-C confidence calibration (SeanLeng1/Reward-Calibration calibrated_experience_maker.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medreward.shape import (
    ConfidenceCalibrator,
    calibrated_reward,
    parse_confidence,
    strip_confidence,
)
from scaling import assert_linear


def test_parse_confidence_rules():
    texts = [
        "Answer: B\nConfidence: 8",
        "CONFIDENCE:   3.5 and later Confidence: 9",  # first match, case-insensitive
        "confidence: 42",  # clamped to 10
        "Confidence: -3",  # no digits right after → missing
        "nothing",
        None,
        "",
    ]
    assert parse_confidence(texts).tolist() == [8.0, 3.5, 10.0, 5.0, 5.0, 5.0, 5.0]  # type: ignore[arg-type]
    assert parse_confidence(["x"], default=0.0).tolist() == [0.0]
    with pytest.raises(ValueError, match="default"):
        parse_confidence(["x"], default=float("nan"))


def test_strip_confidence():
    assert strip_confidence(["B is right. Confidence: 7/10!", "Confidence:9. Then more", "none"]) == [
        "B is right.",
        "Then more",
        "none",
    ]


def test_parsing_is_linear_on_adversarial_text():
    def nasty(k: int) -> str:  # k = 50_000: 2 MB of spaces after a bare marker, then 50k bare markers
        return "Confidence:" + " " * (40 * k) + "x" + "Confidence: " * k

    def parse_and_strip(text: str) -> tuple[list[float], list[str]]:
        return parse_confidence([text]).tolist(), strip_confidence([text])

    confidence, stripped = assert_linear(parse_and_strip, nasty, 50_000 // 8)
    assert confidence == [5.0] and len(stripped) == 1


def test_threshold_mode_hand_computed():
    # r̄ = 0.5: r=2 ≥ r̄, ĉ=0.9 → 2 + 0.5·2·0.4 = 2.4; r=−1 < r̄, ĉ=0.9 → −1 − 0.5·1·0.4 = −1.2
    # r=−1, ĉ=0.1 → −1 − 0.5·1·(−0.4) = −0.8 (low confidence on a bad answer is rewarded)
    out = calibrated_reward([2.0, -1.0, -1.0], [9.0, 9.0, 1.0], reward_mean=0.5)
    np.testing.assert_allclose(out, [2.4, -1.2, -0.8])


def test_difference_mode_hand_computed():
    out = calibrated_reward([2.0, -1.0], [9.0, 9.0], reward_mean=0.5, mode="difference", w=1.0)
    np.testing.assert_allclose(out, [2.0 + 1.5 * 0.4, -1.0 - 1.5 * 0.4])


def test_rewards_are_clamped_and_confidence_nan_is_neutral():
    out = calibrated_reward([50.0, 1.0], [10.0, float("nan")], reward_mean=0.0)
    np.testing.assert_allclose(out, [10.0 + 0.5 * 10 * 0.5, 1.0])


def test_ema_is_updated_before_adjusting():
    cal = ConfidenceCalibrator(initial_mean=10.0)
    out = cal([1.0, 3.0], [10.0, 10.0])
    # r̄ = 0.1·2 + 0.9·10 = 9.2, both rewards are below it → penalised for confidence
    assert cal.reward_mean == pytest.approx(9.2)
    np.testing.assert_allclose(out, [1.0 - 0.25, 3.0 - 0.75])
    cal([100.0], [5.0])  # clamped to 10 before the EMA
    assert cal.reward_mean == pytest.approx(0.1 * 10 + 0.9 * 9.2)


def test_nan_rewards_skip_ema_and_stay_nan():
    cal = ConfidenceCalibrator(initial_mean=1.0)
    out = cal([None, None], [5.0, 5.0])
    assert np.all(np.isnan(out)) and cal.reward_mean == 1.0 and cal.n_updates == 0
    out = cal([None, 3.0], [5.0, 5.0])
    assert math.isnan(out[0]) and cal.reward_mean == pytest.approx(0.1 * 3 + 0.9)
    assert cal([], []).shape == (0,)


def test_state_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=8), rng.uniform(0, 10, 8)) for _ in range(4)]
    whole = ConfidenceCalibrator(alpha=0.3, mode="difference")
    expected = [whole(r, c) for r, c in batches]
    part = ConfidenceCalibrator(alpha=0.3, mode="difference")
    for r, c in batches[:2]:
        part(r, c)
    part.save(tmp_path / "cal.json")
    resumed = ConfidenceCalibrator.load(tmp_path / "cal.json")
    json.dumps(resumed.state_dict())
    for (r, c), exp in zip(batches[2:], expected[2:]):
        np.testing.assert_array_equal(resumed(r, c), exp)


def test_bad_parameters():
    with pytest.raises(ValueError, match="alpha"):
        ConfidenceCalibrator(alpha=1.5)
    with pytest.raises(ValueError, match="mode"):
        ConfidenceCalibrator(mode="std")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clip"):
        calibrated_reward([1.0], [5.0], reward_mean=0.0, clip=0.0)
    with pytest.raises(ValueError, match="rewards has length 2 but confidence has length 1"):
        ConfidenceCalibrator()([1.0, 2.0], [5.0])
