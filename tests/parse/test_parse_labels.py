"""Golden and property tests of the label-list parser."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.parse.labels as labels_module
from medreward.parse.labels import LabelList, parse_labels, parse_labels_batch
from scaling import assert_linear

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    "text, labels",
    [
        ("opioids", ("opioids",)),
        ("opioids, ethanol", ("opioids", "ethanol")),
        ("opioids; ethanol;", ("opioids", "ethanol")),
        ("opioids\nethanol\n", ("opioids", "ethanol")),
        ("- opioids\n- ethanol", ("opioids", "ethanol")),
        ("* opioids\n* ethanol", ("opioids", "ethanol")),
        ("• opioids\n• ethanol", ("opioids", "ethanol")),
        ("1. opioids\n2. ethanol", ("opioids", "ethanol")),
        ("1) opioids\n10) ethanol", ("opioids", "ethanol")),
        ('["opioids", "ethanol"]', ("opioids", "ethanol")),
        ("[opioids, 'ethanol']", ("opioids", "ethanol")),
        ('{"substances": ["opioids"]}', ("opioids",)),
        ('```json\n["opioids", "ethanol"]\n```', ("opioids", "ethanol")),
        ("opioids and ethanol", ("opioids", "ethanol")),
        ("Opioids AND Benzodiazepines", ("Opioids", "Benzodiazepines")),
        ("cocaine & ethanol", ("cocaine", "ethanol")),
        ("opioids,  and   ethanol", ("opioids", "ethanol")),
        ('"opioids", "ethanol".', ("opioids", "ethanol")),
        ("**Opioids**, __ethanol__.", ("Opioids", "ethanol")),
        ("`opioids`", ("opioids",)),
        ("Answer: cocaine and ethanol", ("cocaine", "ethanol")),
        ("**Final answer:** opioids", ("opioids",)),
        ("opioids, Opioids, OPIOIDS, ethanol", ("opioids", "ethanol")),  # dedupe keeps the first spelling
        ("opioids (e.g., heroin), ethanol", ("opioids (e.g., heroin)", "ethanol")),
        ("Salicylates [aspirin; methyl salicylate]", ("Salicylates [aspirin; methyl salicylate]",)),
        ("opioids or benzodiazepines", ("opioids or benzodiazepines",)),  # a hedge stays one label
        ("oxycodone/acetaminophen", ("oxycodone/acetaminophen",)),
        ("brandy", ("brandy",)),  # "and" inside a word does not split
        ("none", ("none",)),
    ],
)
def test_layouts(text: str, labels: tuple[str, ...]) -> None:
    result = parse_labels(text)
    assert result.labels == labels, result
    assert not result.truncated


def test_formats() -> None:
    assert parse_labels("[]") == LabelList((), False, "json")
    assert parse_labels('["a"]').format == "json"
    assert parse_labels("a, b").format == "text"
    assert parse_labels("").format == "empty"
    assert parse_labels(" \n\t ").format == "empty"
    assert parse_labels("[a, b").labels == ("a", "b")  # unclosed bracket: read as text


def test_label_count_is_capped() -> None:
    text = ", ".join(f"label{i}" for i in range(300))
    result = parse_labels(text)
    assert len(result.labels) == 256 and result.truncated
    assert result.labels[0] == "label0" and result.labels[-1] == "label255"
    small = parse_labels(text, max_labels=3)
    assert small.labels == ("label0", "label1", "label2") and small.truncated


def test_long_labels_are_cut_and_marked() -> None:
    result = parse_labels("x" * 500 + ", opioids", max_label_chars=100)
    assert result.truncated
    assert result.labels[0] == "x" * 100 + "…"
    assert result.labels[1] == "opioids"


def test_text_length_is_capped() -> None:
    result = parse_labels("a, " * 100 + "b", max_chars=10)
    assert result.truncated and result.labels == ("a",)


def test_bad_bounds_raise() -> None:
    with pytest.raises(ValueError):
        parse_labels("a", max_labels=0)


def test_batch() -> None:
    out = parse_labels_batch(["a, b", "", "[]"])
    assert [r.labels for r in out] == [("a", "b"), (), ()]
    assert parse_labels_batch([]) == []


# -- properties ------------------------------------------------------------------------------
TOKENS = st.sampled_from(
    ["opioids", "ethanol", ",", ";", "&", " and ", " AND ", "\n", "- ", "* ", "1. ", "(", ")", "[", "]", "{",
     "}", '"', "'", "**", "__", "`", "```", ".", ":", "Answer:", " ", "\t", "\\", "null", "é", "\ufffd"]
)  # fmt: skip


def _check(result: LabelList) -> None:
    assert isinstance(result, LabelList)
    assert len(result.labels) <= 256
    assert all(isinstance(x, str) and x for x in result.labels)
    keys = [x.casefold() for x in result.labels]
    assert len(keys) == len(set(keys))  # deduplicated
    assert all(len(x) <= 129 for x in result.labels)


@FUZZ
@given(st.text())
def test_any_text_parses(text: str) -> None:
    _check(parse_labels(text))


@FUZZ
@given(st.lists(TOKENS, max_size=50).map("".join))
def test_token_soup_parses(text: str) -> None:
    _check(parse_labels(text))


@FUZZ
@given(st.lists(st.text(alphabet="abc", min_size=1, max_size=5), min_size=1, max_size=10))
def test_comma_lists_round_trip(items: list[str]) -> None:
    expected = tuple(dict.fromkeys(items))
    assert parse_labels(", ".join(items)).labels == expected
    assert parse_labels("\n".join(f"- {x}" for x in items)).labels == expected


# characters that a plain comma list may hold, and near misses that must send it down the general path
PLAIN_ALPHABET = st.sampled_from(list("aAnNdD_-, ") + ["é", "ß", "²", "İ", " and ", " AND ", "__", "  ", ";", "\t", "\xa0", "*", "."])


@FUZZ
@given(st.lists(PLAIN_ALPHABET, min_size=1, max_size=40).map("".join), st.integers(1, 6), st.integers(1, 12))
def test_plain_list_fast_path_reads_like_the_general_path(text: str, max_labels: int, max_label_chars: int) -> None:
    s = text.strip()
    if not s:
        return
    general = labels_module._parse_layouts(s, max_labels, max_label_chars, False)
    assert parse_labels(text, max_labels=max_labels, max_label_chars=max_label_chars) == general


def test_plain_list_fast_path_takes_the_usual_answers() -> None:
    for answer in ("opioids, ETHANOL, toxic_alcohols", "beta-blockers", "opioids,ethanol,opioids"):
        assert labels_module._is_plain_list(answer)
    for answer in ("- opioids", "opioids and ethanol", "Answer: opioids", "**opioids**", "opioids;  ethanol"):
        assert not labels_module._is_plain_list(answer)


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=20))
def test_batch_has_one_result_per_text(texts: list[str]) -> None:
    assert len(parse_labels_batch(texts)) == len(texts)


@pytest.mark.parametrize(
    ("make", "full"),
    [
        (lambda k: "(" * k, 1_000_000),
        (lambda k: " and " * k, 200_000),
        (lambda k: "a," * k, 500_000),
        (lambda k: "[" * k + "]" * k, 500_000),
        (lambda k: "[" * k, 1_000_000),
        (lambda k: "-" * k, 1_000_000),
        (lambda k: "\n" * k, 1_000_000),
        (lambda k: " " * k + "x", 1_000_000),
        (lambda k: "x" * k, 1_000_000),
        (lambda k: '["' + "a" * k + '"]', 1_000_000),
        (lambda k: "1. " * k, 350_000),
    ],
    ids=["parens", "ands", "commas", "brackets", "open-brackets", "dashes", "newlines", "spaces", "letters",
         "json-string", "numbered"],
)
def test_megabyte_inputs_parse_in_linear_time(make: Callable[[int], str], full: int) -> None:
    # scaling checks in CPU time, not wall-clock bounds; the megabyte input is the large one.
    # With the default max_chars the input is cut (the result says so) ...
    result = assert_linear(parse_labels, make, full // 8)
    _check(result)
    assert result.truncated
    # ... and with the cap lifted the parser itself reads the whole megabyte in linear time
    _check(assert_linear(lambda text: parse_labels(text, max_chars=10_000_000), make, full // 8))


def test_docstring_examples() -> None:
    assert doctest.testmod(labels_module).failed == 0


# -- negation (issue 9, item 21) -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, labels, negated",
    [
        ("cocaine; benzodiazepines excluded", ("cocaine",), ("benzodiazepines",)),
        ("cocaine, benzodiazepines excluded", ("cocaine",), ("benzodiazepines",)),  # the list asserts cocaine
        ("opioids and benzodiazepines ruled out", (), ("opioids", "benzodiazepines")),  # joined by "and"
        ("cocaine, opioids and benzodiazepines were ruled out", ("cocaine",), ("opioids", "benzodiazepines")),
        ("no opioids", (), ("opioids",)),
        ("Not ethanol", (), ("ethanol",)),
        ("opioids; not ethanol", ("opioids",), ("ethanol",)),
        ("negative for opioids, cocaine but positive for ethanol", ("positive for ethanol",), ("opioids", "cocaine")),
        # an affirmation ends a pre-trigger's scope without a terminator word
        ("negative for opioids, positive for ethanol", ("positive for ethanol",), ("opioids",)),
        ("no opioids, consistent with ethanol, cocaine", ("consistent with ethanol", "cocaine"), ("opioids",)),
        ("opioids, without ethanol", ("opioids",), ("ethanol",)),
        ("denies ethanol; opioids", ("opioids",), ("ethanol",)),
        ("free of opioids. Ethanol", ("Ethanol",), ("opioids",)),  # ". " ends the clause
        ("cocaine. No benzodiazepines.", ("cocaine",), ("benzodiazepines",)),
        ("benzodiazepines unlikely\nopioids", ("opioids",), ("benzodiazepines",)),  # a new line ends it too
        ("opioids; benzodiazepines negative", ("opioids",), ("benzodiazepines",)),
        ("cocaine rather than amphetamines", ("cocaine",), ("amphetamines",)),
        ("opioids (no ethanol)", ("opioids",), ("ethanol",)),
        ('["cocaine", "no ethanol"]', ("cocaine",), ("ethanol",)),  # each JSON item is its own clause
        ("- cocaine\n- benzodiazepines ruled out", ("cocaine",), ("benzodiazepines",)),
        # pseudo-triggers are not negation: the label stands, the phrase goes
        ("benzodiazepines not excluded, opioids", ("benzodiazepines", "opioids"), ()),
        ("cannot rule out opioids", ("opioids",), ()),
        ("ethanol, cannot be ruled out", ("ethanol",), ()),
        # a trigger alone, and words that merely contain one, are labels
        ("no", ("no",), ()),
        ("negative", ("negative",), ()),
        ("none", ("none",), ()),
        ("cannabinoids, anticonvulsants, nonbenzodiazepine", ("cannabinoids", "anticonvulsants", "nonbenzodiazepine"), ()),
    ],
)
def test_negated_mentions_are_not_labels(text: str, labels: tuple[str, ...], negated: tuple[str, ...]) -> None:
    result = parse_labels(text)
    assert (result.labels, result.negated) == (labels, negated)


NEGATION_TOKENS = st.sampled_from(
    ["no ", "not ", "excluded", " ruled out", "negative for ", "opioids", "ethanol", ", ", "; ", " and ", ". ",
     " but ", "\n", "(", ")", "cannot be ruled out", "without ", "-", "[", "]", '"', " "]
)  # fmt: skip


@FUZZ
@given(st.lists(NEGATION_TOKENS, max_size=40).map("".join))
def test_negation_soup_parses_within_bounds(text: str) -> None:
    result = parse_labels(text, max_labels=5)
    assert len(result.labels) <= 5 and len(result.negated) <= 5
    assert all(label and label == label.strip() for label in result.labels + result.negated)


@FUZZ
@given(st.lists(st.sampled_from(["opioids", "ethanol", "cocaine", "heroin", "LSD"]), min_size=1, max_size=6, unique=True))
def test_appending_a_negated_clause_only_adds_to_negated(items: list[str]) -> None:
    base = parse_labels(", ".join(items))
    more = parse_labels(", ".join(items) + "; no benzodiazepines")
    assert more.labels == base.labels and more.negated == ("benzodiazepines",)


@pytest.mark.parametrize(
    ("unit", "tail", "n"),
    [
        ("no ", "", 30_000),
        ("not excluded, ", "", 8_000),
        ("(no ", "", 20_000),
        ("a and ", "ruled out", 20_000),
        ("a ruled out and ", "", 1_000),  # every post-trigger reaches back over the whole "and" run
        ("no x; ", "", 3_000),
    ],
)
def test_negation_stays_linear(unit: str, tail: str, n: int) -> None:
    assert_linear(lambda text: parse_labels(text, max_chars=10_000_000), lambda k: unit * k + tail, n)


def test_negation_docstring_examples() -> None:
    import medreward.parse.negation as negation_module

    assert doctest.testmod(negation_module).failed == 0


def test_every_trigger_holds_a_hint_word() -> None:
    # an answer skips the negation reader when it holds no hint word: every trigger must have one
    from medreward.parse import negation

    for phrase in negation._PRE + negation._POST + negation._PSEUDO:
        assert negation._HINT_WORDS.intersection(phrase.split()), phrase
