"""The tolerant judge-answer parser: the shapes judges really produce, and any string in → no
exception, bounded (linear) time."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medreward.parse.verdicts import (
    MAX_VERDICT_CHARS,
    criterion_verdicts,
    parse_bool,
    parse_json_object,
    parse_yes_no,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"criteria_met": true}', {"criteria_met": True}),
        ('```json\n{"criteria_met": false, "explanation": "x"}\n```', {"criteria_met": False, "explanation": "x"}),
        ('```{"a": 1}```', {"a": 1}),
        ('Here you go:\n{"criteria_met": true}\nThanks!', {"criteria_met": True}),
        ('{"a": [1, 2,], "b": 3,}', {"a": [1, 2], "b": 3}),
        ("{'criteria_met': True, 'explanation': 'it\\'s \"fine\"'}", {"criteria_met": True, "explanation": 'it\'s "fine"'}),
        ("{'x': None, 'y': yes, 'z': no}", {"x": None, "y": True, "z": False}),
        ('{"explanation": "True, no trailing, }"}', {"explanation": "True, no trailing, }"}),
    ],
)
def test_parse_json_object_reads_what_judges_write(text, expected):
    assert parse_json_object(text) == expected


@pytest.mark.parametrize("text", ["", "no json", "[1, 2]", "{not: json: at all", "{" * 50_000, None, 42])
def test_parse_json_object_returns_none_when_there_is_no_object(text):
    assert parse_json_object(text) is None


def test_duplicate_keys_are_remembered():
    obj = parse_json_object('{"c1": true, "c1": false}')
    assert obj == {"c1": False} and obj.duplicates == ("c1",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("TRUE", True), (" no ", False), ("Met", True), ("not met", False), (1, True),
     (0, False), (2, None), ("perhaps", None), (None, None), ("yes" * 20, None)],
)  # fmt: skip
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("YES", True), ("no", False), (" Yes.", True), ("**NO**", False), ("Answer: yes", True), ("Not sure", None),
     ("nope", None), ("", None), ("one two three four five six seven eight yes", None)],
)  # fmt: skip
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_criterion_verdicts_formats_and_problems():
    ids = ("c1", "c2")
    listed = {"verdicts": [{"id": "c1", "criteria_met": True, "explanation": "a"}, {"id": "c2", "criteria_met": "no"}]}
    assert criterion_verdicts(listed, ids) == ({"c1": (True, "a"), "c2": (False, "")}, [])
    assert criterion_verdicts({"c1": True, "c2": {"criteria_met": False}}, ids)[1] == []
    _, problems = criterion_verdicts({"verdicts": [{"id": "c1", "criteria_met": "maybe"}, {"id": "c7", "criteria_met": True}]}, ids)
    assert problems == ["missing ids: c2", "unknown ids: c7", "unreadable criteria_met for: c1"]
    assert criterion_verdicts("not an object", ids)[1] == ["no JSON object"]


# -- any string in: no exception, bounded time ----------------------------------------------------
JSONISH = st.lists(
    st.one_of(st.sampled_from(['{', '}', '[', ']', '"', "'", ",", ":", "```json", "```", "true", "True", "yes", "\\",
                               '"criteria_met"', "null", " ", "\n"]),
              st.text(max_size=6)),
    max_size=40,
).map("".join)  # fmt: skip


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(), JSONISH))
def test_any_string_parses_without_exception(text):
    obj = parse_json_object(text)
    assert obj is None or isinstance(obj, dict)
    assert parse_yes_no(text) in (True, False, None)
    assert parse_bool(text) in (True, False, None)
    criterion_verdicts(obj, ("c1", "c2"))


@pytest.mark.parametrize(
    "piece", ["{", "[", "'", '"', "{'a': ", ",", "```", "{\"a\": [", "\\", "True ", "{}"],
)
def test_adversarial_input_parses_in_bounded_time(piece):
    # 10x the input must not cost much more than 10x the time (quadratic would be 100x); the
    # read is capped at MAX_VERDICT_CHARS, so even a huge string is bounded
    def cpu(n: int) -> float:
        text = piece * (n // len(piece))
        start = time.process_time()
        parse_json_object(text)
        return time.process_time() - start

    small, large = cpu(MAX_VERDICT_CHARS // 10), cpu(MAX_VERDICT_CHARS)
    assert large < 2.0
    assert large < max(small, 0.005) * 30
    start = time.process_time()
    parse_json_object(piece * 2_000_000)
    assert time.process_time() - start < 4.0
