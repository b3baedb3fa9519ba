"""Golden tests of the ``choice`` component (multiple-choice accuracy)."""

from __future__ import annotations

import doctest
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.choice as choice_module
from medreward.compose.spec import load_spec
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.choice import MultipleChoice

OPTIONS = {"A": "Insulin", "B": "Glipizide", "C": "Metformin", "D": "Lifestyle changes only"}
REF = {"answer": "C", "options": OPTIONS}


def score(answer: str | None, reference=REF, *, completion: str | None = None, **params):
    text = completion if completion is not None else f"<think>r</think><answer>{answer}</answer>"
    return MultipleChoice(**params).score_one(Rollout(completion=text, reference=reference))


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("C", 1.0),
        ("(c)", 1.0),
        ("**C**", 1.0),
        ("The answer is (C).", 1.0),
        ("Answer: C. Metformin", 1.0),
        ("C) Metformin", 1.0),
        ("Option C", 1.0),
        ("A", 0.0),
        ("The answer is B", 0.0),
        ("A patient like this needs C", 1.0),  # "A" is the article, C is the claim (short answer)
    ],
)
def test_letters(answer: str, expected: float) -> None:
    result = score(answer)
    assert result.status is Status.OK and result.value == expected
    assert result.info["matched_by"] == "letter"
    assert result.info["expected"] == "C"


def test_option_text_exact_match() -> None:
    result = score("Metformin")
    assert (result.value, result.info["predicted"], result.info["matched_by"]) == (1.0, "C", "option_text")
    assert score("  **metformin.** ").value == 1.0  # case, Markdown, final period
    assert score("lifestyle   changes only").info["predicted"] == "D"
    assert score("Insulin").value == 0.0
    # only an exact match counts
    partial = score("Metformin 500 mg twice daily")
    assert partial.value == 0.0 and partial.info["predicted"] is None


def test_single_letter_option_texts_do_not_shadow_letters() -> None:
    reference = {"answer": "A", "options": {"A": "B", "B": "A"}}  # e.g. blood groups
    assert score("A", reference).value == 1.0  # a one-letter answer is always a letter


def test_duplicate_option_texts_fall_back_to_the_letter() -> None:
    reference = {"answer": "B", "options": {"A": "Metformin", "B": "metformin"}}
    result = score("Metformin", reference)
    assert result.info["matched_by"] == "letter" and result.value == 0.0


def test_ambiguous_answers_score_zero() -> None:
    for answer in ("A or C", "The answer is C. Final answer: D", "Answer: (b), (c)"):
        result = score(answer)
        assert result.value == 0.0 and result.info["ambiguous"] is True
        assert len(result.info["candidates"]) == 2
        assert result.info["predicted"] is None


def test_no_letter_and_missing_section_score_zero() -> None:
    none = score("I am not sure")
    assert none.value == 0.0 and none.info["reason"] == "no choice letter found"
    missing = score(None, completion="<think>long reasoning… the answer is C")
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"
    whole = score(None, completion="the answer is C", answer_tag=None)
    assert whole.value == 1.0


def test_valid_letters_come_from_options_then_params() -> None:
    two = {"answer": "B", "options": {"A": "yes", "B": "no"}}
    assert score("E", two).value == 0.0 and score("E", two).info["reason"] == "no choice letter found"
    assert score("no", two).value == 1.0
    listed = {"answer": "b", "options": ["yes", "no", "maybe"]}  # a list reads as A, B, C
    assert score("B", listed).value == 1.0 and score("maybe", listed).info["predicted"] == "C"
    assert score("E", {"answer": "E"}).value == 1.0  # default A–E
    with pytest.raises(RecordError, match="not one of the valid letters ABCD"):
        score("E", {"answer": "E"}, letters="ABCD")
    assert score("The answer is F", {"answer": "F"}, letters="ABCDEF").value == 1.0


@pytest.mark.parametrize(
    "reference, message",
    [
        ({"answer": "Z", "options": OPTIONS}, "'Z' is not one of the valid letters ABCD"),
        ({"answer": "Metformin", "options": OPTIONS}, "not one of the valid letters"),
        ({"answer": 3, "options": OPTIONS}, "not one of the valid letters"),
        ({"answer": "A", "options": {"AB": "x"}}, "not a single letter"),
        ({"answer": "A", "options": "A: x"}, "must be an object"),
    ],
)
def test_bad_references_raise(reference, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        score("A", reference)


def test_reference_without_answer_is_not_applicable() -> None:
    result = score("C", {"options": OPTIONS})
    assert result.status is Status.NOT_APPLICABLE and result.value is None


def test_params_preset_and_pickle() -> None:
    spec = load_spec("mcq")
    [choice] = [c for c in spec.build() if c.kind == "choice"]
    assert isinstance(choice, MultipleChoice) and choice.params.field == "answer"
    assert component_class("choice") is MultipleChoice
    component = MultipleChoice(letters="dcba")
    assert component.params.letters == "ABCD"
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params and clone.config() == {"letters": "ABCD"}
    for bad in ({"letters": "A1"}, {"letters": ""}, {"field": ""}, {"colour": 1}):
        with pytest.raises(SpecError, match=r"choice\.params"):
            MultipleChoice(**bad)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_completion_scores_zero_or_one(text: str) -> None:
    component = MultipleChoice()
    for completion in (text, f"<answer>{text}</answer>"):
        result = component.score_one(Rollout(completion=completion, reference=REF))
        assert result.status is Status.OK and result.value in (0.0, 1.0)


def test_batch_output_length() -> None:
    rollouts = [Rollout(completion=f"<answer>{x}</answer>", reference=REF) for x in ("C", "A or C", "", "Metformin")]
    assert [r.value for r in MultipleChoice().score_batch(rollouts)] == [1.0, 0.0, 0.0, 1.0]


def test_docstring_examples() -> None:
    assert doctest.testmod(choice_module).failed == 0
