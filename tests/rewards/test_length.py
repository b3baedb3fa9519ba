"""Golden tests of the ``length`` component (DAPO overlong, open-r1 cosine, target band)."""

from __future__ import annotations

import doctest
import logging
import math
import pickle

import pytest

import medreward.rewards.length as length_module
from medreward.compose.spec import Spec
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.length import Length, completion_length
from scaling import assert_linear


def words(n: int) -> str:
    return " ".join(["w"] * n)


def value(component: Length, text: str, reference: dict | None = None, **extra) -> float | None:
    return component.score_one(Rollout(completion=text, reference=reference or {}, extra=extra)).value


# -- overlong (DAPO Eq. 13) ----------------------------------------------------------------------------
# L_max = 20, L_cache = 8: no penalty up to 12, linear to -1 at 20, -1 beyond.
OVERLONG = {"mode": "overlong", "max_length": 20, "cache_length": 8, "unit": "words"}


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, 0.0),
        (12, 0.0),  # exactly L_max - L_cache: still free
        (13, -1 / 8),
        (16, -0.5),  # midpoint of the cache window
        (20, -1.0),  # exactly L_max
        (21, -1.0),
        (500, -1.0),
    ],
)
def test_overlong_golden(n: int, expected: float) -> None:
    assert value(Length(**OVERLONG), words(n)) == pytest.approx(expected, abs=1e-12)


def test_overlong_penalty_factor_scales_and_declares_range() -> None:
    component = Length(**OVERLONG, penalty_factor=0.5)
    assert component.output_range == (-0.5, 0.0)
    assert value(component, words(16)) == pytest.approx(-0.25)
    assert value(component, words(99)) == -0.5


def test_overlong_dapo_defaults_in_tokens() -> None:
    component = Length(mode="overlong", max_length=20480, cache_length=4096)
    ids = list(range(16384 + 2048))  # the middle of DAPO's 4096-token buffer
    result = component.score_one(Rollout(completion="short text", extra={"completion_ids": ids}))
    assert result.value == pytest.approx(-0.5)
    assert result.info == {"length": 18432, "unit": "tokens", "length_source": "completion_ids"}


# -- cosine (open-r1) ----------------------------------------------------------------------------
COSINE = {"mode": "cosine", "max_length": 100, "unit": "chars"}
RIGHT, WRONG = {"correct": True}, {"correct": False}


@pytest.mark.parametrize(
    "n_chars, reference, expected",
    [
        (0, RIGHT, 1.0),  # p = 0: max_value_correct
        (50, RIGHT, 0.75),  # p = 0.5: midpoint
        (100, RIGHT, 0.5),  # p = 1: min_value_correct
        (250, RIGHT, 0.5),  # p = 2.5 clipped to 1 (open-r1 would give 0.5 + 0.25(1 + cos 2.5π) = 0.75)
        (0, WRONG, 0.0),  # open-r1 config defaults: min_value_wrong = 0.0 at p = 0
        (50, WRONG, -0.25),
        (100, WRONG, -0.5),  # max_value_wrong at p = 1
        (150, WRONG, -0.5),  # p = 1.5 clipped (open-r1: -0.5 + 0.25(1 + cos 1.5π) = -0.25)
    ],
)
def test_cosine_golden(n_chars: int, reference: dict, expected: float) -> None:
    result = Length(**COSINE).score_one(Rollout(completion="x" * n_chars, reference=reference))
    assert result.status is Status.OK
    assert result.value == pytest.approx(expected, abs=1e-12)
    assert result.info["progress"] == min(1.0, n_chars / 100)
    assert result.info["correct"] is reference["correct"]


def test_cosine_clipping_differs_from_unclipped_open_r1() -> None:
    n = 150  # p = 1.5: open-r1's unclipped cosine gives 0.5 + 0.25·(1 + cos 1.5π) = 0.75 (rising again)
    unclipped = 0.5 + 0.25 * (1 + math.cos(math.pi * 1.5))
    assert unclipped == pytest.approx(0.75)
    assert value(Length(**COSINE), "x" * n, RIGHT) == 0.5


def test_cosine_paper_values_and_range() -> None:
    paper = Length(**COSINE, min_value_wrong=-1.0)  # the function default of open-r1 / the paper
    assert paper.output_range == (-1.0, 1.0)
    assert value(paper, "", WRONG) == -1.0 and value(paper, "x" * 100, WRONG) == -0.5
    assert Length(**COSINE).output_range == (-0.5, 1.0)
    assert value(Length(**COSINE, correct_field="is_right"), "", {"is_right": False}) == 0.0


def test_cosine_needs_a_boolean_correctness() -> None:
    component = Length(**COSINE)
    for reference in ({}, {"correct": None}, {"other": True}):
        result = component.score_one(Rollout(completion="abc", reference=reference))
        assert result.status is Status.NOT_APPLICABLE and result.value is None
        assert "'correct'" in result.info["reason"]
    for bad in (1, "true", 0.0):
        with pytest.raises(RecordError, match="must be true or false"):
            component.score_one(Rollout(completion="abc", reference={"correct": bad}))


# -- band ----------------------------------------------------------------------------------------
BAND = {"mode": "band", "low": 10, "high": 20, "slack": 5, "unit": "words"}


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, 0.0), (5, 0.0), (7, 0.4), (9, 0.8),  # below: 1 - (10 - n)/5
        (10, 1.0), (15, 1.0), (20, 1.0),  # inside [10, 20]
        (21, 0.8), (24, 0.2), (25, 0.0), (99, 0.0),  # above: 1 - (n - 20)/5
    ],
)
def test_band_golden(n: int, expected: float) -> None:
    assert value(Length(**BAND), words(n)) == pytest.approx(expected, abs=1e-12)


def test_band_of_one_point() -> None:
    component = Length(mode="band", low=3, high=3, slack=2.0, unit="words")
    assert [value(component, words(n)) for n in (1, 2, 3, 4, 5)] == [0.0, 0.5, 1.0, 0.5, 0.0]


# -- units -----------------------------------------------------------------------------------------
def test_units() -> None:
    text = "Pinpoint  pupils,\nRR 6/min"  # 26 chars, 4 words
    rollout = Rollout(completion=text)
    assert completion_length(rollout, "chars") == (26, "chars")
    assert completion_length(rollout, "words") == (4, "words")
    assert completion_length(rollout, "tokens") == (4, "whitespace")
    with_ids = Rollout(completion=text, extra={"completion_ids": [1, 2, 3, 4, 5, 6, 7]})
    assert completion_length(with_ids, "tokens") == (7, "completion_ids")
    assert completion_length(with_ids, "words") == (4, "words")  # ids only count as tokens
    as_tuple = Rollout(completion=text, extra={"completion_ids": (1, 2)})
    assert completion_length(as_tuple, "tokens") == (2, "completion_ids")
    for bad in ("1 2 3", 12, {"a": 1}):
        with pytest.raises(RecordError, match="completion_ids"):
            completion_length(Rollout(completion=text, extra={"completion_ids": bad}), "tokens")


def test_conversational_completion_counts_assistant_turns() -> None:
    completion = [{"role": "assistant", "content": "a b c"}]
    assert completion_length(Rollout(completion=completion), "words") == (3, "words")


def test_token_approximation_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    component = Length(**{**OVERLONG, "unit": "tokens"})
    with caplog.at_level(logging.WARNING, logger="medreward.rewards.length"):
        results = component.score_batch([Rollout(completion=words(n)) for n in (1, 16, 30)])
    assert [r.value for r in results] == [0.0, -0.5, -1.0]
    assert all(r.info["length_source"] == "whitespace" for r in results)
    assert sum("completion_ids" in rec.getMessage() for rec in caplog.records) == 1


# -- degenerate outputs ----------------------------------------------------------------------------
def test_empty_and_format_only_outputs() -> None:
    overlong, cosine, band = Length(**OVERLONG), Length(**COSINE), Length(**BAND)
    for text in ("", "<think></think><answer></answer>"):
        assert value(overlong, text) == 0.0  # short: no penalty (a length reward never judges content)
        assert value(band, text) == 0.0
    assert value(cosine, "", RIGHT) == 1.0
    # "<think></think><answer></answer>" is 32 chars: p = 0.32
    expected = 0.5 + 0.25 * (1 + math.cos(math.pi * 0.32))
    assert value(cosine, "<think></think><answer></answer>", RIGHT) == pytest.approx(expected)


def test_non_text_completion_raises() -> None:
    from medreward.text import TextTypeError

    with pytest.raises(TextTypeError):
        Length(**OVERLONG).score_one(Rollout(completion=None))


def test_huge_completion_costs_linear_time() -> None:
    words, chars = Length(**OVERLONG), Length(**{**OVERLONG, "unit": "chars", "max_length": 10**8})
    # 10 MB ("word " x 2M) is the large input of the scaling check (CPU time, not a wall-clock bound)
    values = assert_linear(lambda text: (value(words, text), value(chars, text)), lambda k: "word " * k, 250_000)
    assert values == (-1.0, 0.0)


# -- params ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, message",
    [
        ({}, r"length\.params\.mode: Field required"),
        ({"mode": "long"}, r"length\.params\.mode"),
        ({"mode": "overlong", "cache_length": 4}, "max_length is required when mode = 'overlong'"),
        ({"mode": "overlong", "max_length": 20}, "cache_length is required when mode = 'overlong'"),
        ({"mode": "overlong", "max_length": 20, "cache_length": 20}, r"cache_length \(20\) must be smaller than"),
        ({"mode": "overlong", "max_length": 20, "cache_length": 0}, r"length\.params\.cache_length"),
        ({"mode": "overlong", "max_length": 20, "cache_length": 4, "penalty_factor": -1}, r"params\.penalty_factor"),
        ({"mode": "overlong", "max_length": 20, "cache_length": 4, "low": 3}, "low is not used when mode = 'overlong'"),
        ({"mode": "cosine"}, "max_length is required when mode = 'cosine'"),
        ({"mode": "cosine", "max_length": 0}, r"params\.max_length"),
        ({"mode": "cosine", "max_length": 9, "cache_length": 3}, "cache_length is not used when mode = 'cosine'"),
        ({"mode": "cosine", "max_length": 9, "min_value_wrong": float("nan")}, r"params\.min_value_wrong"),
        ({"mode": "band", "low": 1, "high": 2}, "slack is required when mode = 'band'"),
        ({"mode": "band", "low": 5, "high": 2, "slack": 1}, r"low \(5\) must not exceed high \(2\)"),
        ({"mode": "band", "low": 1, "high": 2, "slack": 0}, r"params\.slack"),
        ({"mode": "band", "low": 1, "high": 2, "slack": 1, "max_length": 5}, "max_length is not used when mode"),
        ({"mode": "band", "low": 1, "high": 2, "slack": 1, "unit": "bytes"}, r"params\.unit"),
        ({"mode": "band", "low": 1, "high": 2, "slack": 1, "colour": 1}, r"params\.colour: unknown parameter"),
    ],
)
def test_bad_params_name_the_field(params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Length(**params)


def test_spec_load_pickle_and_round_trip() -> None:
    assert component_class("length") is Length
    spec = Spec.from_dict(
        {
            "name": "len",
            "components": [
                {
                    "name": "overlong",
                    "kind": "length",
                    "params": {"mode": "overlong", "max_length": 20, "cache_length": 8},
                },
                {"name": "cos", "kind": "length", "params": {"mode": "cosine", "max_length": 100, "unit": "chars"}},
            ],
        }
    )
    overlong, cosine = spec.build()
    assert overlong.config() == {"mode": "overlong", "max_length": 20, "cache_length": 8}
    for component in (overlong, cosine):
        clone = pickle.loads(pickle.dumps(component))
        assert clone.params == component.params and clone.name == component.name
    with pytest.raises(SpecError, match=r"^spec: components\.0\.params: Value error, max_length is required"):
        Spec.from_dict({"name": "bad", "components": [{"name": "l", "kind": "length", "params": {"mode": "overlong"}}]})


def test_docstring_examples() -> None:
    assert doctest.testmod(length_module).failed == 0
