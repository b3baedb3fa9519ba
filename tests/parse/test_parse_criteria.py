"""Criterion labels from answers: JSON and line layouts, label words, evidence ids, bounds,
and hypothesis properties (any string: no exception, bounded time, well-formed output)."""

from __future__ import annotations

import doctest
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medreward.parse import criteria as module
from medreward.parse.criteria import LABELS, MAX_ITEMS, normalize_label, parse_criteria


def test_doctests():
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def labels(text):
    return {i.id: i.label for i in parse_criteria(text).items}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"C1": "met", "C2": "not_met", "C3": "Unknown"}', {"c1": "met", "c2": "not_met", "c3": "unknown"}),
        ('```json\n{"C1": {"status": "Not met", "evidence": [1]}}\n```', {"c1": "not_met"}),
        ('Here: [{"criterion": "Age >= 18", "verdict": "satisfied"}] done', {"age >= 18": "met"}),
        ('{"criteria": [{"id": 1, "label": "no"}], "evidence": "2, 5"}', {"1": "not_met"}),
        ("C1 = met\n* **C2**: does not meet criterion\n- C3: cannot determine", {"c1": "met", "c2": "not_met", "c3": "unknown"}),
        ("Inclusion 1: The patient is 54", {"inclusion 1": None}),
        ("no colon here", {}),
        ("C1: met; C2 = unknown; reason: none\nEvidence: 1; 2", {"c1": "met", "c2": "unknown", "reason": None}),
        ('{"C1": true, "C2": false, "C3": 3}', {"c1": "met", "c2": "not_met", "c3": None}),
    ],
)
def test_layouts(text, expected):
    assert labels(text) == expected


def test_evidence_is_collected_from_items_and_top_level():
    a = parse_criteria('{"criteria": [{"id": "a", "label": "met", "evidence": [3, 1]}], "evidence": [1, 9]}')
    assert a.evidence == ("1", "9", "3") and a.format == "json"
    b = parse_criteria("C1: met\nEvidence: 3; 7, 3")
    assert b.evidence == ("3", "7") and b.format == "lines"


def test_duplicates_keep_the_first_and_are_counted():
    a = parse_criteria("C1: met\nc1: not met")
    assert [(i.id, i.label) for i in a.items] == [("c1", "met")] and a.duplicates == 1


def test_empty_and_unparseable():
    assert parse_criteria("").format == "none" and parse_criteria("   ").items == ()
    assert parse_criteria("nothing to see").format == "none"
    assert [(i.id, i.label) for i in parse_criteria("{broken json: met").items] == [("broken json", "met")]  # a line


def test_bounds():
    many = "\n".join(f"C{i}: met" for i in range(MAX_ITEMS + 50))
    a = parse_criteria(many)
    assert len(a.items) == MAX_ITEMS and a.truncated


@pytest.mark.parametrize(
    ("value", "label"),
    [("met", "met"), ("Met.", "met"), ("NOT-MET", "not_met"), ("unmet", "not_met"), ("not enough information", "unknown"),
     ("Insufficient", "unknown"), ("n/a", None), ("partially met", None), ("", None), (None, None), (1, None)],
)  # fmt: skip
def test_normalize_label(value, label):
    assert normalize_label(value) == label


def test_linear_time_on_hostile_input():
    for text in ("[" * 100_000, "{" * 100_000 + "}", "a:" * 500_000, "\n" * 1_000_000, '{"a": ' * 50_000):
        t0 = time.perf_counter()
        parse_criteria(text)
        assert time.perf_counter() - t0 < 3.0


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=()), max_size=300)
       | st.lists(st.sampled_from(["C1", ":", " met", " not met", "\n", "{", "}", "[", "]", '"', ",", "evidence", "1"]),
                  max_size=30).map("".join))  # fmt: skip
def test_any_string(text):
    a = parse_criteria(text)
    ids = [i.id for i in a.items]
    assert len(ids) == len(set(ids)) and all(ids)
    assert all(i.label in LABELS or i.label is None for i in a.items)
    assert len(a.evidence) == len(set(a.evidence))
