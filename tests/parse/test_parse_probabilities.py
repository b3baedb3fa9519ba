"""Class probabilities from answers: JSON and line layouts, percentages, invalid values kept
for the reward to judge, bounds, and hypothesis properties."""

from __future__ import annotations

import doctest
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medreward.parse import probabilities as module
from medreward.parse.probabilities import MAX_ENTRIES, parse_probabilities, read_probability


def test_doctests():
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("text", "entries", "fmt"),
    [
        ('{"CN": 0.2, "MCI": 0.5, "AD": 0.3}', (("CN", 0.2), ("MCI", 0.5), ("AD", 0.3)), "json"),
        ('Forecast: {"CN": "20%", "AD": 80} done', (("CN", 0.2), ("AD", 80.0)), "json"),
        ("CN = .25\nMCI: 2.5e-1\n* AD *: 50%", (("CN", 0.25), ("MCI", 0.25), ("AD", 0.5)), "lines"),
        ("p(CN): 0.1\nCN: 0.9", (("CN", 0.1),), "lines"),  # the repeat keeps the first value
        ("CN: high\nAD: likely", (), "none"),
        ("CN: 0.2, MCI: 50%; AD = 0.3 | FTD: 0", (("CN", 0.2), ("MCI", 0.5), ("AD", 0.3), ("FTD", 0.0)), "lines"),
        ("", (), "none"),
        ('{"CN": [1], "AD": null, "MCI": true}', (), "json"),
    ],
)
def test_layouts(text, entries, fmt):
    parsed = parse_probabilities(text)
    assert parsed.entries == entries and parsed.format == fmt


def test_invalid_values_are_returned_as_read():
    parsed = parse_probabilities("CN: NaN\nMCI: -0.2\nAD: −5%\nX: inf")
    values = dict(parsed.entries)
    assert math.isnan(values["CN"]) and values["MCI"] == -0.2 and values["AD"] == -0.05 and values["X"] == math.inf


def test_duplicates_and_bounds():
    assert parse_probabilities("A: 0.1\nA: 0.2").duplicates == 1
    many = "\n".join(f"c{i}: 0.001" for i in range(MAX_ENTRIES + 20))
    parsed = parse_probabilities(many)
    assert len(parsed.entries) == MAX_ENTRIES and parsed.truncated


@pytest.mark.parametrize(("raw", "value"), [("0.3", 0.3), ("30%", 0.3), (" 7 ", 7.0), (3, 3.0), ("x", None), (None, None), ([], None)])
def test_read_probability(raw, value):
    assert read_probability(raw) == value


def test_linear_time_on_hostile_input():
    for text in ("{" * 100_000, "a:" * 500_000, "1" * 1_000_000, '{"a": ' * 50_000, "a: " + "9" * 100_000):
        t0 = time.perf_counter()
        parse_probabilities(text)
        assert time.perf_counter() - t0 < 3.0


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=()), max_size=300)
       | st.lists(st.sampled_from(["CN", "AD", ":", "=", " 0.3", "%", "\n", "{", "}", '"', ",", "-1", "nan"]),
                  max_size=30).map("".join))  # fmt: skip
def test_any_string(text):
    parsed = parse_probabilities(text)
    labels = [label for label, _ in parsed.entries]
    assert len(labels) == len(set(labels)) and all(labels)
    assert all(isinstance(v, float) for _, v in parsed.entries)


def test_lone_surrogates_do_not_crash():
    assert parse_probabilities("CN\ud800: 0.5\nAD: \udfff0.5").entries == (("CN\ufffd", 0.5),)
    assert read_probability("\ud800") is None
