"""MedCCO-style task-mix schedule."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.curriculum import TaskMixSchedule


def test_linear_ramp_hand_computed():
    mix = TaskMixSchedule({"mcq": 3, "labels": 1}, {"open": 1}, start_step=100, end_step=200)
    assert mix.sources == ("mcq", "labels", "open")
    assert mix.weights(0) == {"mcq": 0.75, "labels": 0.25, "open": 0.0}
    assert mix.weights(100) == mix.weights(0)
    assert mix.weights(150) == {"mcq": 0.375, "labels": 0.125, "open": 0.5}
    assert mix.weights(200) == mix.weights(10_000) == {"mcq": 0.0, "labels": 0.0, "open": 1.0}


def test_step_ramp():
    mix = TaskMixSchedule({"c": 1}, {"o": 1}, start_step=0, end_step=100, kind="step")
    assert [mix.weights(t)["o"] for t in (0, 99, 100)] == [0.0, 0.0, 1.0]
    stairs = TaskMixSchedule({"c": 1}, {"o": 1}, start_step=0, end_step=100, kind="step", stages=4)
    assert [stairs.weights(t)["o"] for t in (0, 24, 25, 60, 99, 100)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]
    instant = TaskMixSchedule({"c": 1}, {"o": 1}, start_step=50, end_step=50)
    assert instant.weights(49)["o"] == 0.0 and instant.weights(50)["o"] == 1.0


def test_close_to_open_keeps_final_share():
    mix = TaskMixSchedule.close_to_open(["mcq", "icd"], ["open_qa"], end_step=10, final_closed_share=0.2)
    assert mix.weights(0) == {"mcq": 0.5, "icd": 0.5, "open_qa": 0.0}
    assert mix.weights(10) == {"mcq": 0.1, "icd": 0.1, "open_qa": 0.8}
    with pytest.raises(ValueError, match="both"):
        TaskMixSchedule.close_to_open(["a"], ["a"])
    with pytest.raises(ValueError, match="final_closed_share"):
        TaskMixSchedule.close_to_open(["a"], ["b"], final_closed_share=1.5)


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcde"), st.floats(0, 10), min_size=1).filter(lambda d: sum(d.values()) > 0),
    st.dictionaries(st.sampled_from("cdefg"), st.floats(0, 10), min_size=1).filter(lambda d: sum(d.values()) > 0),
    st.integers(0, 300),
    st.integers(0, 257),
)
def test_weights_sum_to_one_and_counts_fill_the_batch(start, end, step, batch):
    mix = TaskMixSchedule(start, end, start_step=10, end_step=200)
    w = mix.weights(step)
    assert sum(w.values()) == pytest.approx(1.0) and min(w.values()) >= 0.0
    counts = mix.counts(batch, step)
    assert sum(counts.values()) == batch
    for s in mix.sources:  # largest remainder: each count within 1 of its exact share
        assert abs(counts[s] - w[s] * batch) < 1.0 + 1e-9
    assert counts == mix.counts(batch, step)  # deterministic


def test_tracked_step_and_save_restore(tmp_path):
    mix = TaskMixSchedule.close_to_open(["mcq"], ["open"], start_step=0, end_step=10)
    uninterrupted = TaskMixSchedule.close_to_open(["mcq"], ["open"], start_step=0, end_step=10)
    expected = []
    for _ in range(12):
        expected.append(uninterrupted.weights())
        uninterrupted.advance()
    got = []
    for _ in range(5):
        got.append(mix.weights())
        mix.advance()
    mix.save(tmp_path / "mix.json")
    resumed = TaskMixSchedule.load(tmp_path / "mix.json")
    assert resumed.step == 5
    for _ in range(7):
        got.append(resumed.weights())
        resumed.advance()
    assert got == expected
    json.dumps(resumed.state_dict())
    with pytest.raises(ValueError, match="config"):
        TaskMixSchedule({"x": 1}, {"y": 1}).load_state_dict(resumed.state_dict())


def test_odd_weights_round_trip_exactly():
    mix = TaskMixSchedule({"a": 0.1, "b": 0.2, "c": 0.7000000001}, {"d": 3})
    mix.advance(3)
    again = TaskMixSchedule.from_state_dict(json.loads(json.dumps(mix.state_dict())))
    assert again.weights() == mix.weights() and again.step == 3


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"start": {}}, "start"),
        ({"start": {"a": -1.0}}, "start"),
        ({"end": {"a": 0.0}}, "end"),
        ({"start_step": -1}, "start_step"),
        ({"start_step": 10, "end_step": 5}, "end_step"),
        ({"kind": "cosine"}, "kind"),
        ({"stages": 0}, "stages"),
    ],
)
def test_bad_parameters(kwargs, name):
    args = {"start": {"a": 1.0}, "end": {"b": 1.0}}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        TaskMixSchedule(**args)


def test_bad_steps():
    mix = TaskMixSchedule({"a": 1}, {"b": 1})
    with pytest.raises(ValueError, match="step"):
        mix.weights(-1)
    with pytest.raises(ValueError, match="batch_size"):
        mix.counts(-5)
    with pytest.raises(ValueError, match="n"):
        mix.advance(-1)
    assert mix.counts(0) == {"a": 0, "b": 0}
