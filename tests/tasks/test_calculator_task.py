"""The calculator case generator: determinism, references that are medcalc-bench's own answers for
the parameters the note states, the tolerance band, unit variety, quirk avoidance, bad input."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections import Counter
from pathlib import Path

import pytest

from medreward.errors import MedrewardError
from medreward.tasks import get_task
from medreward.tasks.calculators import (
    CALCULATORS,
    EXCLUDED,
    TOLERANCE,
    CalculatorConfig,
    compute,
    generate_calculators,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return generate_calculators(len(CALCULATORS) * 8, seed=21)


def _dump(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _medcalc(calculator: str, params: dict) -> float:
    """medcalc-bench called directly (not through medreward.compute): tuples, a fresh copy."""
    calc = CALCULATORS[calculator]
    module = importlib.import_module(f"medcalc.{calc.module}")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(json.dumps(params)).items()}
    raw = getattr(module, calc.function)(args)
    if calculator == "ckd_epi_2021":  # the unrounded equation; medcalc rounds with round_number
        from medcalc.utils.rounding import round_number

        return round_number(raw)
    return raw["Answer"]


# -- determinism ------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_output_and_other_seeds_differ():
    first = _dump(generate_calculators(120, seed=5))
    assert first == _dump(generate_calculators(120, seed=5))
    assert first != _dump(generate_calculators(120, seed=6))


def test_case_i_does_not_depend_on_n():
    assert generate_calculators(60, seed=3)[:17] == generate_calculators(17, seed=3)


def test_registered_task_generates_records_of_the_contract():
    info = get_task("calculator")
    assert info.preset == "calculator"
    [case] = info.generate(1, 0)
    assert sorted(case) == ["case", "id", "prompt", "reference", "task"]
    assert case["task"] == "calculator" and case["id"] == "calculator-0-00000"
    assert [m["role"] for m in case["prompt"]] == ["system", "user"]
    system = case["prompt"][0]["content"]
    assert "<think>" in system and "<answer>" in system
    assert sorted(case["reference"]) == ["lower", "unit", "upper", "value"]
    assert sorted(case["case"]) == ["calculator", "mentions", "name", "output", "params"]


# -- references ---------------------------------------------------------------------------
def test_every_included_calculator_is_generated(cases):
    counts = Counter(c["case"]["calculator"] for c in cases)
    assert set(counts) == set(CALCULATORS)
    assert min(counts.values()) == max(counts.values()) == 8  # round-robin over a shuffled order


def test_reference_is_medcalc_bench_output_for_the_params(cases):
    for case in cases:
        structured = case["case"]
        expected = _medcalc(structured["calculator"], structured["params"])
        assert case["reference"]["value"] == expected, structured["calculator"]
        assert compute(structured["calculator"], structured["params"]) == expected


def test_tolerance_band_exact_for_scores_and_five_percent_for_decimals(cases):
    outputs = Counter()
    for case in cases:
        ref, calc = case["reference"], CALCULATORS[case["case"]["calculator"]]
        outputs[calc.output] += 1
        assert ref["unit"] == calc.unit
        if calc.output == "score":
            assert ref["lower"] == ref["upper"] == ref["value"]
        else:
            margin = abs(ref["value"]) * TOLERANCE
            assert ref["lower"] == pytest.approx(ref["value"] - margin, abs=1e-6)
            assert ref["upper"] == pytest.approx(ref["value"] + margin, abs=1e-6)
    assert outputs["score"] > 0 and outputs["decimal"] > 0


# the note's unit spelling -> the unit string medcalc received
_UNIT = {
    "mg/dL": "mg/dL", "µmol/L": "µmol/L", "mmol/L": "mmol/L", "mEq/L": "mEq/L", "g/dL": "g/dL", "g/L": "g/L",
    "kg": "kg", "lb": "lbs", "g": "g", "cm": "cm", "m": "m", "in": "in", "°C": "degrees celsius",
    "°F": "degrees fahrenheit", "beats/min": "beats per minute", "breaths/min": "breaths per minute",
    "msec": "msec", "U/L": "U/L", "µIU/mL": "µIU/mL", "%": "%", "mmHg": "mm Hg", "kPa": "kPa",
    "/µL": "µL", "/L": "L", "mg": "mg", "µg": "µg", "alcoholic drinks per week": "", "": "",
}  # fmt: skip
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)(?: × 10\^(\d+))?\s?(.*)$")


def _check_quantity(key: str, value, mention: str, case_id: str) -> None:
    """The mention 'label NUMBER UNIT' states exactly the number and unit medcalc received."""
    if key in ("sys_bp", "dia_bp"):
        sbp, dbp = re.search(r"(\d+)/(\d+) mmHg", mention).groups()
        assert value == [int(sbp) if key == "sys_bp" else int(dbp), "mm hg"], case_id
        return
    if key == "height" and len(value) == 4:
        assert mention.endswith(f"{value[0]} ft {value[2]} in"), case_id
        return
    if key == "age":
        assert mention == f"{value[0]}-year-old", case_id
        return
    words = mention.split(" ")
    for start in range(len(words)):  # the label is the words before the number
        m = _NUMBER.match(" ".join(words[start:]))
        if m:
            break
    number, exponent, unit = m.groups()
    unit = unit.replace(" on room air", "")
    stated = float(number) * 10 ** int(exponent or 0)
    received, received_unit = (value, "") if not isinstance(value, list) else (value[0], value[1])
    assert float(received) == stated, (case_id, key, mention, value)
    assert _UNIT[unit] == received_unit, (case_id, key, mention, value)


def test_note_states_every_parameter_with_the_unit_medcalc_received(cases):
    checked = Counter()
    for case in cases:
        note = case["prompt"][1]["content"]
        params, mentions = case["case"]["params"], case["case"]["mentions"]
        assert set(mentions) == set(params), case["id"]
        for key, value in params.items():
            assert mentions[key] in note, (case["id"], key)
            if isinstance(value, bool) or key in ("sex", "race", "target steroid") or isinstance(value, str):
                continue
            if key == "input steroid":  # [steroid, dose, unit]
                assert f"{value[1]:g} {value[2]} daily" in mentions[key]
                continue
            if key.endswith(" Dose"):  # [dose, unit]
                assert f"{value[0]:g} {value[1]}" in mentions[key]
                continue
            if key.endswith(" Dose Per Day"):
                assert ("once", "twice", "three times", "four times")[value[0] - 1] + " daily" in mentions[key]
                continue
            _check_quantity(key, value, mentions[key], case["id"])
            checked[key] += 1
    assert checked["creatinine"] > 10 and checked["weight"] > 5 and checked["temperature"] > 2


def test_notes_mix_unit_systems(cases):
    units = Counter(
        v[1] for c in cases for v in c["case"]["params"].values() if isinstance(v, list) and len(v) == 2
    )
    for unit in ("mg/dL", "µmol/L", "kg", "lbs", "degrees celsius", "degrees fahrenheit", "g/dL", "g/L", "mEq/L", "mmol/L", "cm", "in"):
        assert units[unit] > 0, unit


def test_answers_do_not_depend_on_medcalc_unit_rounding():
    # medcalc's molar converter rounds intermediate amounts (88 µmol/L creatinine -> 1.0 mg/dL);
    # a case whose printed-unit answer moves > 1 % from the exact-conversion answer is redrawn
    config = CalculatorConfig(calculators=("ckd_epi_2021", "curb_65"), si_units=1.0)
    for case in generate_calculators(60, seed=4, config=config):
        params = case["case"]["params"]
        key = "creatinine" if "creatinine" in params else "bun"
        number, unit = params[key]
        exact = number / 88.42 if unit == "µmol/L" else number * 2.801 if unit == "mmol/L" else number
        converted = dict(params, **{key: [exact, "mg/dL"]})
        value, again = case["reference"]["value"], _medcalc(case["case"]["calculator"], converted)
        if case["case"]["output"] == "score":
            assert value == again
        else:
            assert abs(value - again) <= 0.01 * abs(again)


# -- quirks and exclusions ------------------------------------------------------------------
def test_included_and_excluded_cover_every_medcalc_calculator_and_are_documented():
    import medcalc

    modules = {m.name for m in pkgutil.iter_modules(medcalc.__path__)} - {"utils"}
    included = {c.module for c in CALCULATORS.values()}
    assert included | set(EXCLUDED) == modules
    assert not included & set(EXCLUDED)
    docs = DOCS.read_text(encoding="utf-8")
    for name in [*CALCULATORS, *EXCLUDED]:
        assert f"`{name}`" in docs, name


def test_ckd_epi_reference_uses_the_correct_male_kappa():
    from medcalc.ckd_epi_2021_creatinine import ckd_epi_2021_explanation

    params = {"age": [50, "years"], "sex": "Male", "creatinine": [0.8, "mg/dL"]}
    expected = 142 * (0.8 / 0.9) ** -0.302 * 0.9938**50
    assert compute("ckd_epi_2021", params) == pytest.approx(expected, abs=1e-3)
    buggy = ckd_epi_2021_explanation({"age": (50, "years"), "sex": "Male", "creatinine": (0.8, "mg/dL")})["Answer"]
    assert abs(buggy - expected) > 5  # the explanation variant uses kappa 0.7: why it is not called


def test_quirk_values_are_never_drawn():
    config = CalculatorConfig(calculators=("child_pugh", "caprini", "heart_score", "glasgow_blatchford"))
    for case in generate_calculators(400, seed=8, config=config):
        p = case["case"]["params"]
        if case["case"]["calculator"] == "child_pugh":
            assert p["bilirubin"][0] != 2.0
        elif case["case"]["calculator"] == "caprini":
            assert not (p.get("previous_dvt") and p.get("previous_pe")) and "bmi" not in p
        elif case["case"]["calculator"] == "heart_score":
            assert "atherosclerotic_disease" not in p
        else:
            hb = p["hemoglobin"][0] / (10 if p["hemoglobin"][1] == "g/L" else 1)
            assert hb != (12.0 if p["sex"] == "Male" else 10.0)


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_n_is_a_clear_error(n):
    with pytest.raises(MedrewardError, match="positive number of cases"):
        generate_calculators(n, seed=0)


def test_bad_config_is_a_clear_error():
    with pytest.raises(MedrewardError, match="unknown calculators"):
        CalculatorConfig(calculators=("apache_ii",))
    with pytest.raises(MedrewardError, match="si_units"):
        CalculatorConfig(si_units=1.5)
    with pytest.raises(MedrewardError, match="unknown calculator"):
        compute("nope", {})


def test_config_restricts_calculators_and_units():
    config = CalculatorConfig(calculators=("bmi", "anion_gap"), si_units=0.0, imperial_units=0.0)
    cases = generate_calculators(20, seed=1, config=config)
    assert {c["case"]["calculator"] for c in cases} == {"bmi", "anion_gap"}
    units = {v[1] for c in cases for v in c["case"]["params"].values() if isinstance(v, list)}
    assert units <= {"kg", "cm", "m", "mEq/L"}
