"""Golden and property tests of the ``numeric`` reward (hand-computed values)."""

from __future__ import annotations

import doctest
import math
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.numeric as numeric_module
from medreward.compose.spec import load_spec
from medreward.errors import RecordError, SpecError
from medreward.parse.numbers import normalize_unit, unit_lexicon
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.numeric import Band, NumericValue, convert, unit_registry

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


def run(answer: str, reference: dict, **params):
    return NumericValue(**params).score_one(Rollout(completion=f"<answer>{answer}</answer>", reference=reference))


def value(answer: str, reference: dict, **params) -> float | None:
    return run(answer, reference, **params).value


# -- unit conversion ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, reference, params, expected",
    [
        # 150 lb = 68.0389 kg: inside 68 ± 1 %, but not an exact 68
        ("150 lb", {"value": 68.0, "unit": "kg"}, {"rel_tol": 0.01}, 1.0),
        ("150 lb", {"value": 68.0, "unit": "kg"}, {}, 0.0),
        # 68 kg = 149.914 lb: within 0.5 lb of 150
        ("68 kg", {"value": 150.0, "unit": "lb"}, {"abs_tol": 0.5}, 1.0),
        # 98.6 °F is exactly 37 °C (float noise of the conversion is absorbed), and back
        ("98.6 °F", {"value": 37.0, "unit": "°C"}, {}, 1.0),
        ("37 °C", {"value": 98.6, "unit": "°F"}, {}, 1.0),
        ("100.4°F", {"value": 38.0, "unit": "degC"}, {}, 1.0),
        # 99.5 °F = 37.5 °C: outside 37 ± 0.3
        ("99.5 °F", {"value": 37.0, "unit": "°C"}, {"abs_tol": 0.3}, 0.0),
        # 1.2 g/dL = 1200 mg/dL
        ("1.2 g/dL", {"value": 1200.0, "unit": "mg/dL"}, {}, 1.0),
        ("1200 mg/dL", {"value": 1.2, "unit": "g/dL"}, {}, 1.0),
        # 12 ×10^9/L = 12 000 /µL
        ("12 ×10^9/L", {"value": 12000.0, "unit": "cells/µL"}, {}, 1.0),
        # 1,234 mg = 1.234 g
        ("1,234 mg", {"value": 1.234, "unit": "g"}, {}, 1.0),
        ("45%", {"value": 45.0, "unit": "%"}, {}, 1.0),
        ("72 bpm", {"value": 72.0, "unit": "beats/min"}, {}, 1.0),
        ("58 mL/min/1.73m²", {"value": 58.0, "unit": "mL/min/1.73 m²"}, {}, 1.0),
        ("450 msec", {"value": 0.45, "unit": "s"}, {}, 1.0),
        ("10 IU/L", {"value": 10.0, "unit": "U/L"}, {}, 1.0),  # IU and U are one unit clinically
    ],
)
def test_unit_conversion(answer, reference, params, expected):
    assert value(answer, reference, **params) == expected


@pytest.mark.parametrize(
    "answer, reference",
    [
        ("5 kg", {"value": 5.0, "unit": "mL"}),
        ("58 mL/min", {"value": 58.0, "unit": "mL/min/1.73 m²"}),  # BSA-normalised is another dimension
        ("1.2 mg/dL", {"value": 106.0, "unit": "µmol/L"}),  # mass ↔ amount needs the molar mass
        ("2.5 mmol/L", {"value": 5.0, "unit": "mEq/L"}),  # amount ↔ equivalents needs the valence
        ("37 °C", {"value": 37.0, "unit": "kg"}),
    ],
)
def test_wrong_dimension_scores_zero_and_says_why(answer, reference):
    result = run(answer, reference, rel_tol=0.05)
    assert result.value == 0.0 and result.status is Status.OK
    assert result.info["reason"].startswith("wrong dimension")


def test_molar_mass_and_valence_bridge_dimensions():
    # creatinine 1.2 mg/dL = 12 mg/L = 12/113.12 mmol/L = 106.08 µmol/L
    ref = {"value": 106.0, "unit": "µmol/L", "molar_mass": 113.12}
    result = run("1.2 mg/dL", ref, rel_tol=0.01)
    assert result.value == 1.0 and result.info["converted"] == pytest.approx(106.082, abs=1e-3)
    # and back: 106 µmol/L creatinine = 1.199 mg/dL
    assert value("106 µmol/L", {"value": 1.2, "unit": "mg/dL", "molar_mass": 113.12}, abs_tol=0.01) == 1.0
    # calcium: 2.5 mmol/L × 2 Eq/mol = 5 mEq/L
    assert value("2.5 mmol/L", {"value": 5.0, "unit": "mEq/L", "valence": 2}) == 1.0
    assert value("2.5 mmol/L", {"value": 5.0, "unit": "mEq/L", "valence": 1}) == 0.0


def test_convert_helper():
    assert convert(150, "lb", "kg") == pytest.approx(68.0388555)
    assert convert(0, "degC", "degF") == pytest.approx(32.0)
    assert convert(5, "kg", "mL") is None
    assert convert(1.0, "mg / dL", "umol / L", molar_mass=113.12) == pytest.approx(88.4016, abs=1e-4)


def test_every_parser_unit_is_readable_by_the_registry():
    reg = unit_registry()
    for spelling, unit in unit_lexicon().items():
        q = reg.parse_expression(unit)
        assert isinstance(q, reg.Quantity), (spelling, unit)
        assert convert(2.0, unit, unit) == pytest.approx(2.0), (spelling, unit)


# -- units missing on one side ----------------------------------------------------------------


def test_bare_number_is_read_in_the_reference_unit_unless_required():
    ref = {"value": 5.0, "unit": "mg"}
    accepted = run("5", ref)
    assert accepted.value == 1.0 and accepted.info["assumed_unit"] is True
    rejected = run("5", ref, require_unit=True)
    assert rejected.value == 0.0 and rejected.info["reason"].startswith("missing unit")
    assert value("5 mg", ref, require_unit=True) == 1.0


def test_reference_without_unit_compares_the_bare_value():
    result = run("5 mg", {"value": 5.0})
    assert result.value == 1.0 and result.info["unit_ignored"] is True
    assert value("5 mg", {"value": 5.0, "unit": ""}) == 1.0  # an empty unit is no unit


# -- tolerance bands --------------------------------------------------------------------------

BAND = {"value": 23.4, "unit": "mL/min", "lower": 22.2, "upper": 24.6}


@pytest.mark.parametrize(
    "answer, expected",
    [("22.2", 1.0), ("24.6 mL/min", 1.0), ("23.4", 1.0), ("22.19", 0.0), ("24.61", 0.0), ("0.0234 L/min", 1.0)],
)
def test_lower_upper_band_is_inclusive(answer, expected):
    assert value(answer, BAND, rel_tol=0.5) == expected  # the reference band wins over rel_tol


@pytest.mark.parametrize(
    "answer, params, expected",
    [
        ("95", {"rel_tol": 0.05}, 1.0),
        ("105", {"rel_tol": 0.05}, 1.0),
        ("105.1", {"rel_tol": 0.05}, 0.0),
        ("94.9", {"rel_tol": 0.05}, 0.0),
        ("102", {"abs_tol": 2}, 1.0),
        ("102.5", {"abs_tol": 2}, 0.0),
        ("109", {"abs_tol": 10, "rel_tol": 0.05}, 1.0),  # tolerance is the larger of the two
        ("100", {}, 1.0),  # no tolerance: exact
        ("100.0", {}, 1.0),
        ("100.01", {}, 0.0),
    ],
)
def test_abs_and_rel_tolerance(answer, params, expected):
    assert value(answer, {"value": 100.0}, **params) == expected


@pytest.mark.parametrize(
    "answer, reference, params, expected",
    [
        # integer score: MedCalc-Bench rounds the answer (half up here)
        ("3", {"value": 3}, {}, 1.0),
        ("3.4", {"value": 3}, {}, 1.0),
        ("2.5", {"value": 3}, {}, 1.0),
        ("3.5", {"value": 3}, {}, 0.0),
        ("3.4", {"value": "3"}, {}, 1.0),  # verl passes ground truth as a string
        ("3 points", {"value": 3, "unit": "points"}, {}, 1.0),
        ("3.4", {"value": 3.0}, {}, 0.0),  # 3.0 is a continuous value: exact without tolerance
        ("3.4", {"value": 3}, {"integer_policy": "exact"}, 0.0),
        ("3.0", {"value": 3}, {"integer_policy": "exact"}, 1.0),
        ("3.5", {"value": 3}, {"integer_policy": "tolerance", "rel_tol": 0.2}, 1.0),
        ("3.4", {"value": 3}, {"rel_tol": 0.5}, 1.0),
        ("4", {"value": 3}, {"rel_tol": 0.5}, 0.0),  # a score is exact whatever rel_tol says
        # an integer with a physical unit is a measurement: rel_tol applies
        ("70 kg", {"value": 68, "unit": "kg"}, {"rel_tol": 0.05}, 1.0),
    ],
)
def test_integer_scores(answer, reference, params, expected):
    assert value(answer, reference, **params) == expected


def test_band_helper():
    band = Band(2.5, 3.5, 3.0, hi_open=True)
    assert band.contains(2.5) and band.contains(3.4999) and not band.contains(3.5)
    assert Band(1.0, 2.0, 1.5).distance(2.5) == (0.5, 0.5)


# -- hedges -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, params, expected",
    [
        ("22.5-24 mL/min", {}, 1.0),  # the whole range is inside [22.2, 24.6]
        ("between 22.5 and 24", {}, 1.0),
        ("22-24 mL/min", {}, 0.0),  # 22 is outside: a hedge
        ("20 to 30", {}, 0.0),
        ("23.4 ± 0.5", {}, 1.0),
        ("23.4 ± 2", {}, 0.0),
        ("22.5-24 mL/min", {"range_policy": "zero"}, 0.0),
    ],
)
def test_ranges(answer, params, expected):
    result = run(answer, BAND, **params)
    assert result.value == expected
    assert result.info["parsed"]["is_range"] is True


def test_range_is_converted_before_the_check():
    # 149-150 lb = 67.585-68.039 kg, inside 68 ± 1 kg
    result = run("149-150 lb", {"value": 68.0, "unit": "kg"}, abs_tol=1.0)
    assert result.value == 1.0
    assert result.info["converted"] == [pytest.approx(67.5853, abs=1e-4), pytest.approx(68.0389, abs=1e-4)]


def test_inequality_is_not_a_value():
    result = run("< 5", {"value": 4.0}, abs_tol=10)
    assert result.value == 0.0 and "inequality" in result.info["reason"]


@pytest.mark.parametrize(
    "answer, expected, negated",
    [
        ("not 49.2 mL/hr", 0.0, True),  # the audit's negation probe earned full reward on the calculator preset
        ("The rate is not 49.2 mL/hr", 0.0, True),
        ("not 49.2 or 50", 0.0, False),  # 50 is the value stated, outside the band
        ("49.2 mL/hr, not 40", 1.0, False),  # the answer's value is asserted; a rejected one follows
        ("No doubt: 49.2 mL/hr", 1.0, False),  # "no" that does not touch the number
    ],
)
def test_a_negated_value_is_not_a_value(answer, expected, negated):
    result = run(answer, {"value": 49.2, "unit": "mL/hr"})
    assert result.value == expected, result.info
    assert ("negated" in result.info.get("reason", "")) == negated


def test_approximate_value_scores_and_is_flagged():
    result = run("≈ 48 mL/min", {"value": 48.0, "unit": "mL/min"}, rel_tol=0.05)
    assert result.value == 1.0 and result.info["parsed"]["approximate"] is True


# -- partial credit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, reference, params, expected",
    [
        # band 100 ± 10; decay 2 → 0 at 20 from the centre; 115 is 5 past the edge: 1 - 5/10
        ("115", {"value": 100.0}, {"rel_tol": 0.1}, 0.5),
        ("85", {"value": 100.0}, {"rel_tol": 0.1}, 0.5),
        ("105", {"value": 100.0}, {"rel_tol": 0.1}, 1.0),
        ("120", {"value": 100.0}, {"rel_tol": 0.1}, 0.0),
        ("130", {"value": 100.0}, {"rel_tol": 0.1}, 0.0),
        # decay 3 → 0 at 30 from the centre: 1 - 5/20
        ("115", {"value": 100.0}, {"rel_tol": 0.1, "decay": 3.0}, 0.75),
        # asymmetric band [9, 12] around 10: right half-width 2, left 1
        ("13", {"value": 10.0, "lower": 9, "upper": 12}, {}, 0.5),
        ("8.5", {"value": 10.0, "lower": 9, "upper": 12}, {}, 0.5),
        # zero-width band: nothing to scale by, stays binary
        ("101", {"value": 100.0}, {}, 0.0),
        # integer score 3, band [2.5, 3.5): 4 is 0.5 past the edge, half-width 0.5 → 0
        ("4", {"value": 3}, {}, 0.0),
        ("3.75", {"value": 3}, {}, 0.5),
    ],
)
def test_linear_partial_credit(answer, reference, params, expected):
    assert value(answer, reference, scoring="linear", **params) == pytest.approx(expected)


def test_ranges_get_no_partial_credit():
    assert value("20-30", {"value": 100.0}, rel_tol=0.1, scoring="linear") == 0.0
    assert value("96-104", {"value": 100.0}, rel_tol=0.1, scoring="linear") == 1.0


# -- parsing the answer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<answer>The creatinine clearance is 48 mL/min (normal 90-120)</answer>", 1.0),
        ("<answer>CrCl = (140 - 60) × 72 / (72 × 1.7) = 47.06 mL/min</answer>", 1.0),
        ("<answer>3.2e-1 mL/min</answer>", 0.0),
        ("<think>48</think><answer>unknown</answer>", 0.0),
        ("48 mL/min", 0.0),  # no answer section
    ],
)
def test_reads_the_final_number_of_the_answer(completion, expected):
    component = NumericValue(rel_tol=0.05)
    result = component.score_one(Rollout(completion=completion, reference={"value": 48.0, "unit": "mL/min"}))
    assert result.value == expected and result.status is Status.OK
    if expected == 0.0:
        assert result.info["reason"]


def test_scientific_notation_and_whole_completion():
    assert value("3.2e-1", {"value": 0.32}) == 1.0
    assert value("3.2 × 10^-1", {"value": 0.32}) == 1.0
    whole = NumericValue(answer_tag=None).score_one(Rollout(completion="so the answer is -4", reference={"value": -4}))
    assert whole.value == 1.0


def test_missing_section_and_missing_number_say_why():
    component = NumericValue()
    missing = component.score_one(Rollout(completion="48", reference={"value": 48}))
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"
    empty = component.score_one(Rollout(completion="<answer>n/a</answer>", reference={"value": 48}))
    assert empty.value == 0.0 and empty.info["reason"] == "no number in the answer"


def test_info_says_what_was_parsed_and_converted():
    result = run("150 lb", {"value": 68.0, "unit": "kg"}, rel_tol=0.01)
    info = result.info
    assert info["parsed"] == {"value": 150.0, "unit": "lb", "raw": "150 lb"}
    assert info["converted"] == pytest.approx(68.0388555)
    assert info["band"] == [pytest.approx(67.32), pytest.approx(68.68)]
    assert info["unit"] == "kg" and info["reference"] == 68.0 and info["reason"] == "within the band"


# -- reference problems -------------------------------------------------------------------------


@pytest.mark.parametrize("reference", [{}, {"value": None}, {"unit": "kg"}])
def test_missing_reference_value_is_not_applicable(reference):
    result = NumericValue().score_one(Rollout(completion="<answer>5</answer>", reference=reference))
    assert result.status is Status.NOT_APPLICABLE and result.value is None


@pytest.mark.parametrize(
    "reference",
    [
        {"value": "abc"},
        {"value": True},
        {"value": [1.0]},
        {"value": "nan"},
        {"value": 5.0, "lower": 4.0},  # one-sided band
        {"value": 5.0, "lower": 6.0, "upper": 4.0},
        {"value": 5.0, "lower": "x", "upper": 6.0},
        {"value": 5.0, "unit": "zorkmids"},
        {"value": 5.0, "unit": 5},
        {"value": 5.0, "unit": "mg", "molar_mass": -1},
    ],
)
def test_bad_reference_raises(reference):
    with pytest.raises(RecordError):
        NumericValue().score_one(Rollout(completion="<answer>5 mg</answer>", reference=reference))


def test_reference_unit_pint_knows_but_the_lexicon_does_not():
    assert normalize_unit("fortnight") is None
    assert value("14 days", {"value": 1.0, "unit": "fortnight"}) == 1.0


def test_custom_reference_keys():
    ref = {"gt": 10.0, "gt_unit": "mg", "lo": 9.0, "hi": 11.0}
    params = {"field": "gt", "unit_field": "gt_unit", "lower_field": "lo", "upper_field": "hi"}
    assert value("0.0105 g", ref, **params) == 1.0
    assert value("12 mg", ref, **params) == 0.0


# -- component contract -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{"decay": 1.0}, {"rel_tol": -0.1}, {"abs_tol": float("nan")}, {"range_policy": "maybe"}, {"tol": 1}]
)
def test_bad_params_fail_at_construction(params):
    with pytest.raises(SpecError):
        NumericValue(**params)


def test_registered_pickles_and_preset_loads():
    assert component_class("numeric") is NumericValue
    component = NumericValue(name="value", rel_tol=0.05, scoring="linear")
    clone = pickle.loads(pickle.dumps(component))
    refs = [{"value": 100.0}, {"value": 68.0, "unit": "kg"}]
    answers = ["<answer>107</answer>", "<answer>150 lb</answer>"]
    assert clone(answers, refs) == component(answers, refs) == [pytest.approx(0.6), 1.0]
    spec = load_spec("calculator")
    (built,) = [c for c in spec.build() if c.name == "value"]
    assert isinstance(built, NumericValue) and built.params.rel_tol == 0.05 and built.params.field == "value"


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_any_answer_scores_in_range(text):
    for ref in ({"value": 48.0, "unit": "mL/min"}, {"value": 3}, {"value": 23.4, "lower": 22.2, "upper": 24.6}):
        result = NumericValue(rel_tol=0.05, scoring="linear").score_one(
            Rollout(completion=f"<answer>{text}</answer>", reference=ref)
        )
        assert result.status is Status.OK and 0.0 <= result.value <= 1.0


@FUZZ
@given(
    st.floats(min_value=0.01, max_value=1e5),
    st.floats(min_value=0.001, max_value=0.5),
    st.sampled_from(["mg/dL", "kg", "mmHg", "%", "mL/min"]),
)
def test_fuzz_band_edges(ref_value, rel_tol, unit):
    ref = {"value": ref_value, "unit": unit}
    inside = ref_value * (1 + 0.99 * rel_tol)
    outside = ref_value * (1 + 1.01 * rel_tol)
    assert value(f"{inside!r} {unit}", ref, rel_tol=rel_tol) == 1.0
    assert value(f"{outside!r} {unit}", ref, rel_tol=rel_tol) == 0.0
    partial = value(f"{outside!r}", ref, rel_tol=rel_tol, scoring="linear")
    assert 0.0 < partial < 1.0 and math.isfinite(partial)


def test_doctests():
    result = doctest.testmod(numeric_module)
    assert result.attempted > 0 and result.failed == 0
