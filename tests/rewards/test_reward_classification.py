"""Golden tests of the ``classification`` component (one label of a closed set)."""

from __future__ import annotations

import doctest
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.classification as classification_module
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.classification import Classification
from scaling import assert_linear

NLI = {"classes": ["entailment", "neutral", "contradiction"], "synonyms": {"contradiction": ["contradicts"]}}


def score(component: Classification, answer: str | None, label, *, completion: str | None = None):
    text = completion if completion is not None else f"<think>r</think><answer>{answer}</answer>"
    return component.score_one(Rollout(completion=text, reference={"label": label}))


@pytest.fixture(scope="module")
def nli() -> Classification:
    return Classification(**NLI)


@pytest.mark.parametrize(
    "answer, label, expected",
    [
        ("entailment", "entailment", 1.0),
        ("Entailment.", "entailment", 1.0),
        ("**ENTAILMENT**", "entailment", 1.0),
        ("neutral", "entailment", 0.0),
        ("The hypothesis contradicts the premise.", "contradiction", 1.0),  # synonym mention
        ("Label: contradiction", "contradiction", 1.0),
        ("contradiction", "Contradiction", 1.0),  # the reference is case-insensitive too
    ],
)
def test_golden(nli: Classification, answer: str, label: str, expected: float) -> None:
    result = score(nli, answer, label)
    assert result.status is Status.OK and result.value == expected


def test_two_classes_are_ambiguous(nli: Classification) -> None:
    result = score(nli, "neutral or contradiction", "contradiction")
    assert result.value == 0.0
    assert result.info["mentioned"] == ["neutral", "contradiction"] and result.info["ambiguous"] is True
    assert score(nli, "contradiction. Contradiction!", "contradiction").value == 1.0  # repeated: fine


def test_longest_mention_and_negation() -> None:
    triage = Classification(classes=["urgent", "non-urgent"], synonyms={"non-urgent": ["not urgent"]})
    assert score(triage, "non urgent", "non-urgent").value == 1.0
    assert score(triage, "This is not urgent.", "non-urgent").value == 1.0  # synonym beats negation
    plain = Classification(classes=["urgent", "routine"])
    negated = score(plain, "not urgent", "urgent")
    assert negated.value == 0.0 and negated.info["reason"] == "no class named"
    assert score(plain, "not urgent, routine", "routine").value == 1.0


def test_nothing_named_or_missing_section(nli: Classification) -> None:
    none = score(nli, "I cannot tell", "neutral")
    assert none.value == 0.0 and none.info["reason"] == "no class named"
    missing = score(nli, None, "neutral", completion="<think>neutral")
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"


def test_class_weights_are_normalised_to_max_one() -> None:
    triage = Classification(classes=["1", "2", "3", "4", "5"], class_weights={"1": 5, "2": 4, "3": 2, "4": 1, "5": 1})
    assert score(triage, "ESI level 1", 1).value == 1.0  # int reference reads as "1"
    assert score(triage, "2", "2").value == pytest.approx(0.8)
    assert score(triage, "Level 4", "4").value == pytest.approx(0.2)
    assert score(triage, "level 3, not 2", 3).value == pytest.approx(0.4)
    assert score(triage, "5", "4").value == 0.0  # wrong answers score 0 whatever the weight


def test_bad_references_raise(nli: Classification) -> None:
    for label, message in (("maybe", "not one of the classes"), ("contradicts", "not one of the classes"),
                           (True, "must be a class name"), (["neutral"], "must be a class name")):  # fmt: skip
        with pytest.raises(RecordError, match=message):
            score(nli, "neutral", label)
    missing = nli.score_one(Rollout(completion="<answer>neutral</answer>", reference={}))
    assert missing.status is Status.NOT_APPLICABLE


@pytest.mark.parametrize(
    "params, message",
    [
        ({"classes": ["a"]}, "at least 2"),
        ({"classes": ["yes", "YES"]}, "same name"),
        ({"classes": ["a", "!!"]}, "no letters"),
        ({"classes": ["a", "b"], "synonyms": {"c": ["x"]}}, "not one of the classes"),
        ({"classes": ["a", "b"], "synonyms": {"a": ["B"]}}, "already names 'b'"),
        ({"classes": ["a", "b"], "class_weights": {"a": 1}}, "every class"),
        ({"classes": ["a", "b"], "class_weights": {"a": 1, "b": 0}}, "must be > 0"),
        ({"classes": ["a", "b"], "class_weights": {"a": 1, "b": float("nan")}}, "must be > 0"),
        ({}, "classes"),
    ],
)
def test_bad_params_fail_at_load(params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Classification(**params)


def test_registered_and_pickles(nli: Classification) -> None:
    assert component_class("classification") is Classification
    clone = pickle.loads(pickle.dumps(nli))
    assert clone.params == nli.params
    assert score(clone, "it contradicts", "contradiction").value == 1.0


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_completion_scores_in_range(text: str) -> None:
    component = Classification(**NLI)
    for completion in (text, f"<answer>{text}</answer>"):
        result = component.score_one(Rollout(completion=completion, reference={"label": "neutral"}))
        assert result.status is Status.OK and result.value in (0.0, 1.0)


def test_long_answers_cost_linear_time(nli: Classification) -> None:
    # 1 MB answer (200k words) is the large input of the scaling check (CPU time, not a wall-clock bound)
    result = assert_linear(lambda answer: score(nli, answer, "neutral"), lambda k: "word " * k + "neutral", 25_000)
    assert result.status is Status.OK and result.value == 1.0


def test_batch_output_length(nli: Classification) -> None:
    reference = {"label": "neutral"}
    rollouts = [Rollout(completion=f"<answer>{x}</answer>", reference=reference) for x in ("neutral", "", "x")]
    assert [r.value for r in nli.score_batch(rollouts)] == [1.0, 0.0, 0.0]


def test_docstring_examples() -> None:
    assert doctest.testmod(classification_module).failed == 0
