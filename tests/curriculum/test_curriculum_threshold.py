"""MedLoc-R1-style threshold curriculum: scripted schedules, conditions, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medreward.curriculum import MetricWindow, ThresholdChange, ThresholdCurriculum

# (success, metric) per step, and the threshold expected after each step. See the comments for
# which condition holds the threshold back.
SCRIPT = [
    ((0.8, 0.4), 0.1),  # 1 window not full
    ((0.8, 0.4), 0.1),  # 2 window not full
    ((0.8, 0.4), 0.1),  # 3 all good but cooldown (3 < 4 steps since start)
    ((0.8, 0.4), 0.3),  # 4 → 0.3; window cleared
    ((0.9, 0.5), 0.3),  # 5 not full
    ((0.3, 0.5), 0.3),  # 6 not full
    ((0.9, 0.5), 0.3),  # 7 std of [.9, .3, .9] = .28 > .1 (unstable)
    ((0.9, 0.5), 0.3),  # 8 std of [.3, .9, .9] still > .1
    ((0.9, 0.5), 0.5),  # 9 → 0.5 (metric .5 ≥ .5 − .05, 5 steps since change)
    ((0.5, 0.7), 0.5),  # 10
    ((0.5, 0.7), 0.5),  # 11
    ((0.5, 0.7), 0.5),  # 12 mean success .5 < .6
    ((0.7, 0.6), 0.5),  # 13 mean success .567 < .6
    ((0.7, 0.6), 0.5),  # 14 success ok (mean .633, std .094) but metric .633 < .7 − .05
    ((0.7, 0.7), 0.5),  # 15 metric .633 < .65
    ((0.7, 0.7), 0.7),  # 16 → 0.7 (metric .667)
    ((0.0, 0.0), 0.7),  # 17 never loosens; last rung
]


def make() -> ThresholdCurriculum:
    return ThresholdCurriculum([0.1, 0.3, 0.5, 0.7], window=3, min_success=0.6, max_std=0.1, delta=0.05, cooldown=4)


def test_scripted_sequence_gives_expected_schedule():
    cur = make()
    got = [cur.observe(success=s, metric=m) for (s, m), _ in SCRIPT]
    assert got == [expected for _, expected in SCRIPT]
    assert [(c.step, c.old, c.new) for c in cur.changes] == [(4, 0.1, 0.3), (9, 0.3, 0.5), (16, 0.5, 0.7)]
    first = cur.changes[0]
    assert isinstance(first, ThresholdChange)
    assert first.window_mean_success == pytest.approx(0.8)
    assert first.window_std_success == pytest.approx(0.0)
    assert first.window_mean_metric == pytest.approx(0.4)
    assert cur.at_last_rung and cur.level == 3 and cur.step == len(SCRIPT)


def test_window_reset_on_change_versus_kept():
    cur = ThresholdCurriculum([0.1, 0.2, 0.3], window=2, min_success=0.5, max_std=0.5, delta=0.5)
    assert [cur.observe(1.0, 1.0) for _ in range(4)] == [0.1, 0.2, 0.2, 0.3]
    keep = ThresholdCurriculum(
        [0.1, 0.2, 0.3], window=2, min_success=0.5, max_std=0.5, delta=0.5, reset_window_on_change=False
    )
    assert [keep.observe(1.0, 1.0) for _ in range(3)] == [0.1, 0.2, 0.3]


def test_lower_is_better_tolerance_ladder():
    # a numeric tolerance tightens 0.2 → 0.1 → 0.05 when the mean relative error fits the next one
    cur = ThresholdCurriculum(
        [0.2, 0.1, 0.05], window=2, min_success=0.5, max_std=0.2, delta=0.01, higher_is_better=False
    )
    assert [cur.observe(0.9, 0.15) for _ in range(3)] == [0.2, 0.2, 0.2]  # error .15 > .1 + .01
    assert [cur.observe(0.9, 0.08) for _ in range(2)] == [0.2, 0.1]  # window mean (.08+.08)/2 ≤ .11
    assert [cur.observe(0.9, 0.05) for _ in range(2)] == [0.1, 0.05]


def test_never_loosens_under_bad_metrics():
    cur = ThresholdCurriculum([0.1, 0.5], window=1, min_success=0.5, max_std=1.0, delta=0.5)
    assert cur.observe(1.0, 1.0) == 0.5
    assert all(cur.observe(0.0, 0.0) == 0.5 for _ in range(20))


def _random_run(cur: ThresholdCurriculum, seq: list[tuple[float, float]]) -> list[float]:
    return [cur.observe(s, m) for s, m in seq]


def test_save_restore_mid_run_continues_identically(tmp_path):
    rng = np.random.default_rng(42)
    skill = np.linspace(0.2, 0.95, 300)  # an improving policy
    seq = [(float(np.clip(k + rng.normal(0, 0.03), 0, 1)), float(k + rng.normal(0, 0.02))) for k in skill]
    config = {"window": 8, "min_success": 0.5, "max_std": 0.05, "delta": 0.05, "cooldown": 10}
    uninterrupted = ThresholdCurriculum(**config)
    expected = _random_run(uninterrupted, seq)
    assert len(uninterrupted.changes) >= 3  # the run exercises several changes

    for cut in (0, 57, 150, 299):
        first = ThresholdCurriculum(**config)
        head = _random_run(first, seq[:cut])
        path = tmp_path / f"cur{cut}.json"
        first.save(path)
        resumed = ThresholdCurriculum.load(path)
        tail = _random_run(resumed, seq[cut:])
        assert head + tail == expected
        assert resumed.state_dict() == uninterrupted.state_dict()

    # in-memory state_dict through JSON into an object built from the same config
    half = ThresholdCurriculum(**config)
    _random_run(half, seq[:120])
    other = ThresholdCurriculum(**config)
    other.load_state_dict(json.loads(json.dumps(half.state_dict())))
    assert _random_run(other, seq[120:]) == expected[120:]


def test_load_rejects_other_config():
    cur = make()
    cur.observe(0.5, 0.5)
    with pytest.raises(ValueError, match="config"):
        ThresholdCurriculum(window=5).load_state_dict(cur.state_dict())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"window": 0}, "window"),
        ({"ladder": [0.3, 0.1]}, "ladder"),
        ({"ladder": [0.1, 0.3], "higher_is_better": False}, "ladder"),
        ({"ladder": []}, "ladder"),
        ({"min_success": 1.5}, "min_success"),
        ({"max_std": -0.1}, "max_std"),
        ({"delta": float("nan")}, "delta"),
        ({"cooldown": -1}, "cooldown"),
    ],
)
def test_bad_parameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ThresholdCurriculum(**kwargs)


def test_bad_observations():
    cur = make()
    with pytest.raises(ValueError, match="success"):
        cur.observe(1.5, 0.3)
    with pytest.raises(ValueError, match="success"):
        cur.observe(float("nan"), 0.3)
    with pytest.raises(ValueError, match="metric"):
        cur.observe(0.5, float("inf"))
    assert cur.step == 0  # rejected observations leave no trace


def test_metric_window():
    w = MetricWindow(3)
    for s in (0.1, 0.2, 0.3, 0.4):
        w.push(s, 2 * s)
    assert len(w) == 3 and w.full
    assert w.mean_success == pytest.approx(0.3) and w.mean_metric == pytest.approx(0.6)
    assert w.std_success == pytest.approx(np.std([0.2, 0.3, 0.4]))
    w2 = MetricWindow(1)
    w2.load_state_dict(w.state_dict())
    assert w2.state_dict() == w.state_dict()
