"""Golden tests of the ``format.tags`` component (strict R1 format check)."""

from __future__ import annotations

import doctest
import pickle
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.format_tags as format_tags_module
from medreward.errors import SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.format_tags import FormatTags


def score(text: str, **params):
    return FormatTags(**params).score_one(Rollout(completion=text))


@pytest.mark.parametrize(
    "text",
    [
        "<think>pinpoint pupils, RR 6</think><answer>opioids</answer>",
        "<think>\nreasoning\n</think>\n<answer>\nopioids\n</answer>",  # open-r1's newline layout
        "Let me think. <think>r</think> and so <answer>C</answer> done",  # text outside is allowed by default
        "<think> r </think><answer> C </answer>",
    ],
)
def test_well_formed(text: str) -> None:
    result = score(text)
    assert (result.status, result.value, result.info) == (Status.OK, 1.0, {})


@pytest.mark.parametrize(
    "name, text, problems",
    [
        ("out of order", "<answer>C</answer><think>r</think>", ["sections out of order: answer before think"]),
        ("nested", "<think>r<answer>C</answer></think>", ["sections out of order: answer before think"]),
        ("overlapping", "<think>r<answer>C</think></answer>", ["sections out of order: answer before think"]),
        ("empty think", "<think></think><answer>C</answer>", ["empty <think>"]),
        ("empty answer", "<think>r</think><answer></answer>", ["empty <answer>"]),
        ("both empty", "<think></think><answer></answer>", ["empty <think>", "empty <answer>"]),
        ("whitespace-only", "<think>r</think><answer> \n\t </answer>", ["empty <answer>"]),
        (
            "duplicated answer",
            "<think>r</think><answer>A</answer><answer>C</answer>",
            ["<answer> appears 2× and </answer> 2× (expected once each)"],
        ),
        (
            "duplicated opening",
            "<think>r</think><answer>A<answer>C</answer>",
            ["<answer> appears 2× and </answer> 1× (expected once each)"],
        ),
        (
            "unclosed think",
            "<think>long reasoning cut off",
            ["<think> appears 1× and </think> 0× (expected once each)", "missing <answer>"],
        ),
        (
            "unclosed answer",
            "<think>r</think><answer>C",
            ["<answer> appears 1× and </answer> 0× (expected once each)"],
        ),
        ("closing before opening", "</think>r<think><answer>C</answer>", ["</think> before <think>"]),
        ("missing think", "<answer>C</answer>", ["missing <think>"]),
        ("no tags", "The answer is C.", ["missing <think>", "missing <answer>"]),
        ("empty completion", "", ["missing <think>", "missing <answer>"]),
        ("wrong case", "<Think>r</Think><ANSWER>C</ANSWER>", ["missing <think>", "missing <answer>"]),
    ],
)
def test_malformed(name: str, text: str, problems: list[str]) -> None:
    result = score(text)
    assert result.status is Status.OK and result.value == 0.0, name
    assert result.info["problems"] == problems, name


@pytest.mark.parametrize(
    "text, value",
    [
        ("<think>r</think><answer>C</answer>", 1.0),
        ("  \n<think>r</think>\n\n<answer>C</answer>\n", 1.0),  # whitespace around the tags is fine
        ("Sure! <think>r</think><answer>C</answer>", 0.0),
        ("<think>r</think> so <answer>C</answer>", 0.0),
        ("<think>r</think><answer>C</answer> Hope this helps.", 0.0),
    ],
)
def test_only_tags(text: str, value: float) -> None:
    result = score(text, only_tags=True)
    assert result.value == value
    if value == 0.0:
        assert result.info["problems"] == ["text outside the tags"]
    assert score(text).value == 1.0  # without only_tags, surrounding text is allowed


def test_custom_tags() -> None:
    medix = FormatTags(tags=["thinking", "answer"])
    assert medix(["<thinking>r</thinking><answer>C</answer>", "<think>r</think><answer>C</answer>"]) == [1.0, 0.0]
    single = FormatTags(tags=["answer"])
    assert single(["<answer>C</answer>", "<answer></answer>"]) == [1.0, 0.0]
    three = FormatTags(tags=("plan", "think", "answer"))
    in_order = "<plan>p</plan><think>t</think><answer>a</answer>"
    swapped = "<think>t</think><plan>p</plan><answer>a</answer>"
    assert three([in_order, swapped]) == [1.0, 0.0]


def test_conversational_completion() -> None:
    completion = [{"role": "assistant", "content": "<think>r</think><answer>C</answer>"}]
    assert FormatTags()([completion]) == [1.0]


def test_adversarial_inputs_are_fast() -> None:
    component = FormatTags(only_tags=True)
    texts = ["<" * 10_000_000, "<think>" * 1_000_000, "<answer>" * 100_000 + "</answer>" * 100_000]
    start = time.perf_counter()
    assert component(texts) == [0.0, 0.0, 0.0]
    assert time.perf_counter() - start < 3


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(exclude_categories=())))
def test_any_text_scores_zero_or_one(text: str) -> None:
    for completion in (text, f"<think>{text}</think><answer>{text}</answer>"):
        result = score(completion, only_tags=True)
        assert result.status is Status.OK and result.value in (0.0, 1.0)
        assert (result.value == 1.0) == (not result.info.get("problems"))


def test_params_and_pickle() -> None:
    assert component_class("format.tags") is FormatTags
    component = FormatTags(tags=["thinking", "answer"], only_tags=True)
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params
    for bad in ({"tags": []}, {"tags": ["<think>"]}, {"tags": ["a b"]}, {"tags": ["x", "x"]}, {"tag": "x"}):
        with pytest.raises(SpecError, match=r"format\.tags\.params"):
            FormatTags(**bad)


def test_docstring_examples() -> None:
    assert doctest.testmod(format_tags_module).failed == 0
