"""Golden and property tests of the ``iou`` component (box IoU for grounding)."""

from __future__ import annotations

import doctest
import math
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.iou as iou_module
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.iou import MAX_ANSWER_CHARS, IoU, box_iou, parse_last_box
from scaling import assert_linear

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
REF = {"box": [0, 0, 10, 10]}


def score(answer: str | None, reference=REF, *, completion: str | None = None, **params):
    text = completion if completion is not None else f"<think>r</think><answer>{answer}</answer>"
    return IoU(**params).score_one(Rollout(completion=text, reference=reference))


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 5, 15, 15], 25 / 175),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # contained
        ([0, 0, 1, 1], [2, 2, 3, 3], 0.0),  # disjoint
        ([0, 0, 1, 1], [1, 0, 2, 1], 0.0),  # touching edges
        ([0.1, 0.1, 0.5, 0.5], [0.3, 0.3, 0.7, 0.7], 0.04 / 0.28),  # normalised coordinates
        ([-5, -5, 5, 5], [0, 0, 10, 10], 25 / 175),
        ([5, 5, 5, 8], [0, 0, 10, 10], 0.0),  # zero-area line
        ([3, 3, 3, 3], [3, 3, 3, 3], 0.0),  # two identical points: union has no area
    ],
)
def test_box_iou_golden(a, b, expected: float) -> None:
    assert box_iou(a, b) == pytest.approx(expected, abs=1e-12)
    assert box_iou(b, a) == pytest.approx(expected, abs=1e-12)


def test_box_iou_overflow_is_zero() -> None:
    assert box_iou([0, 0, 1e200, 1e200], [0, 0, 1e200, 1e200]) == 0.0


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("[0, 0, 10, 10]", 1.0),
        ("[5,5,15,15]", 25 / 175),
        ("[ 0 , 0 , 10 , 10 ]", 1.0),
        ("[0 0 10 10]", 1.0),  # whitespace-separated (numpy-style)
        ("[0., 0.0, 1e1, 10]", 1.0),
        ('[{"bbox_2d": [0, 0, 10, 5], "label": "nodule"}]', 0.5),
        ("The lesion is at [0, 0, 10, 10].", 1.0),
        ("first guess [50, 50, 60, 60]; final [0, 0, 10, 10]", 1.0),  # the last box is the claim
        ("[0, 0, 10, 10] (see [figure 2])", 1.0),  # non-numeric lists are skipped
        ("[[50, 50, 60, 60], [0, 0, 5, 10]]", 0.5),  # several boxes: the last one
    ],
)
def test_continuous_golden(answer: str, expected: float) -> None:
    result = score(answer)
    assert result.status is Status.OK
    assert result.value == pytest.approx(expected, abs=1e-12)
    assert result.info["iou"] == pytest.approx(expected, abs=1e-12)


def test_threshold_mode() -> None:
    assert score("[0, 0, 10, 5]", mode="threshold").value == 1.0  # IoU 0.5 ≥ 0.5
    assert score("[0, 0, 10, 4.9]", mode="threshold").value == 0.0
    result = score("[0, 0, 10, 5]", mode="threshold", threshold=0.6)
    assert result.value == 0.0 and result.info["iou"] == pytest.approx(0.5) and result.info["threshold"] == 0.6
    assert score("[0, 0, 10, 10]", mode="threshold", threshold=1.0).value == 1.0


def test_multiple_reference_boxes_take_the_max() -> None:
    reference = {"box": [[50, 50, 60, 60], [0, 0, 10, 10], [0, 0, 20, 20]]}
    result = score("[0, 0, 10, 10]", reference)
    assert result.value == 1.0 and result.info["reference_index"] == 1
    result = score("[0, 0, 20, 10]", reference)
    assert result.value == pytest.approx(0.5) and result.info["reference_index"] in (1, 2)
    assert score("[0, 0, 10, 10]", {"box": [[0, 0, 10, 10]]}).value == 1.0
    assert score("[0, 0, 10, 10]", {"box": ((0, 0, 10, 10),)}).value == 1.0


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("[10, 0, 0, 10]", "invalid box: x2 < x1 or y2 < y1"),
        ("[0, 10, 10, 0]", "invalid box: x2 < x1 or y2 < y1"),
        ("[0, 0, 10]", "invalid box: expected 4 coordinates, got 3"),
        ("[0, 0, 10, 10, 1]", "invalid box: expected 4 coordinates, got 5"),
        ("[NaN, 0, 10, 10]", "invalid box: non-finite coordinate"),
        ("[0, 0, inf, 10]", "invalid box: non-finite coordinate"),
        ("[0, 0, 1e400, 10]", "invalid box: non-finite coordinate"),
        ("[0, 0, 10, 10] and then [3, 4]", "invalid box: expected 4 coordinates, got 2"),
        ("left upper lobe", "no box found"),
        ("[x1, y1, x2, y2]", "no box found"),
        ("[0, 0, 10, ten]", "no box found"),
        ("[]", "no box found"),
        ("", "no box found"),
        ("0, 0, 10, 10", "no box found"),  # brackets are required
    ],
)
def test_invalid_predictions_score_zero_with_reason(answer: str, reason: str) -> None:
    result = score(answer)
    assert result.status is Status.OK and result.value == 0.0
    assert result.info["reason"] == reason


def test_non_finite_prediction_info_is_json_safe() -> None:
    import json

    result = score("[NaN, 0, 10, 10]")
    assert result.info["predicted"] == ["nan", 0.0, 10.0, 10.0]
    json.dumps(result.info, allow_nan=False)


def test_degenerate_outputs() -> None:
    assert score(None, completion="").info["reason"] == "no <answer> section"
    assert score(None, completion="<think>r</think><answer></answer>").info["reason"] == "no box found"
    assert score(None, completion="<think></think><answer></answer>").value == 0.0
    assert score(None, completion="<answer>[0, 0, 10, 10]").info["reason"] == "no <answer> section"  # unclosed
    zero_area = score("[5, 5, 5, 9]")
    assert zero_area.value == 0.0 and zero_area.info["iou"] == 0.0 and "reason" not in zero_area.info
    whole = score(None, completion="[0, 0, 10, 10]", answer_tag=None)
    assert whole.value == 1.0
    assert score(None, completion="<box>[0, 0, 10, 10]</box>", answer_tag="box").value == 1.0


def test_reference_handling() -> None:
    for reference in ({}, {"box": None}, {"box": []}):
        result = score("[0, 0, 10, 10]", reference)
        assert result.status is Status.NOT_APPLICABLE and result.value is None
    assert score("[0, 0, 1, 1]", {"region": [0, 0, 1, 1]}, field="region").value == 1.0
    for bad, message in (
        ([10, 0, 0, 10], "invalid box"),
        ([0, 0, 10], "expected 4 coordinates"),
        ([0, 0, float("nan"), 10], "non-finite"),
        (["0", "0", "1", "1"], "must be a box"),
        ([True, 0, 1, 1], "must be a box"),
        ("[0, 0, 1, 1]", "must be a box"),
        ([[0, 0, 1, 1], [0, 0]], "expected 4 coordinates"),
        ([[0, 0, 1, 1], 3], "must be a box"),
    ):
        with pytest.raises(RecordError, match=message):
            score("[0, 0, 1, 1]", {"box": bad})


def test_only_the_tail_of_a_long_answer_is_read() -> None:
    padding = "x" * (2 * MAX_ANSWER_CHARS)
    tail = score(padding + "[0, 0, 10, 10]")
    assert tail.value == 1.0 and tail.info["truncated"] is True
    head = score("[0, 0, 10, 10]" + padding)
    assert head.value == 0.0 and head.info["reason"] == "no box found" and head.info["truncated"] is True
    cut = parse_last_box(padding + "[1, 2, 3, 4]"[:3] + "9, 9, 9]")  # a group cut by the window still parses
    assert cut == ([1.0, 9.0, 9.0, 9.0], True)


@pytest.mark.parametrize(
    ("unit", "count"),
    [("[", 10_000_000), ("]", 10_000_000), ("[1,", 3_000_000), ("[0, 0, 1, 1]", 800_000), ("<answer>", 1_000_000)],
    ids=["open-brackets", "close-brackets", "unclosed-lists", "many-boxes", "nested-tags"],
)
def test_adversarial_answers_cost_linear_time(unit: str, count: int) -> None:
    # the full-size answer (up to 10 MB) is the large input of the scaling check (CPU time, not wall clock)
    result = assert_linear(score, lambda k: unit * k, count // 8)
    assert result.status is Status.OK and 0.0 <= result.value <= 1.0


COORD = st.floats(-1e4, 1e4, allow_nan=False)


@FUZZ
@given(st.tuples(COORD, COORD, COORD, COORD), st.tuples(COORD, COORD, COORD, COORD))
def test_iou_properties(a: tuple, b: tuple) -> None:
    a = (min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3]))
    b = (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
    value = box_iou(a, b)
    assert 0.0 <= value <= 1.0 and value == box_iou(b, a)
    if (a[2] - a[0]) * (a[3] - a[1]) > 1e-6:
        assert box_iou(a, a) == pytest.approx(1.0)
    text = f"<answer>box: [{a[0]!r}, {a[1]!r},{a[2]!r} , {a[3]!r}]</answer>"
    result = IoU().score_one(Rollout(completion=text, reference={"box": list(b)}))
    assert result.value == pytest.approx(value, abs=1e-12)


@FUZZ
@given(st.text())
def test_any_answer_scores_in_range(text: str) -> None:
    component = IoU(mode="continuous")
    for completion in (text, f"<answer>{text}</answer>", f"<answer>{text}[0, 0, 5, 10]</answer>"):
        result = component.score_one(Rollout(completion=completion, reference=REF))
        assert result.status is Status.OK and 0.0 <= result.value <= 1.0 and math.isfinite(result.value)


def test_params_and_pickle() -> None:
    assert component_class("iou") is IoU
    component = IoU(mode="threshold", threshold=0.7, field="bbox")
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params
    assert clone.config() == {"mode": "threshold", "threshold": 0.7, "field": "bbox"}
    for bad, field in (
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"mode": "soft"}, "mode"),
        ({"answer_tag": "<answer>"}, "answer_tag"),
        ({"field": ""}, "field"),
    ):
        with pytest.raises(SpecError, match=rf"iou\.params\.{field}"):
            IoU(**bad)


def test_batch_output_length() -> None:
    answers = ["[0, 0, 10, 10]", "[5, 0, 15, 10]", "none", "[1, 2]"]
    rollouts = [Rollout(completion=f"<answer>{a}</answer>", reference=REF) for a in answers]
    assert [r.value for r in IoU().score_batch(rollouts)] == pytest.approx([1.0, 1 / 3, 0.0, 0.0])


def test_docstring_examples() -> None:
    assert doctest.testmod(iou_module).failed == 0
