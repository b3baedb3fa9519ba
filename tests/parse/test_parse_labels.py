"""Golden and property tests of the label-list parser."""

from __future__ import annotations

import doctest
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.parse.labels as labels_module
from medreward.parse.labels import LabelList, parse_labels, parse_labels_batch

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
    "adversarial",
    [
        "(" * 1_000_000,
        " and " * 200_000,
        "a," * 500_000,
        "[" * 500_000 + "]" * 500_000,
        "[" * 1_000_000,
        "-" * 1_000_000,
        "\n" * 1_000_000,
        " " * 1_000_000 + "x",
        "x" * 1_000_000,
        '["' + "a" * 1_000_000 + '"]',
        "1. " * 350_000,
    ],
)
def test_megabyte_inputs_parse_fast(adversarial: str) -> None:
    started = time.perf_counter()
    result = parse_labels(adversarial)
    assert time.perf_counter() - started < 1.0
    _check(result)
    assert result.truncated


def test_docstring_examples() -> None:
    assert doctest.testmod(labels_module).failed == 0
