"""Ranked id lists: each kind's rules, order and dedupe, bounds, and hypothesis properties
(any string: no exception, bounded time, ids well-formed)."""

from __future__ import annotations

import doctest
import time

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medreward.parse import ranked_ids as module
from medreward.parse.ranked_ids import normalize_id, parse_ranked_ids


def test_doctests():
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("text", "kind", "ids"),
    [
        ("NCT01234567, nct07654321; NCT01234567", "nct", ("NCT01234567", "NCT07654321")),
        ("XNCT01234567 NCT012345678 NCT0123456", "nct", ()),  # glued or wrong length
        ('["NCT01234567", "NCT07654321"]', "nct", ("NCT01234567", "NCT07654321")),
        ("1. 31452104\n2. PMID:29876543\n3) PMID 111", "pmid", ("31452104", "29876543", "111")),
        ("HbA1c 1.5 B12 10mg 2023-01", "pmid", ("2023", "1")),  # a free-standing number is an id
        ("00123", "pmid", ("123",)),
        ("1. E11.9\n2. i10\n3. E119", "icd10", ("E11.9", "I10")),
        ("- doc3\n- doc1\n* doc3\n1. doc9\n2) doc2.", "token", ("doc3", "doc1", "doc9", "doc2")),
        ("[\"a\", 'b', (c)] | d", "token", ("a", "b", "c", "d")),
        ("", "token", ()),
        ("- • 1. 2)", "token", ()),
    ],
)
def test_kinds(text, kind, ids):
    assert parse_ranked_ids(text, kind).ids == ids


def test_duplicates_keep_the_first_rank_and_are_counted():
    parsed = parse_ranked_ids("b a b c a", "token")
    assert parsed.ids == ("b", "a", "c") and parsed.duplicates == 2 and not parsed.truncated


def test_custom_pattern_uses_group_one_when_it_has_one():
    assert parse_ranked_ids("see doc3, then doc12", pattern=re2.compile(r"doc(\d+)")).ids == ("3", "12")
    assert parse_ranked_ids("see doc3, then doc12", pattern=re2.compile(r"doc\d+")).ids == ("doc3", "doc12")


def test_bounds_are_reported():
    text = " ".join(f"id{i}" for i in range(50))
    parsed = parse_ranked_ids(text, "token", max_ids=10)
    assert len(parsed.ids) == 10 and parsed.truncated
    parsed = parse_ranked_ids(text, "token", max_candidates=5)
    assert len(parsed.ids) == 5 and parsed.truncated


def test_normalize_id():
    assert normalize_id("nct01234567", "nct") == "NCT01234567"
    assert normalize_id("NCT1", "nct") is None
    assert normalize_id(True, "pmid") is None and normalize_id(-3, "pmid") is None
    assert normalize_id("PMID: 0042", "pmid") == "42" and normalize_id("4a", "pmid") is None
    assert normalize_id("I20-I25", "icd10") is None and normalize_id("e119", "icd10") == "E11.9"
    assert normalize_id(" x ", "token") == "x" and normalize_id("  ", "token") is None
    assert normalize_id(12, "nct") is None and normalize_id(None, "token") is None


def test_linear_time_on_long_hostile_input():
    for text in ("NCT" * 300_000, "1." * 300_000, "9" * 1_000_000, "[" * 500_000 + "a", "a " * 500_000):
        for kind in ("nct", "pmid", "token", "icd10"):
            t0 = time.perf_counter()
            parse_ranked_ids(text, kind)
            assert time.perf_counter() - t0 < 3.0, (kind, text[:10])


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=()), max_size=200), kind=st.sampled_from(["nct", "pmid", "token", "icd10"]))
def test_any_string(text, kind):
    parsed = parse_ranked_ids(text, kind)
    assert len(set(parsed.ids)) == len(parsed.ids)
    for i in parsed.ids:
        assert i and i == i.strip()
        if kind in ("nct", "pmid", "icd10"):
            assert normalize_id(i, kind) == i  # every id read is one the reference side accepts


def test_lone_surrogates_do_not_crash():
    assert parse_ranked_ids("\ud800NCT01234567 \udfff", "nct").ids == ("NCT01234567",)
    assert normalize_id("\ud800", "nct") is None
