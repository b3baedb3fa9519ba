"""Golden and property tests of the multiple-choice letter parser."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.parse.choice as choice_module
from medreward.parse.choice import (
    WINDOW,
    Choice,
    letter_set,
    parse_choice,
    parse_choice_batch,
)
from scaling import assert_linear

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The answer is (C)", "C"),
        ("The answer is (C).", "C"),
        ("**C**", "C"),
        ("Answer: C. Metformin", "C"),
        ("C", "C"),
        ("(c)", "C"),
        ("Option C", "C"),
        ("C) Metformin", "C"),
        ("C: Metformin", "C"),
        ("C - Metformin", "C"),
        ("[D]", "D"),
        ("c.", "C"),
        ("  **b** ", "B"),
        ("**Answer:** C", "C"),
        ("## Answer\nB", "B"),
        ("The correct answer is: **C. Metformin**", "C"),
        ("The best option is D", "D"),
        ("I'd go with B", "B"),
        ("answer is c", "C"),
        ("\\boxed{C}", "C"),
        ("Final Answer: $\\boxed{\\text{B}}$", "B"),
        ("C is correct", "C"),
        ("Option B is the best answer", "B"),
        ("Metformin (C)", "C"),
        ("I think it's C", "C"),
        ("<answer>C</answer>", "C"),
        ("Between (A) and (C), I choose (C)", "C"),
        ("The answer is C, not A", "C"),
        ("The answer is C, a biguanide", "C"),
        ("The answer is C. C is correct.", "C"),  # the same letter repeated is fine
        ("Answers A and B are incorrect; the answer is C", "C"),
        ("answer choice A is incorrect; the answer is C", "C"),
        ("Metformin (C). (A) is wrong.", "C"),
        ("I choose a beta blocker, option B", "B"),
        ("A. Metformin", "A"),
        ("A", "A"),
    ],
)
def test_formats(text: str, letter: str) -> None:
    result = parse_choice(text)
    assert result.letter == letter, result
    assert not result.ambiguous
    assert result.candidates == (letter,)


@pytest.mark.parametrize(
    "text",
    [
        "A patient with diabetes should start metformin.",
        "I think",
        "I am not sure",
        "The answer is a beta blocker",
        "To answer this question, I need to think",
        "Cocaine",
        "e.g. metformin",
        "B12 deficiency",
        "A-fib is likely",
        "option a is wrong",
        "",
        "   ",
    ],
)
def test_english_is_not_a_choice(text: str) -> None:
    # letters A–J so that "I" is a valid letter too: it must still not be read out of "I think"
    result = parse_choice(text, letters="ABCDEFGHIJ")
    assert result == Choice(None), result


@pytest.mark.parametrize(
    "text, candidates",
    [
        ("The answer is A or C", ("A", "C")),
        ("Answer: (b), (d)", ("B", "D")),
        ("C or D", ("C", "D")),
        ("The answer is B/C", ("B", "C")),
        ("Final answer: A. Actually the answer is D.", ("A", "D")),
        # a leading list of letters hedges too (the audit's partial-hedge probe found "C, A" read as C)
        ("C, A", ("C", "A")),
        ("A, B, C, D, E", ("A", "B", "C", "D", "E")),
        ("(B), (D) Metformin", ("B", "D")),
        ("C/A", ("C", "A")),
    ],
)
def test_two_letters_are_ambiguous(text: str, candidates: tuple[str, ...]) -> None:
    result = parse_choice(text)
    assert result.letter is None
    assert result.ambiguous
    assert result.candidates == candidates


@pytest.mark.parametrize(
    "text, letter",
    [
        ("not C", None),  # the audit's negation probe: "not C" used to read as C
        ("Not (C).", None),
        ("The answer is not C", None),
        ("It is anything except B", None),
        ("The answer is C, not A", "C"),
        ("(C) not (A)", "C"),
        ("C. Not A, because of the rash.", "C"),
    ],
)
def test_a_negated_letter_is_not_a_choice(text: str, letter: str | None) -> None:
    assert parse_choice(text).letter == letter


def test_claim_beats_a_leading_letter_and_marks() -> None:
    assert parse_choice("A. Metformin is wrong here; the answer is (C).").letter == "C"
    assert parse_choice("(B) Glipizide. Final answer: D").rule == "claim"


def test_leading_beats_marked() -> None:
    result = parse_choice("(C) Metformin; compare (A) insulin")
    assert (result.letter, result.rule) == ("C", "leading")


def test_letter_set() -> None:
    assert parse_choice("The answer is E", letters="ABCD").letter is None
    assert parse_choice("The answer is E", letters="ABCDE").letter == "E"
    # out-of-set letters are not candidates: "F" never makes "C" ambiguous
    assert parse_choice("The answer is C or F", letters="ABCD").letter == "C"
    assert parse_choice("B", letters={"A": "x", "B": "y"}).letter == "B"
    assert letter_set("abc") == frozenset("ABC")
    for bad in ("", "A1", ["AB"]):
        with pytest.raises(ValueError):
            letter_set(bad)


def test_bare_letters_only_in_short_answers() -> None:
    long_prose = "After weighing the renal function and the glucose level we settle on C" + " ok" * 20
    assert parse_choice("we settle on C").letter == "C"
    assert parse_choice(long_prose).letter is None


def test_claims_beyond_the_window_are_not_read() -> None:
    text = "The answer is C. " + "filler words " * (WINDOW // 13 + 10)
    assert parse_choice(text).letter is None
    assert parse_choice(text + " Final answer: C").letter == "C"


def test_batch_length_and_order() -> None:
    texts = ["C", "nothing", "The answer is (a)", "A or B"]
    out = parse_choice_batch(texts, "ABCD")
    assert [c.letter for c in out] == ["C", None, "A", None]
    assert parse_choice_batch([], "ABCD") == []


# -- properties ------------------------------------------------------------------------------
TOKENS = st.sampled_from(
    ["A", "a", "I", "i", "C", "c", "(", ")", "[", "]", "**", "__", ".", ",", " ", "\n", "-", "answer",
     "Answer:", "is", "or", "and", "/", "option", "choice", "not", "incorrect", "correct", "\\boxed{",
     "}", "e.g.", "the", "patient", "'", "’", "é", "\ufffd", "\x00"]
)  # fmt: skip


def _check(result: Choice, letters: frozenset[str]) -> None:
    assert isinstance(result, Choice)
    if result.ambiguous:
        assert result.letter is None and len(set(result.candidates)) >= 2
    elif result.letter is not None:
        assert result.letter in letters and result.candidates == (result.letter,)
    else:
        assert result.candidates == ()
    assert set(result.candidates) <= letters


@FUZZ
@given(st.text())
def test_any_text_parses(text: str) -> None:
    _check(parse_choice(text), frozenset("ABCDE"))


@FUZZ
@given(st.lists(TOKENS, max_size=40).map("".join), st.sampled_from(["ABCD", "ABCDE", "ABCDEFGHIJ"]))
def test_tricky_token_soup_parses(text: str, letters: str) -> None:
    _check(parse_choice(text, letters), letter_set(letters))


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=20))
def test_batch_has_one_result_per_text(texts: list[str]) -> None:
    assert len(parse_choice_batch(texts)) == len(texts)


@pytest.mark.parametrize(
    ("unit", "count", "tail"),
    [
        ("answer ", 150_000, ""),
        ("(", 1_000_000, ""),
        ("A ", 500_000, ""),
        ("answer is ", 100_000, "C"),
        (" ", 1_000_000, ""),
        ("**", 500_000, ""),
        ("a,", 500_000, ""),
        ("(A) ", 250_000, ""),
        ("\\boxed{", 150_000, ""),
        ("e.g. ", 200_000, ""),
    ],
)
def test_megabyte_inputs_parse_in_linear_time(unit: str, count: int, tail: str) -> None:
    # the megabyte input is the large input of the scaling check (CPU time, not a wall-clock bound)
    result = assert_linear(parse_choice, lambda k: unit * k + tail, count // 8)
    _check(result, frozenset("ABCDE"))


def test_docstring_examples() -> None:
    assert doctest.testmod(choice_module).failed == 0
