"""Golden tests of the ``format.tags`` component (strict R1 format check, and the open-r1 / TRL
compatibility modes checked against the peers' own test cases)."""

from __future__ import annotations

import doctest
import pickle
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.format_tags as format_tags_module
from medreward.errors import SpecError
from medreward.parse.tags import open_r1_format, tag_count_credit, trl_think_format
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.format_tags import FormatTags
from scaling import assert_linear


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


# hostile inputs as (builder of size k, k of the full-size input); the full-size input is the large
# input of a scaling check in CPU time (no wall-clock bound)
STRICT_HOSTILE = {
    "10MB of <": (lambda k: "<" * k, 10_000_000),
    "1e6 opening thinks": (lambda k: "<think>" * k, 1_000_000),
    "1e5 nested answers": (lambda k: "<answer>" * k + "</answer>" * k, 100_000),
}


@pytest.mark.parametrize("name", list(STRICT_HOSTILE))
def test_adversarial_inputs_cost_linear_time(name: str) -> None:
    component = FormatTags(only_tags=True)
    make, full = STRICT_HOSTILE[name]
    assert assert_linear(lambda text: component([text]), make, full // 8) == [0.0]


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


# -- compatibility modes: the peers' own test cases ------------------------------------------------
# TRL: huggingface/trl tests/test_rewards.py (commit e776045b), ThinkFormatRewardTester, verbatim.
TRL_VALID = [
    "<think>This is my reasoning.</think>This is my answer.",
    "<think>\nThis is my reasoning.\n</think>\nThis is my answer.",
    "<think>\nThis is\nmy reasoning.\n</think>\nThis is my answer.",
    "<think>\nThis is <some tag> my reasoning.</think>\nThis is my answer.",
    "<think></think>\nThis is my answer.",
]
TRL_INVALID = [
    "<think>\nThis is my reasoning.\nThis is my answer.",
    "<think>This is my reasoning.\nThis is my answer.",
    "This is my reasoning. This is my answer.",
    "This is my reasoning.\nThis is my answer.",
    "This is my reasoning.</think>\nThis is my answer.",
    "This is my reasoning.</think>This is my answer.",
    "This<think>is my reasoning.</think>\nThis is my answer.",
    "<think>This is<think>my reasoning.</think></think>This is my answer.",
    "<think>This is</think>\nmy\n<think>reasoning.</think>\nThis is my answer.",
]
# open-r1: huggingface/open-r1 tests/test_rewards.py (commit 69ae7d4b): test_format_reward_correct,
# test_format_reward_incorrect, test_format_reward_specific_multiline and the tag_count tests, verbatim.
OPEN_R1_CORRECT = [
    "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>",
    "<think>\nI will count each distinct object in the image:\n1. Purple scooter\n2. Red bicycle\n3. Green motorcycle"
    "\n4. Gray sedan\n5. Yellow school bus\n6. Small green double-decker bus\n7. Small red car\n8. Small purple car\n"
    "9. Small gray dirt bike\n\nThere are 9 distinct objects in total.\n</think>\n<answer>\n9\n</answer>",
]
OPEN_R1_INCORRECT = [
    "<think>Only thinking</think>",
    "<answer>Only answer</answer>",
    "No tags at all",
    "<think>Missing closing</think><answer>Missing closing",
    "<think>Wrong order</answer><answer>Wrong order</think>",
]
OPEN_R1_TAG_COUNT = [
    ("<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>", 1.0),
    ("Some reasoning\n</think>\n<answer>\nThe answer\n</answer>", 0.75),
    ("<think>\nSome reasoning\n<answer>\nThe answer\n</answer>", 0.75),
    ("<think>\nSome reasoning\n</think>\nThe answer\n</answer>", 0.75),
    ("<think>\nSome reasoning\n</think>\n<answer>\nThe answer", 0.75),
    ("Some reasoning\nThe answer", 0.0),
]


def values(texts: list[str], **params) -> list[float]:
    return FormatTags(**params)(texts)


def test_trl_think_mode_agrees_with_trl_on_trls_own_cases() -> None:
    from trl.rewards import think_format_reward

    texts = TRL_VALID + TRL_INVALID
    expected = [1.0] * len(TRL_VALID) + [0.0] * len(TRL_INVALID)  # TRL's published expectations
    assert think_format_reward([[{"content": t}] for t in texts]) == expected  # the installed function agrees
    assert values(texts, mode="trl_think") == expected


def test_open_r1_mode_agrees_with_open_r1s_own_cases() -> None:
    assert values(OPEN_R1_CORRECT, mode="open_r1") == [1.0] * len(OPEN_R1_CORRECT)
    assert values(OPEN_R1_INCORRECT, mode="open_r1") == [0.0] * len(OPEN_R1_INCORRECT)
    result = score(OPEN_R1_INCORRECT[0], mode="open_r1")
    assert result.info == {"problems": ["does not match open-r1's format_reward pattern"]}


@pytest.mark.parametrize("text, expected", OPEN_R1_TAG_COUNT)
def test_tag_count_mode_agrees_with_open_r1s_own_cases(text: str, expected: float) -> None:
    result = score(text, mode="tag_count")
    assert result.value == expected
    assert bool(result.info.get("problems")) == (expected < 1.0)


# The issue's table (issue 9, item 7): open-r1's format_reward, the default, and only_tags.
ISSUE_TABLE = [
    ("<think>r</think><answer>C</answer>", 0.0, 1.0, 1.0),
    ("preamble <think>\nr\n</think>\n<answer>\nC\n</answer>", 0.0, 1.0, 0.0),
    ("<think>\n\n</think>\n<answer>\nC\n</answer>", 1.0, 0.0, 0.0),
    ("<think>\nr\n</think>\n<answer>\nC\n</answer>\n<answer>\nD\n</answer>", 1.0, 0.0, 0.0),
    ("<think>\nr\n</think>\n<answer>\nC\n</answer>\ntrailing", 1.0, 1.0, 0.0),
]


@pytest.mark.parametrize("text, open_r1, default, only_tags", ISSUE_TABLE)
def test_the_issue_table(text: str, open_r1: float, default: float, only_tags: float) -> None:
    assert score(text, mode="open_r1").value == open_r1 == float(bool(OPEN_R1_REGEX.match(text)))
    assert score(text).value == default
    assert score(text, only_tags=True).value == only_tags


# open-r1 is not installable (not on PyPI), so the fuzz below compares with its one-line pattern,
# copied from huggingface/open-r1 src/open_r1/rewards.py::format_reward; TRL's runs for real.
OPEN_R1_REGEX = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE)
SOUP_TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "\n", "r", " ", "C", "<", ">", "x\ny"]
# open-r1's delimiters whole, or the soup would almost never match its pattern
DELIMITERS = ["<think>\n", "\n</think>\n<answer>\n", "\n</answer>", "\n</answer>\n", "\n</think>\n", "\n<answer>\n"]
SOUP = st.tuples(st.booleans(), st.lists(st.sampled_from(SOUP_TOKENS + DELIMITERS), max_size=12)).map(
    lambda t: ("<think>\n" if t[0] else "") + "".join(t[1])
)


@settings(deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(SOUP)
def test_compatibility_modes_match_the_peers_on_tag_soup(text: str) -> None:
    from trl.rewards import think_format_reward

    assert open_r1_format(text) == bool(OPEN_R1_REGEX.match(text)), text
    assert trl_think_format(text) == bool(think_format_reward([[{"content": text}]])[0]), text
    credit = sum(0.25 for t in ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>") if text.count(t) == 1)
    assert tag_count_credit(text)[0] == credit


def test_modes_generalise_to_other_tags_and_reject_only_tags() -> None:
    text = "<reasoning>\nr\n</reasoning>\n<answer>\nC\n</answer>"
    assert values([text], tags=("reasoning", "answer"), mode="open_r1") == [1.0]
    assert values([text], tags=("reasoning", "answer"), mode="tag_count") == [1.0]
    assert values(["<reasoning>r</reasoning> C"], tags=("reasoning", "answer"), mode="trl_think") == [1.0]
    three = "<a>\n1\n</a>\n<b>\n2\n</b>\n<c>\n3\n</c>"
    assert values([three, three.replace("</b>", "")], tags=("a", "b", "c"), mode="open_r1") == [1.0, 0.0]
    assert values([three.replace("<b>", "")], tags=("a", "b", "c"), mode="tag_count") == [pytest.approx(5 / 6)]
    with pytest.raises(SpecError, match="only_tags applies to mode 'strict', not 'open_r1'"):
        FormatTags(mode="open_r1", only_tags=True)
    with pytest.raises(SpecError, match="mode"):
        FormatTags(mode="regex")


COMPATIBILITY_HOSTILE = {
    "unclosed answers": (lambda k: "<think>\n" + "\n</think>\n<answer" * k, 200_000),
    "1e6 newlines": (lambda k: "<think>\n" + "\n" * k + "</answer>", 1_000_000),
    "closing thinks": (lambda k: "<think>" + "</think>" * k, 200_000),
}


@pytest.mark.parametrize("name", list(COMPATIBILITY_HOSTILE))
@pytest.mark.parametrize("mode", ["open_r1", "trl_think", "tag_count"])
def test_compatibility_modes_are_linear(mode: str, name: str) -> None:
    component = FormatTags(mode=mode)
    make, full = COMPATIBILITY_HOSTILE[name]
    assert_linear(lambda text: component([text]), make, full // 8)
