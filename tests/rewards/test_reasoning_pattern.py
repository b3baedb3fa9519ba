"""Golden and property tests of ``reasoning_pattern`` (RPR, Lv et al.) and ``rpr_calibrate``."""

from __future__ import annotations

import doctest
import pickle
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.reasoning_pattern as rpr_module
from medreward.errors import SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.reasoning_pattern import (
    RPR_PHRASES,
    ReasoningPattern,
    rpr_calibrate,
    rpr_score,
)
from scaling import assert_linear


def think_reward(solution_str: str) -> float:
    """The source's ``think_reward`` (math_score.py), ported as the oracle: 40 presence checks,
    /20 capped at 1, minus the 20-gram repetition ratio and the "user: " count, floored at 0."""
    think_pos = solution_str.find("Assistant: <think>")
    solution_str = solution_str[think_pos + len("Assistant: <think> ") :].lower()
    score = sum(float(p in solution_str) for p in RPR_PHRASES) / 20
    score = min(1, score)
    words = solution_str.split()
    grams = [tuple(words[i : i + 20]) for i in range(len(words) - 20 + 1)]
    counts = Counter(grams)
    score -= sum(1 for c in counts.values() if c > 1) / len(grams) if grams else 0
    score -= solution_str.count("user: ")
    return max(0, score)


def score(completion: str, **params):
    return ReasoningPattern(**params).score_one(Rollout(completion=completion))


def test_phrase_list_is_the_sources() -> None:
    assert len(RPR_PHRASES) == 40
    assert "makes sence" in RPR_PHRASES and "makes sense" not in RPR_PHRASES  # sic, as in the source
    trailing = {p for p in RPR_PHRASES if p.endswith(" ")}
    assert trailing == {
        "we can observe ", "we can see ", "first, ", "firstly, ", "next, ", "finally, ",
        "since we ", "because we ", "given there ", "for instance ", "for example ",
    }  # fmt: skip


def test_known_phrase_count() -> None:
    think = "First, I need to recall the toxidrome. Wait, let me check the pupils. Therefore opioids; thus naloxone."
    result = score(f"<think>{think}</think><answer>opioids</answer>")
    assert result.status is Status.OK
    assert result.info["hits"] == ["i need to", "wait", "let me check", "first, ", "thus", "therefore"]
    assert result.value == pytest.approx(6 / 20)
    assert result.info["repetition_ratio"] == 0.0 and result.info["user_turns"] == 0


def test_presence_not_counts_and_substrings() -> None:
    assert score("<think>Wait. Wait. Wait. Wait. Wait.</think>").value == pytest.approx(1 / 20)
    assert score("<think>It makes sense.</think>").value == 0.0  # only the misspelling counts
    assert score("<think>It makes sence.</think>").value == pytest.approx(1 / 20)
    assert score("<think>thusly</think>").info["hits"] == ["thus"]  # substring match, as in the source
    assert score("<think>first,then</think>").value == 0.0  # "first, " needs its space


def test_saturates_at_twenty_phrases() -> None:
    every = " | ".join(RPR_PHRASES)
    result = score(f"<think>{every}</think>")
    assert len(result.info["hits"]) == 40 and result.value == 1.0
    twenty = " | ".join(RPR_PHRASES[:20])
    assert score(f"<think>{twenty}</think>").value == 1.0
    assert score(f"<think>{' | '.join(RPR_PHRASES[:19])}</think>").value == pytest.approx(0.95)


def test_repetition_ratio_20gram() -> None:
    base = ["therefore", "thus", "hence", "wait", "consequently", "thereby"] + [f"w{i}" for i in range(6, 25)]
    text = " ".join(base + base)  # 50 words → 31 twenty-grams; the 6 inside one copy occur twice
    result = score(f"<think>{text}</think>")
    assert result.info["repetition_ratio"] == pytest.approx(6 / 31)
    assert result.value == pytest.approx(6 / 20 - 6 / 31)
    loop = " ".join(["wait"] * 40)  # 21 twenty-grams, all the same: ratio 1/21
    assert score(f"<think>{loop}</think>").value == pytest.approx(1 / 20 - 1 / 21)


def test_user_turns_zero_the_reward() -> None:
    text = "First, we need to compute. Therefore 5. User: now solve another one. Thus 6."
    result = score(f"<think>{text}</think>")
    assert result.info["user_turns"] == 1 and result.value == 0.0


def test_sections() -> None:
    missing = score("<answer>C</answer>")
    assert (missing.status, missing.value, missing.info["reason"]) == (Status.OK, 0.0, "no complete <think> section")
    assert score("<think>wait, thus it is cut off").value == 0.0  # unclosed: truncated reasoning
    assert score("").value == 0.0
    format_only = score("<think></think><answer></answer>")
    assert format_only.value == 0.0 and format_only.info["hits"] == []
    # the answer is outside the think section; with section_tag=None it counts
    text = "<think>plain</think><answer>Therefore C</answer>"
    assert score(text).value == 0.0
    assert score(text, section_tag=None).value == pytest.approx(0.05)
    assert score("<reasoning>wait</reasoning>", section_tag="reasoning").value == pytest.approx(0.05)
    # the last complete section is judged
    assert score("<think>wait thus hence</think><think>plain</think>").value == 0.0


FRAGMENTS = st.sampled_from([*RPR_PHRASES[::3], "user: ", "User: ", "the", "dose", "Wait", " ", "\n", "x,", "so"])


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAGMENTS, max_size=80).map("".join))
def test_matches_source_think_reward(text: str) -> None:
    value, _ = rpr_score(text)
    assert value == pytest.approx(think_reward("Assistant: <think> " + text), abs=1e-12)
    assert 0.0 <= value <= 1.0


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_scores_in_range(text: str) -> None:
    for completion in (text, f"<think>{text}</think>"):
        result = score(completion)
        assert result.status is Status.OK and 0.0 <= result.value <= 1.0


def test_huge_think_costs_linear_time() -> None:
    # scaling check in CPU time, not a wall-clock bound: 25k words below the 200k-word cap (so the
    # n-gram count scales too) against 200,008 words, just past it (so the result is the capped one)
    result = assert_linear(score, lambda k: "<think>" + "wait " * k + "</think>", 25_001)
    # 200k words examined → 199981 twenty-grams, one distinct one repeated: the source's ratio counts
    # distinct repeated n-grams, so a one-word loop is barely penalised (faithful, and worth knowing)
    assert result.info["truncated"] is True and result.info["hits"] == ["wait"]
    assert result.value == pytest.approx(1 / 20 - 1 / 199_981)


def test_calibrate_golden() -> None:
    assert rpr_calibrate([0.2, 0.3, 0.9, None], [0.5, 1.0, 1.0, 1.0]) == pytest.approx([0.25, 0.4, 0.9, None])
    assert rpr_calibrate([0.5, 0.49], [1.0, 1.0]) == pytest.approx([0.5, 0.59])  # threshold is strict: rm < 0.5
    assert rpr_calibrate([0.0, 0.4], [None, 1.0], weight=1.0) == [0.0, 1.0]  # None RPR: unchanged; capped at 1
    assert rpr_calibrate([0.7], [1.0], threshold=0.8) == pytest.approx([0.8])
    assert rpr_calibrate([], []) == []
    with pytest.raises(ValueError, match="2 reward-model scores but 1 RPR"):
        rpr_calibrate([0.1, 0.2], [1.0])


def test_calibrate_with_component_scores() -> None:
    completions = ["<think>wait, therefore, thus</think><answer>x</answer>", "<answer>x</answer>"]
    rpr = ReasoningPattern()(completions)
    assert rpr == pytest.approx([0.15, 0.0])
    assert rpr_calibrate([0.0, 0.0], rpr) == pytest.approx([0.015, 0.0])


def test_params_and_pickle() -> None:
    assert component_class("reasoning_pattern") is ReasoningPattern
    component = ReasoningPattern(section_tag="reasoning")
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params and clone.config() == {"section_tag": "reasoning"}
    assert ReasoningPattern(section_tag=None).config() == {"section_tag": None}
    for bad in ({"section_tag": "<think>"}, {"section_tag": ""}, {"phrases": []}):
        with pytest.raises(SpecError, match=r"reasoning_pattern\.params"):
            ReasoningPattern(**bad)


def test_docstring_examples() -> None:
    assert doctest.testmod(rpr_module).failed == 0
