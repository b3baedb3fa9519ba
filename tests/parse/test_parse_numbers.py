"""Golden and property tests of the number-with-unit parser."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.parse.numbers as numbers_module
from medreward.parse.numbers import (
    FINAL_WINDOW,
    MAX_NUMBERS,
    ParsedNumber,
    final_number,
    normalize_unit,
    parse_numbers,
)
from scaling import assert_linear

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


def values_units(text: str) -> list[tuple[float, str | None]]:
    return [(n.value, n.unit) for n in parse_numbers(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12.5 mg/dL", [(12.5, "mg / dL")]),
        ("1,234", [(1234.0, None)]),
        ("1,234,567.5 cells", [(1234567.5, "cell")]),
        ("≈ 3.2e-1", [(0.32, None)]),
        ("3.2E+2", [(320.0, None)]),
        ("-4", [(-4.0, None)]),
        ("x = −3.5", [(-3.5, None)]),
        ("+5", [(5.0, None)]),
        (".5 mg", [(0.5, "mg")]),
        ("0.5%", [(0.5, "percent")]),
        ("WBC 12.5 ×10^9/L", [(12.5, "1e9 / L")]),
        ("WBC 12.5 x10⁹/L", [(12.5, "1e9 / L")]),
        ("5 x 10^9", [(5e9, None)]),
        ("37.2 °C", [(37.2, "degC")]),
        ("98.6°F", [(98.6, "degF")]),
        ("101 degrees Fahrenheit", [(101.0, "degF")]),
        ("98 mmHg", [(98.0, "mmHg")]),
        ("98 mm Hg", [(98.0, "mmHg")]),
        ("eGFR of 58 mL/min/1.73m²", [(58.0, "mL / min / (1.73 * m ** 2)")]),
        ("58 mL/min/1.73 m^2", [(58.0, "mL / min / (1.73 * m ** 2)")]),
        ("BMI 31 kg/m2", [(31.0, "kg / m ** 2")]),
        ("72 bpm", [(72.0, "(beat / min)")]),
        ("RR 18 breaths/min", [(18.0, "breath / min")]),
        ("RR 18/min", [(18.0, "1 / min")]),
        ("150 lbs", [(150.0, "lb")]),
        ("Cr 106 µmol/L", [(106.0, "umol / L")]),
        ("Cr 106 umol/L", [(106.0, "umol / L")]),
        ("HCO3 24 mEq/L", [(24.0, "mEq / L")]),
        ("Glucose 120 MG/DL", [(120.0, "mg / dL")]),
        ("dopamine 5 mcg/kg/min", [(5.0, "ug / kg / min")]),
        ("QTc 450 msec", [(450.0, "ms")]),
        ("12mg", [(12.0, "mg")]),
        ("ALT 45 IU/L", [(45.0, "IU / L")]),
        ("Hb 13 g/dL", [(13.0, "g / dL")]),
        ("score: 3 points", [(3.0, "count")]),
        # not units: element symbols, common words, unknown words
        ("Mg 2.0 Cl 104", [(2.0, None), (104.0, None)]),
        ("Na 140 K 4.0", [(140.0, None), (4.0, None)]),
        ("3 in total", [(3.0, None)]),
        ("12 patients", [(12.0, None)]),
        ("98.6 F", [(98.6, None)]),
        # not numbers: digits in words or names, ordinals, dotted ids, absurd lengths
        ("HbA1c 7.2%", [(7.2, "percent")]),
        ("E11.9", []),
        ("CURB-65 score is 2", [(2.0, None)]),
        ("COVID-19", []),
        ("2nd dose", []),
        ("5x daily", []),
        ("version 1.2.3", []),
        ("1" * 60, []),
        ("12,5", [(12.0, None), (5.0, None)]),  # decimal comma is not supported: two numbers
    ],
)
def test_values_and_units(text, expected):
    assert values_units(text) == expected


@pytest.mark.parametrize(
    "text, low, high, value, unit",
    [
        ("10-12 mg", 10.0, 12.0, 11.0, "mg"),
        ("10–12", 10.0, 12.0, 11.0, None),
        ("10 to 12 mmHg", 10.0, 12.0, 11.0, "mmHg"),
        ("between 10 and 12", 10.0, 12.0, 11.0, None),
        ("between 10 mg and 12 mg", 10.0, 12.0, 11.0, "mg"),
        ("-4 to -2", -4.0, -2.0, -3.0, None),
        ("12 ± 2 mg", 10.0, 14.0, 12.0, "mg"),
        ("12 +/- 2", 10.0, 14.0, 12.0, None),
        ("10~12", 10.0, 12.0, 11.0, None),
    ],
)
def test_ranges_are_flagged(text, low, high, value, unit):
    (n,) = parse_numbers(text)
    assert (n.is_range, n.low, n.high, n.value, n.unit) == (True, low, high, value, unit)
    assert n.raw == text[n.span[0] : n.span[1]]


@pytest.mark.parametrize(
    "text, values",
    [
        ("140 - 104 - 24 = 12", [140.0, 104.0, 24.0, 12.0]),  # arithmetic, not ranges
        ("10 - 12 = -2", [10.0, 12.0, -2.0]),
        ("2023-01-05", [2023.0, 1.0, 5.0]),  # a date is a chain, not a range
        ("12-10", [12.0, 10.0]),  # descending hyphen pair: not a range
    ],
)
def test_hyphens_that_are_not_ranges(text, values):
    parsed = parse_numbers(text)
    assert [n.value for n in parsed] == values
    assert not any(n.is_range for n in parsed)


@pytest.mark.parametrize(
    "text, approximate, comparator",
    [
        ("~12", True, None),
        ("≈ 12", True, None),
        ("about 12", True, None),
        ("approximately 12", True, None),
        ("approx. 12", True, None),
        ("roughly 12 mg", True, None),
        ("Ca 9.1", False, None),  # calcium, not "circa"
        ("12", False, None),
        ("< 5", False, "<"),
        ("≥ 5", False, ">="),
        (">=5", False, ">="),
        ("less than 5", False, "<"),
        ("at least 3", False, ">="),
        ("about < 5", True, "<"),
    ],
)
def test_hedges(text, approximate, comparator):
    (n,) = parse_numbers(text)
    assert (n.approximate, n.comparator) == (approximate, comparator)


@pytest.mark.parametrize(
    "text, cue",
    [("x = 4", "="), ("Answer: 4", ":"), ("The score is 4", "is"), ("120/80", "/"), ("5 out of 9", "out of"),
     ("≈ 4", "≈"), ("4", None)],
)  # fmt: skip
def test_cue_is_the_last_number_introducer(text, cue):
    assert parse_numbers(text)[-1].cue == cue


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("The creatinine clearance is 48.6 mL/min.", 48.6, "mL / min"),
        ("CrCl = (140 - 70) × 80 / (72 × 1.1) = 70.7 mL/min", 70.7, "mL / min"),
        ("The HAS-BLED score is 3 (range 0-9).", 3.0, None),  # cued value beats a later range
        ("Weight 70 kg; so 48", 48.0, None),  # no cue: the last number
        ("Score: 5 out of 9", 5.0, None),  # a denominator is never the answer
        ("BP 120/80 mmHg", 120.0, None),
        ("18", 18.0, None),
        ("eGFR ≈ 58 mL/min/1.73 m²", 58.0, "mL / min / (1.73 * m ** 2)"),
    ],
)
def test_final_number(text, value, unit):
    n = final_number(text)
    assert n is not None and (n.value, n.unit) == (value, unit)


def test_final_number_of_a_range_is_the_range():
    n = final_number("The dose is 10-12 mg")
    assert n is not None and n.is_range and (n.low, n.high) == (10.0, 12.0)


def test_final_number_reads_only_the_tail():
    text = "x = 7 " + "filler " * (FINAL_WINDOW // 4) + "the answer is 42"
    assert final_number(text).value == 42.0
    assert final_number("x = 7" + " " * FINAL_WINDOW) is None
    # a number cut by the window's start is not read as its tail digits
    assert final_number("123456", window=3) is None


def test_final_number_none():
    assert final_number("") is None
    assert final_number("no numbers at all") is None


@pytest.mark.parametrize(
    "unit, expected",
    [
        ("mg/dL", "mg / dL"),
        ("mmol/L", "mmol / L"),
        ("µmol/L", "umol / L"),
        ("μmol/L", "umol / L"),  # Greek mu as well as the micro sign
        ("mEq/L", "mEq / L"),
        ("mL/min/1.73 m²", "mL / min / (1.73 * m ** 2)"),
        ("°C", "degC"),
        ("℉", "degF"),
        ("%", "percent"),
        ("x10^9/L", "1e9 / L"),
        ("10^9/L", "1e9 / L"),
        ("×10⁹/L", "1e9 / L"),
        ("breaths/min", "breath / min"),
        ("points", "count"),
        ("mOsm/kg", "mOsm / kg"),
        ("  kg  ", "kg"),
        ("furlongs", None),
        ("mg/dL extra", None),
        ("", None),
    ],
)
def test_normalize_unit(unit, expected):
    assert normalize_unit(unit) == expected


def test_parse_numbers_caps_output():
    assert len(parse_numbers("1 " * 10_000)) == MAX_NUMBERS
    assert len(parse_numbers("1 2 3 4 5", max_numbers=2)) == 2
    assert parse_numbers("") == []


def test_span_covers_sign_range_and_unit():
    text = "Result: -4.5 mg/dL then 10-12 mmol/L"
    a, b = parse_numbers(text)
    assert a.raw == "-4.5 mg/dL" and text[a.span[0] : a.span[1]] == a.raw
    assert b.raw == "10-12 mmol/L"


def test_parsed_number_is_frozen():
    n = parse_numbers("5")[0]
    with pytest.raises(AttributeError):
        n.value = 6.0  # type: ignore[misc]


def _check_mentions(text: str, mentions: list[ParsedNumber]) -> None:
    assert len(mentions) <= MAX_NUMBERS
    last_end = 0
    for n in mentions:
        assert isinstance(n, ParsedNumber)
        assert all(math.isfinite(x) for x in (n.value, n.low, n.high))
        assert n.low <= n.value <= n.high
        assert n.is_range or n.low == n.high == n.value
        start, end = n.span
        assert last_end <= start < end <= len(text)
        assert text[start:end] == n.raw
        last_end = end


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_any_text(text):
    mentions = parse_numbers(text)
    _check_mentions(text, mentions)
    final = final_number(text)
    assert final is None or final in mentions or len(text) > FINAL_WINDOW


_PIECES = st.sampled_from(
    ["1", "12", ".", ",", "-", "–", "~", "≈", " ", "e", "E", "x", "×", "10", "^", "⁹", "²", "/", "mg", "dL", "%",
     "°", "C", "mL", "min", "1.73", "m", "to", "between", "and", "±", "+/-", "<", "=", "is", "µ", "\n", "Hg", "about"]
)  # fmt: skip


@FUZZ
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_fuzz_number_like_text(text):
    _check_mentions(text, parse_numbers(text))
    final_number(text)


@FUZZ
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.sampled_from(["mg/dL", "kg", "%", "mmHg", ""]))
def test_fuzz_formatted_values_round_trip(x, unit):
    literal = f"{x:.4f}"
    n = final_number(f"The answer is {literal} {unit}")
    assert n is not None and n.value == float(literal)
    assert n.unit == (normalize_unit(unit) if unit else None)


# repeated unit and repeat count of the megabyte input. The scaling check (CPU time, no wall-clock
# bound) compares 1 MB with 8 MB: the parser stops after a fixed number of candidates, and that
# fixed work must not hide a scan that grows quadratically with the text
ADVERSARIAL = {
    "digits": ("1", 10**6),
    "dotted": ("1.", 500_000),
    "codes": ("E11.", 250_000),
    "numbers": ("1 ", 500_000),
    "hyphens": ("1-", 500_000),
    "commas": ("1,", 500_000),
    "exponents": ("1e", 500_000),
    "scales": ("1x10^", 200_000),
    "units": ("1 mg/", 200_000),
    "ranges": ("1 to ", 200_000),
    "tildes": ("~", 10**6),
    "micro": ("µ", 10**6),
    "superscripts": ("²", 10**6),
    "degrees": ("1°", 500_000),
    "words": ("a1 ", 333_336),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_linear_time_on_adversarial_megabyte(name):
    unit, count = ADVERSARIAL[name]
    def parse_both(text: str) -> tuple[list[ParsedNumber], ParsedNumber | None]:
        return parse_numbers(text), final_number(text)

    mentions, final = assert_linear(parse_both, lambda k: unit * k, count)
    assert len(mentions) <= MAX_NUMBERS
    assert final is None or math.isfinite(final.value)


def test_doctests():
    result = doctest.testmod(numbers_module)
    assert result.attempted > 0 and result.failed == 0
