"""Clinical calculator cases (MedCalc-Bench-style): a patient note, a calculator, one number.

MedCalc-Bench (Khandekar et al., "MedCalc-Bench: Evaluating Large Language Models for Medical
Calculations", NeurIPS 2024 Datasets & Benchmarks, arXiv:2406.12036) asks a model to compute a
clinical score or value from a patient note. Its notes come from PubMed case reports and are not
redistributable offline, so this generator *writes* the notes: it samples patient parameters,
renders them into a short note (demographics, history, symptoms, examination, vital signs,
laboratory results), and takes the reference value from the ``medcalc-bench`` package
(``medcalc``, the calculators of MedCalc-Bench) called with exactly the parameters the note
states — the formula is never re-implemented here.

Included calculators (46), by ``case["calculator"]`` id:

* body measures — ``bmi``, ``bsa``, ``ideal_body_weight``, ``adjusted_body_weight``;
  renal — ``creatinine_clearance`` (Cockcroft-Gault with MDCalc's weight rule),
  ``ckd_epi_2021``, ``mdrd_gfr``, ``fena``; haemodynamics — ``mean_arterial_pressure``;
  QT correction — ``qtc_bazett``, ``qtc_fredericia``, ``qtc_framingham``, ``qtc_hodges``,
  ``qtc_rautaharju``;
* chemistry — ``anion_gap``, ``delta_gap``, ``albumin_corrected_anion_gap``,
  ``albumin_corrected_delta_gap``, ``albumin_corrected_delta_ratio``, ``calcium_correction``,
  ``ldl_calculated``, ``serum_osmolality``, ``sodium_correction_hyperglycemia``,
  ``free_water_deficit``, ``fib4``, ``homa_ir``, ``maintenance_fluids``;
* dosing — ``morphine_milligram_equivalents``, ``steroid_conversion``;
* rule-based scores — ``curb_65``, ``centor``, ``feverpain``, ``cha2ds2_vasc``, ``has_bled``,
  ``heart_score``, ``revised_cardiac_risk_index``, ``charlson_comorbidity_index``,
  ``child_pugh``, ``meld_na``, ``glasgow_coma_scale``, ``glasgow_blatchford``, ``perc``,
  ``psi``, ``wells_dvt``, ``wells_pe``, ``caprini``.

Excluded medcalc calculators, and why (medcalc-bench 1.7.0):

* ``apache_ii`` — adds the GCS itself instead of ``15 - GCS`` and gives no points on the low side
  of heart rate, respiratory rate, pH, sodium, potassium, haematocrit, WBC and MAP, so a healthy
  patient scores 15;
* ``sofa`` — the cardiovascular item gives 2 points to every patient without hypotension
  (``dopamine <= 5`` is true for the default 0);
* ``sirs_criteria`` — the heart-rate criterion counts in both branches and the WBC is converted
  to cells/m³, so every patient meets at least 2 criteria;
* ``framingham_risk_score`` — rounds the risk to tenths before converting to percent (answers are
  multiples of 10 %, a 75-year-old smoker scores 100 %);
* ``target_weight`` — fails to import (``convert_height_to_target_unit_explanation`` is missing);
* ``conception_date``, ``estimated_due_date``, ``gestational_age`` — the answer is a date or a
  (weeks, days) pair, not a number with a unit, which the ``calculator`` preset scores.

Where a medcalc function has a known quirk the generator steers around it instead of teaching
the quirk (documented per calculator below and in ``docs/tasks.md``): CKD-EPI 2021 uses
``medcalc.ckd_epi_2021.ckd_epi_2021`` (the explanation variant uses κ = 0.7 for men with
creatinine <= 0.9), bilirubin is rendered in mg/dL only (medcalc converts it with a molar mass of
548.66 instead of 584.66), insulin in µIU/mL only (pmol/L is multiplied by 6 instead of divided),
the HEART score never mentions atherosclerotic disease (medcalc counts it as an ordinary risk
factor), Caprini never mentions BMI (> 25 gives 2 points instead of 1) nor both previous DVT and
PE (counted twice), and exact threshold values where medcalc leaves a gap (Child-Pugh bilirubin
2.0, Glasgow-Blatchford haemoglobin 12.0 in men / 10.0 in women, BUN 70) are resampled.

Unit variety: per case the laboratory values are written in conventional US units or in SI
units (probability ``si_units``) and weight, height and temperature in metric or imperial units
(``imperial_units``): creatinine mg/dL | µmol/L, BUN, glucose and urine creatinine mg/dL |
mmol/L, albumin and haemoglobin g/dL | g/L, platelets ×10³/µL | ×10⁹/L, electrolytes mEq/L |
mmol/L, PaO2 mmHg | kPa, weight kg | lb (g for infants), height cm, m | in, ft+in, temperature
°C | °F. The value medcalc receives is the number printed in the note with the unit printed in
the note. **Unit-consistency check**: medcalc's molar converter rounds intermediate amounts to 3
decimals (88 µmol/L creatinine → 1.0 mg/dL; every calcium from 1.5 to 2.49 mmol/L → 8.0 mg/dL),
so each case is also computed with every converted value taken back to the calculator's canonical
unit by the standard conversion factor (unrounded); a case whose two answers differ (a score that
changes, or a value that moves more than ``consistency_tolerance``, 1 %) is drawn again — so
medcalc's intermediate rounding never decides the reference. Calcium, cholesterol and
triglycerides are written in mg/dL only (too few SI values survive the check).

Tolerance (MedCalc-Bench's rule): rule-based scores are exact (``lower = upper = value``);
equation-based decimal values get a ±5 % relative band (``lower = value - 5 % |value|``,
``upper = value + 5 % |value|``), written into the reference.

The record: ``id`` (``calculator-<seed>-<index>``), ``prompt`` (system + user conversation:
note and question, asking for reasoning in ``<think>`` and the value with its unit in
``<answer>``), ``task: "calculator"``, ``reference: {"value", "unit", "lower", "upper"}``
(``unit`` is ``None`` for scores and dimensionless ratios) and ``case``:
``{"calculator", "name", "output", "params", "mentions"}`` — ``params`` is the exact medcalc
input (tuples as lists), ``mentions`` the text snippet of the note that states each parameter.

Determinism: case ``i`` of seed ``s`` draws from ``random.Random(f"calculator:{s}:{i}:{attempt}")``
and its calculator is ``order[i % len(order)]`` for a seed-shuffled calculator order, so the same
seed gives byte-identical output and case ``i`` does not depend on ``n``.

>>> cases = generate_calculators(3, seed=1)
>>> [c["task"] for c in cases], cases[0]["id"]
(['calculator', 'calculator', 'calculator'], 'calculator-1-00000')
>>> all(compute(c["case"]["calculator"], c["case"]["params"]) == c["reference"]["value"] for c in cases)
True
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._common import TaskArgumentError, check_count, reasoning_instruction
from .base import register_task

__all__ = [
    "CALCULATORS",
    "TOLERANCE",
    "Calculator",
    "CalculatorConfig",
    "calculator_ids",
    "compute",
    "generate_calculators",
    "iter_calculator_cases",
    "reference_for",
    "system_prompt",
]

log = logging.getLogger(__name__)

TASK = "calculator"
#: MedCalc-Bench's relative tolerance for equation-based (decimal) answers.
TOLERANCE = 0.05
_MAX_ATTEMPTS = 200


# -- units and fields -----------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One way of writing a quantity.

    ``value_in_unit = canonical * scale + offset``; the note prints ``value_in_unit / 10**exponent``
    rounded to ``decimals`` followed by ``display``, and medcalc receives that printed number
    times ``10**exponent`` with the unit string ``medcalc``. ``system`` is the unit system the
    unit belongs to (``conv``/``si`` for laboratory values, ``metric``/``imperial`` for body
    measures and temperature, ``any`` otherwise).
    """

    medcalc: str
    display: str
    scale: float = 1.0
    offset: float = 0.0
    decimals: int = 0
    system: str = "any"
    exponent: int = 0


@dataclass
class _Draw:
    """What sampling a case produces, field by field."""

    rng: random.Random
    config: CalculatorConfig
    sex: str
    age: int
    lab_system: str
    body_system: str
    params: dict[str, Any] = field(default_factory=dict)
    canonical: dict[str, Any] = field(default_factory=dict)  # params with units taken back to canonical
    values: dict[str, float] = field(default_factory=dict)  # canonical magnitudes, for dependent fields
    mentions: dict[str, str] = field(default_factory=dict)
    sections: dict[str, list[str]] = field(default_factory=dict)

    def add(self, section: str, text: str) -> None:
        self.sections.setdefault(section, []).append(text)

    def set(self, key: str, value: Any, canonical: Any = None, mention: str | None = None) -> None:
        self.params[key] = value
        self.canonical[key] = value if canonical is None else canonical
        if mention is not None:
            self.mentions[key] = mention


class Field:
    """A part of the note: samples medcalc parameters and writes their text."""

    def draw(self, d: _Draw) -> None:  # pragma: no cover - interface
        raise NotImplementedError


Bound = float | Callable[[_Draw], float]


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if decimals > 0 else str(round(value))


@dataclass(frozen=True)
class Quantity(Field):
    """A measured value with a unit: ``label value unit`` in its section.

    ``low``/``high`` bound the canonical value (numbers, or functions of what was drawn
    before); ``dist`` is ``uniform`` or ``log`` (log-uniform, for skewed laboratory values).
    ``plain`` passes a bare number to medcalc (pH, INR, drinks per week), else ``(value, unit)``.
    """

    key: str
    label: str
    section: str
    units: tuple[Unit, ...]
    low: Bound
    high: Bound
    dist: Literal["uniform", "log"] = "uniform"
    plain: bool = False
    template: str = "{label} {value}"  # how the mention reads; {value} includes the unit

    def pick_unit(self, d: _Draw) -> Unit:
        wanted = d.lab_system if self.units[0].system in ("conv", "si") else d.body_system
        matching = [u for u in self.units if u.system in (wanted, "any")]
        return d.rng.choice(matching) if matching else self.units[0]

    def draw(self, d: _Draw) -> None:
        low = self.low(d) if callable(self.low) else self.low
        high = self.high(d) if callable(self.high) else self.high
        if self.dist == "log":
            canonical = math.exp(d.rng.uniform(math.log(low), math.log(high)))
        else:
            canonical = d.rng.uniform(low, high)
        unit = self.pick_unit(d)
        shown = round((canonical * unit.scale + unit.offset) / 10**unit.exponent, unit.decimals)
        if unit.decimals == 0:
            shown = int(shown)
        text = _fmt(shown, unit.decimals)
        value: float = shown * 10**unit.exponent if unit.exponent else shown
        if unit.exponent:
            text_value = f"{text} × 10^{unit.exponent}{unit.display}"
        else:
            text_value = f"{text} {unit.display}" if unit.display and unit.display != "%" else f"{text}{unit.display}"
        mention = self.template.format(label=self.label, value=text_value)
        base = self.units[0]
        back = ((shown * 10**unit.exponent - unit.offset) / unit.scale) if unit is not base else value
        d.values[self.key] = (shown * 10**unit.exponent - unit.offset) / unit.scale
        if self.plain:
            d.set(self.key, value, back, mention)
        else:
            d.set(self.key, [value, unit.medcalc], [back, base.medcalc], mention)
        d.add(self.section, mention)


@dataclass(frozen=True)
class Age(Field):
    """The age in years (drawn before the fields, written in the opening sentence)."""

    def draw(self, d: _Draw) -> None:
        d.set("age", [d.age, "years"], mention=f"{d.age}-year-old")


@dataclass(frozen=True)
class Sex(Field):
    def draw(self, d: _Draw) -> None:
        d.set("sex", d.sex, mention=_person(d))


@dataclass(frozen=True)
class Height(Field):
    """Height in cm or m (metric) or in or ft+in (imperial)."""

    low: float = 150.0
    high: float = 195.0
    section: str = "exam"

    def draw(self, d: _Draw) -> None:
        cm = d.rng.uniform(self.low, self.high)
        if d.body_system == "imperial":
            inches = round(cm / 2.54)
            if d.rng.random() < 0.5:
                value: list[Any] = [inches, "in"]
                text = f"{inches} in"
            else:
                value = [inches // 12, "ft", inches % 12, "in"]
                text = f"{inches // 12} ft {inches % 12} in"
            back = [inches * 2.54, "cm"]
            d.values["height"] = inches * 2.54
        elif d.rng.random() < 0.7:
            value = [round(cm), "cm"]
            text = f"{value[0]} cm"
            back = value
            d.values["height"] = float(value[0])
        else:
            meters = round(cm / 100, 2)
            value = [meters, "m"]
            text = f"{meters:.2f} m"
            back = [meters * 100, "cm"]
            d.values["height"] = meters * 100
        mention = f"height {text}"
        d.set("height", value, back, mention)
        d.add(self.section, mention)


@dataclass(frozen=True)
class BloodPressure(Field):
    """Systolic and diastolic pressure, written together as ``blood pressure S/D mmHg``."""

    sys_low: float = 90.0
    sys_high: float = 170.0
    section: str = "vitals"

    def draw(self, d: _Draw) -> None:
        sbp = round(d.rng.uniform(self.sys_low, self.sys_high))
        pulse = d.rng.uniform(0.28, 0.45) * sbp
        dbp = round(max(35.0, sbp - pulse))
        mention = f"blood pressure {sbp}/{dbp} mmHg"
        d.set("sys_bp", [sbp, "mm hg"], mention=mention)
        d.set("dia_bp", [dbp, "mm hg"], mention=mention)
        d.values["sys_bp"], d.values["dia_bp"] = sbp, dbp
        d.add(self.section, mention)


Phrase = tuple[str, str]  # (section, text)


@dataclass(frozen=True)
class Finding(Field):
    """A yes/no finding. ``true``/``false`` say where and how each state is written; a false
    finding is written only with probability ``config.negative_mentions`` (medcalc reads an
    unmentioned finding as absent, like a clinician reading the note)."""

    key: str
    p: float
    true: Phrase
    false: Phrase | None = None

    def draw(self, d: _Draw) -> None:
        if d.rng.random() < self.p:
            section, text = self.true
            d.set(self.key, True, mention=_pronouns(text, d))
            d.add(section, _pronouns(text, d))
        elif self.false is not None and d.rng.random() < d.config.negative_mentions:
            section, text = self.false
            d.set(self.key, False, mention=_pronouns(text, d))
            d.add(section, _pronouns(text, d))


@dataclass(frozen=True)
class Choice(Field):
    """A categorical parameter: ``options`` maps the medcalc value to (weight, section, text);
    a ``None`` section leaves the parameter out of the note and of ``params``."""

    key: str
    options: Mapping[str, tuple[float, str | None, str]]

    def draw(self, d: _Draw) -> None:
        values = list(self.options)
        value = d.rng.choices(values, weights=[self.options[v][0] for v in values])[0]
        _, section, text = self.options[value]
        if section is None:
            return
        text = _pronouns(text, d)
        d.set(self.key, value, mention=text)
        d.add(section, text)


@dataclass(frozen=True)
class Custom(Field):
    """A field drawn by a function (multi-parameter items such as an opioid regimen)."""

    fn: Callable[[_Draw], None]

    def draw(self, d: _Draw) -> None:
        self.fn(d)


# -- common fields --------------------------------------------------------------------------
def _u(medcalc: str, display: str | None = None, **kw: Any) -> Unit:
    return Unit(medcalc, medcalc if display is None else display, **kw)


def _lab(key: str, label: str, conv: Unit, si: Unit | None, low: Bound, high: Bound, **kw: Any) -> Quantity:
    units = (conv,) if si is None else (conv, si)
    return Quantity(key, label, kw.pop("section", "labs"), units, low, high, **kw)


_CONV, _SI = "conv", "si"
_MEQ = _u("mEq/L", decimals=0, system=_CONV)
_MMOL_ION = _u("mmol/L", decimals=0, system=_SI)


def creatinine(low: float = 0.5, high: float = 4.0, key: str = "creatinine", label: str = "serum creatinine") -> Quantity:
    return _lab(key, label, _u("mg/dL", decimals=2, system=_CONV),
                _u("µmol/L", scale=88.42, decimals=0, system=_SI), low, high, dist="log")  # fmt: skip


def sodium(low: float = 128, high: float = 148, si: bool = True, conv: bool = True) -> Quantity:
    if not conv:  # medcalc converts mEq/L only where it knows the valence
        return _lab("sodium", "sodium", _u("mmol/L", decimals=0), None, low, high)
    return _lab("sodium", "sodium", _MEQ, _MMOL_ION if si else None, low, high)


def chloride(low: Bound = 92, high: Bound = 114) -> Quantity:
    return _lab("chloride", "chloride", _MEQ, _MMOL_ION, low, high)


def _gap_chloride(low_gap: float = 3, high_gap: float = 32) -> Quantity:
    """Chloride drawn after sodium and bicarbonate so that the anion gap lies in [low_gap, high_gap]."""
    return chloride(lambda d: d.values["sodium"] - d.values["bicarbonate"] - high_gap,
                    lambda d: d.values["sodium"] - d.values["bicarbonate"] - low_gap)


def bicarbonate(low: float = 8, high: float = 30) -> Quantity:
    return _lab("bicarbonate", "bicarbonate", _MEQ, _MMOL_ION, low, high)


def albumin(low: float = 1.8, high: float = 4.8) -> Quantity:
    return _lab("albumin", "albumin", _u("g/dL", decimals=1, system=_CONV),
                _u("g/L", scale=10, decimals=0, system=_SI), low, high)  # fmt: skip


def bun(low: float = 6, high: float = 80) -> Quantity:
    return _lab("bun", "blood urea nitrogen (BUN)", _u("mg/dL", decimals=0, system=_CONV),
                _u("mmol/L", scale=1 / 2.801, decimals=1, system=_SI), low, high, dist="log")  # fmt: skip


def glucose(low: float = 70, high: float = 400) -> Quantity:
    return _lab("glucose", "glucose", _u("mg/dL", decimals=0, system=_CONV),
                _u("mmol/L", scale=1 / 18.016, decimals=1, system=_SI), low, high, dist="log")  # fmt: skip


def weight(low: Bound = 45, high: Bound = 140, section: str = "exam") -> Quantity:
    return Quantity("weight", "weight", section, (_u("kg", decimals=1, system="metric"),
                    _u("lbs", "lb", scale=2.20462262, decimals=0, system="imperial")), low, high)  # fmt: skip


def heart_rate(low: float = 50, high: float = 130, label: str = "heart rate") -> Quantity:
    return Quantity("heart_rate", label, "vitals", (_u("beats per minute", "beats/min"),), low, high)


def respiratory_rate(low: float = 10, high: float = 36) -> Quantity:
    return Quantity("respiratory_rate", "respiratory rate", "vitals", (_u("breaths per minute", "breaths/min"),), low, high)


def temperature(low: float = 35.0, high: float = 40.2) -> Quantity:
    return Quantity("temperature", "temperature", "vitals", (
        _u("degrees celsius", "°C", decimals=1, system="metric"),
        _u("degrees fahrenheit", "°F", scale=1.8, offset=32, decimals=1, system="imperial"),
    ), low, high)  # fmt: skip


def platelets(low: float = 40_000, high: float = 420_000) -> Quantity:
    return _lab("platelet_count", "platelet count", _u("µL", "/µL", exponent=3, system=_CONV),
                _u("L", "/L", scale=1e6, exponent=9, system=_SI), low, high)  # fmt: skip


def history(key: str, text: str, p: float) -> Finding:
    return Finding(key, p, ("history+", text), ("history-", text))


def symptom(key: str, text: str, p: float, negative: str | None = None) -> Finding:
    return Finding(key, p, ("symptoms+", text), ("symptoms-", negative or text))


def sentence(key: str, yes: str, no: str | None, p: float) -> Finding:
    return Finding(key, p, ("context", yes), None if no is None else ("context", no))


AGE, SEX = Age(), Sex()


# -- the calculators ------------------------------------------------------------------------
@dataclass(frozen=True)
class Calculator:
    """One included medcalc calculator: what to sample, how to ask, how to score.

    ``output`` is ``score`` (rule-based, exact match) or ``decimal`` (±5 %). ``typical`` is a
    population-typical answer (used by the ``constant`` baseline). ``avoid`` rejects parameter
    sets that hit a known medcalc quirk (they are drawn again).
    """

    id: str
    name: str
    module: str
    function: str
    question: str
    unit: str | None
    output: Literal["score", "decimal"]
    typical: float
    fields: tuple[Field, ...]
    presentations: tuple[str, ...]
    ages: tuple[int, int] = (18, 90)
    avoid: Callable[[Mapping[str, Any]], bool] | None = None
    post: Callable[[Any], Any] | None = None  # turns medcalc's raw return value into the answer

    @property
    def exact(self) -> bool:
        return self.output == "score"


def _param(params: Mapping[str, Any], key: str) -> float | None:
    value = params.get(key)
    return None if value is None else float(value[0] if isinstance(value, (list, tuple)) else value)


def _ckd_epi_post(raw: float) -> float:
    from medcalc.utils.rounding import round_number

    return round_number(raw)


def _gbs_avoid(p: Mapping[str, Any]) -> bool:
    hb = _param(p, "hemoglobin")
    hb_gdl = hb / 10 if p["hemoglobin"][1] == "g/L" else hb
    bun_value = _param(p, "bun")
    bun_mgdl = bun_value * 2.801 if p["bun"][1] == "mmol/L" else bun_value
    gap = 12.0 if p["sex"] == "Male" else 10.0
    return abs(hb_gdl - gap) < 1e-9 or abs(bun_mgdl - 70) < 0.5


def _child_pugh_avoid(p: Mapping[str, Any]) -> bool:
    return abs(_param(p, "bilirubin") - 2.0) < 1e-9  # medcalc scores exactly 2.0 mg/dL as 0


def _caprini_avoid(p: Mapping[str, Any]) -> bool:
    return bool(p.get("previous_dvt")) and bool(p.get("previous_pe"))  # medcalc counts them twice


_OPIOIDS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    # medcalc key: (name in the note, unit, usual single doses)
    "Codeine": ("codeine", "mg", (15, 30, 60)),
    "FentaNYL buccal": ("buccal fentanyl", "µg", (100, 200, 400, 600)),
    "HYDROcodone": ("hydrocodone", "mg", (5, 7.5, 10)),
    "HYDROmorphone": ("hydromorphone", "mg", (2, 4, 8)),
    "Methadone": ("methadone", "mg", (5, 10, 20, 40)),
    "Morphine": ("morphine", "mg", (10, 15, 30, 60)),
    "OxyCODONE": ("oxycodone", "mg", (5, 10, 15, 20)),
    "OxyMORphone": ("oxymorphone", "mg", (5, 10)),
    "Tapentadol": ("tapentadol", "mg", (50, 75, 100)),
    "TraMADol": ("tramadol", "mg", (50, 100)),
}
_FREQUENCY = {1: "once daily", 2: "twice daily", 3: "three times daily", 4: "four times daily"}


def _draw_opioids(d: _Draw) -> None:
    names = sorted(_OPIOIDS)
    for drug in d.rng.sample(names, d.rng.choice((1, 1, 2, 2, 3))):
        label, unit, doses = _OPIOIDS[drug]
        dose = d.rng.choice(doses)
        per_day = d.rng.randint(1, 4)
        text = f"{label} {_fmt(dose, 1 if dose % 1 else 0)} {unit} {_FREQUENCY[per_day]}"
        d.set(f"{drug} Dose", [dose, unit], mention=text)
        d.set(f"{drug} Dose Per Day", [per_day, "per day"], mention=text)
        d.add("medications", text)


_STEROIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "Betamethasone IV": ("intravenous betamethasone", (3, 6, 12)),
    "Cortisone PO": ("oral cortisone", (25, 50, 75)),
    "Dexamethasone IV": ("intravenous dexamethasone", (2, 4, 6, 8, 10)),
    "Dexamethasone PO": ("oral dexamethasone", (0.5, 1, 2, 4, 6)),
    "Hydrocortisone IV": ("intravenous hydrocortisone", (50, 100, 200)),
    "Hydrocortisone PO": ("oral hydrocortisone", (10, 20, 30)),
    "MethylPrednisoLONE IV": ("intravenous methylprednisolone", (40, 60, 125)),
    "MethylPrednisoLONE PO": ("oral methylprednisolone", (4, 8, 16, 32)),
    "PrednisoLONE PO": ("oral prednisolone", (5, 10, 20, 40)),
    "PredniSONE PO": ("oral prednisone", (5, 10, 20, 40, 60)),
    "Triamcinolone IV": ("intravenous triamcinolone", (4, 8, 40)),
}


def _draw_steroid(d: _Draw) -> None:
    source, target = d.rng.sample(sorted(_STEROIDS), 2)
    while _STEROIDS[source][0].split()[-1] == _STEROIDS[target][0].split()[-1]:  # same drug, other route
        target = d.rng.choice(sorted(_STEROIDS))
    label, doses = _STEROIDS[source]
    dose = d.rng.choice(doses)
    text = f"{label} {_fmt(dose, 1 if dose % 1 else 0)} mg daily"
    d.set("input steroid", [source, dose, "mg"], mention=text)
    d.set("target steroid", target, mention=_STEROIDS[target][0])
    d.add("medications", text)
    d.add("context", f"The team plans to switch {{him}} to {_STEROIDS[target][0]} at an equivalent dose.")


def _draw_child_weight(d: _Draw) -> None:
    # maintenance fluids are mostly a paediatric calculation: children get a weight for their age
    if d.age < 18:
        kg = max(2.5, d.rng.gauss(3.5 + 2.6 * d.age if d.age < 10 else 7 + 3.2 * d.age, 2.0))
    else:
        kg = d.rng.uniform(45, 120)
    if d.age < 1 and d.rng.random() < 0.5:
        grams = int(round(kg * 1000, -1))
        d.set("weight", [grams, "g"], [grams / 1000, "kg"], mention=f"weight {grams} g")
        d.add("exam", f"weight {grams} g")
        return
    if d.body_system == "imperial":
        lb = round(kg * 2.20462262)
        d.set("weight", [lb, "lbs"], [lb / 2.20462262, "kg"], mention=f"weight {lb} lb")
        d.add("exam", f"weight {lb} lb")
    else:
        value = round(kg, 1)
        d.set("weight", [value, "kg"], mention=f"weight {value:.1f} kg")
        d.add("exam", f"weight {value:.1f} kg")


_ADULT_VISIT = ("comes to the clinic for a routine review", "is seen in the outpatient clinic", "attends a follow-up visit")
_ED = ("presents to the emergency department", "is brought to the emergency department", "is evaluated in the emergency department")
_WARD = ("is reviewed on the medical ward", "is admitted to the hospital", "is seen by the inpatient team")
_RENAL = ("is reviewed for medication dosing on the ward", "is seen in the nephrology clinic", "is evaluated before starting a renally cleared drug")
_ACID_BASE = ("is admitted with vomiting and malaise", "is evaluated in the emergency department for weakness", "is seen in the intensive care unit")
_QT = ("has an ECG recorded before starting a QT-prolonging drug", "is evaluated for palpitations", "has a routine pre-operative ECG")
_CHEST = ("presents to the emergency department with chest pain", "is evaluated for central chest discomfort")
_THROAT = ("presents with a sore throat", "is seen in primary care for pharyngitis")
_LIVER = ("with known cirrhosis is reviewed in the hepatology clinic", "with chronic liver disease is admitted with abdominal distension")
_PNEUMONIA = ("presents with fever, productive cough and shortness of breath", "is admitted with community-acquired pneumonia")
_AF = ("with newly diagnosed atrial fibrillation is seen in the cardiology clinic", "with atrial fibrillation is reviewed for anticoagulation")
_PE = ("presents with pleuritic chest pain and dyspnea", "is evaluated for sudden shortness of breath")
_DVT = ("presents with a painful swollen leg", "is evaluated for calf pain and swelling")
_GI_BLEED = ("presents with black stools and dizziness", "is evaluated for upper gastrointestinal bleeding")
_SURGERY = ("is assessed before surgery", "is seen in the pre-operative assessment clinic")
_GCS = ("is brought in after a fall", "is assessed after a motor vehicle collision", "is found unresponsive at home")

_QT_FIELDS = (heart_rate(45, 140), Quantity("qt_interval", "QT interval", "ecg", (_u("msec"),), 300, 520))
_AG_FIELDS = (sodium(), bicarbonate(), _gap_chloride())


def _qt(id_: str, name: str, module: str, function: str) -> Calculator:
    return Calculator(id_, name, module, function, f"What is the patient's corrected QT interval using the {name}?",
                      "msec", "decimal", 420, _QT_FIELDS, _QT)  # fmt: skip


def _heart_troponin() -> Choice:
    return Choice("initial_troponin", {
        "less than or equal to normal limit": (0.5, "labs", "initial troponin within the normal limit"),
        "between the normal limit or up to three times the normal limit": (0.3, "labs", "initial troponin between one and three times the upper normal limit"),
        "greater than three times normal limit": (0.2, "labs", "initial troponin more than three times the upper normal limit"),
    })  # fmt: skip


_CALCULATOR_LIST: tuple[Calculator, ...] = (
    Calculator("bmi", "body mass index", "bmi_calculator", "bmi_calculator_explanation",
               "What is the patient's body mass index (BMI)?", "kg/m^2", "decimal", 25,
               (weight(40, 150), Height()), _ADULT_VISIT),
    Calculator("bsa", "body surface area (Mosteller)", "bsa_calculator", "bsa_calculator_explaination",
               "What is the patient's body surface area using the Mosteller formula?", "m^2", "decimal", 1.9,
               (weight(40, 140), Height()), ("is seen in the oncology clinic before chemotherapy dosing",)),
    Calculator("ideal_body_weight", "ideal body weight (Devine)", "ideal_body_weight", "ibw_explanation",
               "What is the patient's ideal body weight using the Devine formula?", "kg", "decimal", 65,
               (SEX, Height(153, 198)), _WARD),
    Calculator("adjusted_body_weight", "adjusted body weight", "adjusted_body_weight", "abw_explanation",
               "What is the patient's adjusted body weight (ABW = IBW + 0.4 × (weight − IBW), IBW by the Devine formula)?",
               "kg", "decimal", 70, (SEX, weight(60, 170), Height(153, 198)), _WARD),
    Calculator("creatinine_clearance", "Cockcroft-Gault creatinine clearance", "creatinine_clearance",
               "generate_cockcroft_gault_explanation",
               "What is the patient's creatinine clearance using the Cockcroft-Gault equation? Use the adjusted body "
               "weight rule: actual weight if BMI < 18.5 kg/m², the lower of ideal (Devine) and actual weight if BMI "
               "18.5-24.9 kg/m², and adjusted body weight (IBW + 0.4 × (weight − IBW)) if BMI ≥ 25 kg/m².",
               "mL/min", "decimal", 90, (AGE, SEX, weight(45, 140), Height(153, 198), creatinine()), _RENAL),
    Calculator("ckd_epi_2021", "CKD-EPI 2021 creatinine equation", "ckd_epi_2021_creatinine", "ckd_epi_2021",
               "What is the patient's estimated GFR using the 2021 race-free CKD-EPI creatinine equation?",
               "mL/min/1.73 m^2", "decimal", 90, (AGE, SEX, creatinine()), _RENAL, post=_ckd_epi_post),
    Calculator("mdrd_gfr", "MDRD GFR equation", "mdrd_gfr", "mrdr_gfr_explanation",
               "What is the patient's estimated GFR using the 4-variable MDRD equation (175 × Scr^-1.154 × age^-0.203, "
               "× 0.742 if female, × 1.212 if Black)?", "mL/min/1.73 m^2", "decimal", 90,
               (AGE, SEX, creatinine(), Choice("race", {
                   "Black": (0.25, "context", "{He} identifies as Black."),
                   "White": (0.25, "context", "{He} identifies as White."),
                   "": (0.5, None, ""),
               })), _RENAL),
    Calculator("mean_arterial_pressure", "mean arterial pressure", "mean_arterial_pressure",
               "mean_arterial_pressure_explanation", "What is the patient's mean arterial pressure?", "mmHg",
               "decimal", 93, (BloodPressure(70, 200),), _ED),
    Calculator("anion_gap", "anion gap", "anion_gap", "compute_anion_gap_explanation",
               "What is the patient's anion gap (Na − (Cl + HCO3))?", "mEq/L", "decimal", 12, _AG_FIELDS, _ACID_BASE),
    Calculator("delta_gap", "delta gap", "delta_gap", "compute_delta_gap_explanation",
               "What is the patient's delta gap (anion gap − 12)?", "mEq/L", "decimal", 0, _AG_FIELDS, _ACID_BASE),
    Calculator("albumin_corrected_anion_gap", "albumin-corrected anion gap", "albumin_corrected_anion",
               "compute_albumin_corrected_anion_explanation",
               "What is the patient's albumin-corrected anion gap (anion gap + 2.5 × (4 − albumin in g/dL))?", "mEq/L",
               "decimal", 12, (*_AG_FIELDS, albumin()), _ACID_BASE),
    Calculator("albumin_corrected_delta_gap", "albumin-corrected delta gap", "albumin_corrected_delta_gap",
               "compute_albumin_corrected_delta_gap_explanation",
               "What is the patient's albumin-corrected delta gap (albumin-corrected anion gap − 12)?", "mEq/L",
               "decimal", 0, (*_AG_FIELDS, albumin()), _ACID_BASE),
    Calculator("albumin_corrected_delta_ratio", "albumin-corrected delta ratio", "albumin_delta_ratio",
               "compute_albumin_delta_ratio_explanation",
               "What is the patient's albumin-corrected delta ratio (albumin-corrected delta gap / (24 − HCO3))?",
               None, "decimal", 1.0, (sodium(), bicarbonate(5, 19), _gap_chloride(16, 34), albumin()), _ACID_BASE),
    Calculator("calcium_correction", "albumin-corrected calcium", "calcium_correction",
               "calculate_corrected_calcium_explanation",
               "What is the patient's calcium corrected for albumin (calcium + 0.8 × (4 − albumin in g/dL))?",
               "mg/dL", "decimal", 9.5,
               (_lab("calcium", "total calcium", _u("mg/dL", decimals=1, system=_CONV), None, 6.5, 12.0), albumin()),
               _WARD),
    Calculator("ldl_calculated", "Friedewald LDL cholesterol", "ldl_calculated", "compute_ldl_explanation",
               "What is the patient's LDL cholesterol using the Friedewald equation?", "mg/dL", "decimal", 110,
               (_lab("total_cholestrol", "total cholesterol", _u("mg/dL", decimals=0, system=_CONV), None, 140, 320),
                _lab("hdl_cholestrol", "HDL cholesterol", _u("mg/dL", decimals=0, system=_CONV), None, 25, 95),
                _lab("triglycerides", "triglycerides", _u("mg/dL", decimals=0, system=_CONV), None, 50, 390)),
               ("has a fasting lipid panel at a routine visit", "is seen in the cardiovascular risk clinic")),
    Calculator("serum_osmolality", "calculated serum osmolality", "sOsm", "compute_serum_osmolality_explanation",
               "What is the patient's calculated serum osmolality (2 × Na + BUN/2.8 + glucose/18)?", "mOsm/kg",
               "decimal", 290, (sodium(120, 160), bun(), glucose(60, 900)), _ACID_BASE),
    Calculator("sodium_correction_hyperglycemia", "sodium corrected for hyperglycemia (Katz)", "sch",
               "compute_sodium_correction_hyperglycemia_explanation",
               "What is the patient's sodium corrected for hyperglycemia (Na + 0.024 × (glucose − 100))?", "mEq/L",
               "decimal", 140, (sodium(118, 142), glucose(180, 1000)),
               ("with poorly controlled diabetes presents with polyuria and confusion",)),
    Calculator("free_water_deficit", "free water deficit", "free_water_deficit", "free_water_deficit_explanation",
               "What is the patient's free water deficit (total body water fraction × weight × (Na/140 − 1))?",
               "L", "decimal", 3.0, (AGE, SEX, weight(40, 120), sodium(147, 172)),
               ("is admitted with confusion and poor oral intake",), ages=(18, 95)),
    Calculator("fena", "fractional excretion of sodium", "compute_fena", "compute_fena_explanation",
               "What is the patient's fractional excretion of sodium (FENa)?", "%", "decimal", 1.0,
               (sodium(125, 150), creatinine(0.7, 6.0),
                _lab("urine_sodium", "urine sodium", _MEQ, _MMOL_ION, 5, 150, dist="log"),
                _lab("urine_creatinine", "urine creatinine", _u("mg/dL", decimals=0, system=_CONV),
                     _u("mmol/L", scale=1 / 11.312, decimals=1, system=_SI), 20, 250)),
               ("is evaluated for acute kidney injury",)),
    Calculator("fib4", "Fibrosis-4 (FIB-4) index", "fibrosis_4", "compute_fib4_explanation",
               "What is the patient's Fibrosis-4 (FIB-4) index?", None, "decimal", 1.3,
               (AGE, _lab("ast", "AST", _u("U/L"), None, 12, 300, dist="log"),
                _lab("alt", "ALT", _u("U/L"), None, 10, 300, dist="log"), platelets()),
               ("with chronic hepatitis is seen in the liver clinic", "with fatty liver disease is reviewed")),
    Calculator("homa_ir", "HOMA-IR", "homa_ir", "compute_homa_ir_explanation",
               "What is the patient's HOMA-IR (fasting insulin × fasting glucose in mg/dL / 405)?", None, "decimal",
               2.0, (_lab("insulin", "fasting insulin", _u("µIU/mL", decimals=1), None, 2, 45, dist="log"),
                     glucose(70, 220)), ("is evaluated for insulin resistance",)),
    Calculator("maintenance_fluids", "maintenance fluids (4-2-1 rule)", "maintenance_fluid_calc",
               "maintenance_fluid_explanation",
               "What is the patient's maintenance IV fluid rate by the Holliday-Segar 4-2-1 rule?", "mL/hr", "decimal",
               100, (Custom(_draw_child_weight),), ("is admitted and kept nil by mouth",), ages=(0, 30)),
    Calculator("morphine_milligram_equivalents", "morphine milligram equivalents", "mme", "mme_explanation",
               "What is the patient's total daily morphine milligram equivalent (MME) dose, using the CDC 2022 "
               "conversion factors (in morphine mg per day)?", "mg/day", "decimal", 60, (Custom(_draw_opioids),),
               ("with chronic pain is reviewed in the pain clinic", "is admitted for pain control")),
    Calculator("steroid_conversion", "corticosteroid dose conversion", "steroid_conversion",
               "compute_steroid_conversion_explanation",
               "What is the equivalent daily dose of the new corticosteroid?", "mg", "decimal", 10,
               (Custom(_draw_steroid),), _WARD),
    _qt("qtc_bazett", "Bazett formula", "qt_calculator_bazett", "bazett_calculator_explanation"),
    _qt("qtc_fredericia", "Fridericia formula", "qt_calculator_fredericia", "fredericia_calculator_explanation"),
    _qt("qtc_framingham", "Framingham formula", "qt_calculator_framingham", "framingham_calculator_explanation"),
    _qt("qtc_hodges", "Hodges formula", "qt_calculator_hodges", "hodges_calculator_explanation"),
    _qt("qtc_rautaharju", "Rautaharju formula", "qt_calculator_rautaharju", "rautaharju_calculator_explanation"),
    # -- rule-based scores ------------------------------------------------------------------
    Calculator("curb_65", "CURB-65", "curb_65", "curb_65_explanation", "What is the patient's CURB-65 score?",
               None, "score", 1, (AGE, symptom("confusion", "new confusion", 0.3), bun(), respiratory_rate(12, 40),
                                  BloodPressure(75, 170)), _PNEUMONIA),
    Calculator("centor", "Centor score (McIsaac)", "centor_score", "compute_centor_score_explanation",
               "What is the patient's Centor score (McIsaac modification, with the age criterion)?", None, "score",
               1, (AGE, temperature(36.2, 40.0),
                   Finding("exudate_swelling_tonsils", 0.5, ("exam+", "tonsillar exudate and swelling"),
                           ("exam-", "tonsillar exudate")),
                   Finding("tender_lymph_nodes", 0.5, ("exam+", "tender anterior cervical lymph nodes"),
                           ("exam-", "cervical lymphadenopathy")),
                   Finding("cough_absent", 0.5, ("symptoms-", "cough"), ("symptoms+", "a cough"))),
               _THROAT, ages=(3, 80)),
    Calculator("feverpain", "FeverPAIN score", "feverpain", "compute_fever_pain_explanation",
               "What is the patient's FeverPAIN score?", None, "score", 2,
               (symptom("fever_24_hours", "fever in the past 24 hours", 0.5),
                Finding("cough_coryza_absent", 0.5, ("symptoms-", "cough or coryza"), ("symptoms+", "a cough and coryza")),
                Finding("symptom_onset", 0.5, ("context", "The symptoms started 2 days ago."),
                        ("context", "The symptoms started 6 days ago.")),
                Finding("purulent_tonsils", 0.4, ("exam+", "purulent tonsils"), ("exam-", "tonsillar pus")),
                Finding("severe_tonsil_inflammation", 0.4, ("exam+", "severely inflamed tonsils"),
                        ("exam-", "severe tonsillar inflammation"))), _THROAT, ages=(5, 70)),
    Calculator("cha2ds2_vasc", "CHA2DS2-VASc score", "cha2ds2_vasc_score", "generate_cha2ds2_vasc_explanation",
               "What is the patient's CHA2DS2-VASc score?", None, "score", 2,
               (AGE, SEX, history("chf", "congestive heart failure", 0.25), history("hypertension", "hypertension", 0.5),
                history("stroke", "a prior ischemic stroke", 0.15), history("tia", "a transient ischemic attack", 0.1),
                history("thromboembolism", "a peripheral thromboembolism", 0.08),
                history("vascular_disease", "vascular disease (prior myocardial infarction or peripheral artery disease)", 0.25),
                history("diabetes", "diabetes mellitus", 0.3)), _AF, ages=(40, 95)),
    Calculator("has_bled", "HAS-BLED score", "has_bled_score", "compute_has_bled_score_explanation",
               "What is the patient's HAS-BLED score?", None, "score", 2,
               (AGE, Quantity("alcoholic_drinks", "alcohol intake", "social", (_u("", "alcoholic drinks per week"),), 0, 16,
                              plain=True, template="{label} of {value}"),
                history("hypertension", "uncontrolled hypertension (systolic above 160 mmHg)", 0.3),
                history("liver_disease_has_bled", "cirrhosis", 0.1),
                history("renal_disease_has_bled", "chronic kidney disease on dialysis", 0.1),
                history("stroke", "a prior stroke", 0.15), history("prior_bleeding", "a prior major bleed", 0.15),
                history("labile_inr", "labile INRs (time in therapeutic range below 60%)", 0.15),
                Finding("medications_for_bleeding", 0.3, ("medications", "aspirin 81 mg daily"), None)),
               _AF, ages=(40, 95)),
    Calculator("heart_score", "HEART score", "heart_score", "compute_heart_score_explanation",
               "What is the patient's HEART score for major cardiac events?", None, "score", 3,
               (AGE, Choice("history", {
                   "Slightly suspicious": (0.35, "context", "The history is slightly suspicious for acute coronary syndrome."),
                   "Moderately suspicious": (0.35, "context", "The history is moderately suspicious for acute coronary syndrome."),
                   "Highly suspicious": (0.3, "context", "The history is highly suspicious for acute coronary syndrome."),
               }), Choice("electrocardiogram", {
                   "Normal": (0.45, "ecg", "normal"),
                   "Non-specific repolarization disturbance": (0.35, "ecg", "non-specific repolarization changes"),
                   "Significant ST deviation": (0.2, "ecg", "significant ST-segment depression"),
               }), history("hypertension", "hypertension", 0.45), history("hypercholesterolemia", "hypercholesterolemia", 0.4),
                history("diabetes_mellitus", "diabetes mellitus", 0.3), history("obesity", "obesity (BMI above 30 kg/m²)", 0.3),
                Finding("smoking", 0.3, ("social", "current smoker"), ("social", "never smoker")),
                history("family_with_cvd", "a family history of premature coronary disease", 0.2), _heart_troponin()),
               _CHEST, ages=(30, 90)),
    Calculator("revised_cardiac_risk_index", "Revised Cardiac Risk Index", "cardiac_risk_index",
               "compute_cardiac_index_explanation", "What is the patient's Revised Cardiac Risk Index (RCRI)?", None,
               "score", 1,
               (sentence("elevated_risk_surgery", "{He} is scheduled for an open abdominal aortic aneurysm repair.",
                         "{He} is scheduled for a knee arthroscopy.", 0.5),
                history("ischemetic_heart_disease", "ischemic heart disease", 0.3),
                history("congestive_heart_failure", "congestive heart failure", 0.2),
                history("cerebrovascular_disease", "a prior stroke", 0.15),
                Finding("pre_operative_insulin_treatment", 0.25, ("medications", "insulin glargine"), None),
                creatinine(0.6, 4.0, key="pre_operative_creatinine", label="pre-operative creatinine")), _SURGERY,
               ages=(40, 90)),
    Calculator("charlson_comorbidity_index", "Charlson Comorbidity Index", "cci", "compute_cci_explanation",
               "What is the patient's Charlson Comorbidity Index (CCI)?", None, "score", 3,
               (AGE, history("mi", "a prior myocardial infarction", 0.2), history("chf", "congestive heart failure", 0.15),
                history("peripheral_vascular_disease", "peripheral vascular disease", 0.15),
                history("cva", "a cerebrovascular accident", 0.1), history("tia", "a transient ischemic attack", 0.1),
                history("connective_tissue_disease", "rheumatoid arthritis", 0.1), history("dementia", "dementia", 0.1),
                history("copd", "COPD", 0.2), history("hemiplegia", "hemiplegia", 0.05),
                history("peptic_ucler_disease", "peptic ulcer disease", 0.1),
                history("moderate_to_severe_ckd", "moderate to severe chronic kidney disease", 0.15),
                history("leukemia", "chronic lymphocytic leukemia", 0.05), history("lymphoma", "lymphoma", 0.05),
                history("aids", "AIDS", 0.03),
                Choice("liver_disease", {"none": (0.5, None, ""), "mild": (0.3, "history+", "mild chronic hepatitis"),
                                         "moderate to severe": (0.2, "history+", "cirrhosis with portal hypertension")}),
                Choice("diabetes_mellitus", {"none or diet-controlled": (0.5, None, ""),
                                             "uncomplicated": (0.3, "history+", "type 2 diabetes without complications"),
                                             "end-organ damage": (0.2, "history+", "type 2 diabetes with retinopathy and nephropathy")}),
                Choice("solid_tumor", {"none": (0.6, None, ""), "localized": (0.25, "history+", "localized prostate cancer"),
                                       "metastatic": (0.15, "history+", "metastatic colon cancer")})),
               _WARD, ages=(35, 95)),
    Calculator("child_pugh", "Child-Pugh score", "child_pugh_score", "compute_child_pugh_score_explanation",
               "What is the patient's Child-Pugh score?", None, "score", 7,
               (_lab("bilirubin", "total bilirubin", _u("mg/dL", decimals=1), None, 0.4, 8.0, dist="log"),
                albumin(1.8, 4.5), Quantity("inr", "INR", "labs", (_u("", "", decimals=1),), 0.9, 3.5, plain=True),
                Choice("ascites", {"Absent": (0.4, "exam+", "no ascites"), "Slight": (0.35, "exam+", "slight ascites"),
                                   "Moderate": (0.25, "exam+", "moderate ascites")}),
                Choice("encephalopathy", {"No Encephalopathy": (0.45, "exam+", "no hepatic encephalopathy"),
                                          "Grade 1-2": (0.35, "exam+", "grade 1-2 hepatic encephalopathy"),
                                          "Grade 3-4": (0.2, "exam+", "grade 3-4 hepatic encephalopathy")})),
               _LIVER, avoid=_child_pugh_avoid),
    Calculator("meld_na", "MELD-Na", "meldna", "compute_meldna_explanation", "What is the patient's MELD-Na score?",
               None, "score", 15,
               (creatinine(0.5, 5.0), _lab("bilirubin", "total bilirubin", _u("mg/dL", decimals=1), None, 0.4, 25.0, dist="log"),
                Quantity("inr", "INR", "labs", (_u("", "", decimals=1),), 0.9, 4.0, plain=True), sodium(118, 145),
                sentence("dialysis_twice", "{He} had hemodialysis twice in the past week.", None, 0.1),
                sentence("cvvhd", "{He} received continuous veno-venous hemodialysis this week.", None, 0.05)),
               _LIVER),
    Calculator("glasgow_coma_scale", "Glasgow Coma Scale", "glasgow_coma_score",
               "compute_glasgow_coma_score_explanation", "What is the patient's Glasgow Coma Scale score?", None,
               "score", 15,
               (Choice("best_eye_response", {
                   "eyes open spontaneously": (0.4, "exam+", "eyes open spontaneously"),
                   "eye opening to verbal command": (0.25, "exam+", "eyes open to verbal command"),
                   "eye opening to pain": (0.2, "exam+", "eyes open only to a painful stimulus"),
                   "no eye opening": (0.15, "exam+", "no eye opening to any stimulus")}),
                Choice("best_verbal_response", {
                    "oriented": (0.3, "exam+", "oriented speech"), "confused": (0.25, "exam+", "confused speech"),
                    "inappropriate words": (0.15, "exam+", "inappropriate words"),
                    "incomprehensible sounds": (0.15, "exam+", "incomprehensible sounds"),
                    "no verbal response": (0.15, "exam+", "no verbal response")}),
                Choice("best_motor_response", {
                    "obeys commands": (0.35, "exam+", "obeys motor commands"),
                    "localizes pain": (0.2, "exam+", "localizes a painful stimulus"),
                    "withdrawal from pain": (0.15, "exam+", "withdraws from pain"),
                    "flexion to pain": (0.1, "exam+", "abnormal flexion to pain"),
                    "extension to pain": (0.1, "exam+", "extension to pain"),
                    "no motor response": (0.1, "exam+", "no motor response")})), _GCS),
    Calculator("glasgow_blatchford", "Glasgow-Blatchford bleeding score", "glasgow_bleeding_score",
               "glasgow_bleeding_score_explanation", "What is the patient's Glasgow-Blatchford bleeding score?", None,
               "score", 6,
               (SEX, _lab("hemoglobin", "hemoglobin", _u("g/dL", decimals=1, system=_CONV),
                          _u("g/L", scale=10, decimals=0, system=_SI), 6.0, 17.0), bun(8, 90),
                BloodPressure(75, 160), heart_rate(55, 140), symptom("melena_present", "melena", 0.6),
                symptom("syncope", "a syncopal episode", 0.25), history("hepatic_disease_history", "chronic liver disease", 0.15),
                history("cardiac_failure", "heart failure", 0.15)), _GI_BLEED, avoid=_gbs_avoid),
    Calculator("perc", "PERC rule", "perc_rule", "compute_perc_rule_explanation",
               "How many PERC rule criteria does the patient meet?", None, "score", 1,
               (AGE, heart_rate(60, 130), Quantity("oxygen_sat", "oxygen saturation", "vitals", (_u("%"),), 88, 100,
                                                  template="{label} {value} on room air"),
                Finding("unilateral_leg_swelling", 0.2, ("exam+", "unilateral leg swelling"), ("exam-", "leg swelling")),
                symptom("hemoptysis", "hemoptysis", 0.1),
                sentence("recent_surgery_or_trauma", "{He} had knee surgery under general anesthesia 2 weeks ago.", None, 0.15),
                history("previous_pe", "a prior pulmonary embolism", 0.1), history("previous_dvt", "a prior deep vein thrombosis", 0.1),
                Finding("hormonal_use", 0.15, ("medications", "an estrogen-containing oral contraceptive"), None)),
               _PE, ages=(18, 80)),
    Calculator("psi", "Pneumonia Severity Index", "psi_score", "psi_score_explanation",
               "What is the patient's Pneumonia Severity Index (PSI/PORT) score?", None, "score", 90,
               (AGE, SEX, sentence("nursing_home_resident", "{He} lives in a nursing home.", "{He} lives at home.", 0.2),
                history("neoplastic_disease", "active lung cancer", 0.1), history("liver_disease", "cirrhosis", 0.08),
                history("chf", "congestive heart failure", 0.15), history("cerebrovascular_disease", "a prior stroke", 0.1),
                history("renal_disease", "chronic kidney disease", 0.15),
                Finding("altered_mental_status", 0.2, ("exam+", "new confusion"), ("exam-", "confusion")),
                heart_rate(60, 140, "pulse"), temperature(34.5, 40.5), respiratory_rate(14, 38), BloodPressure(75, 160),
                Quantity("pH", "arterial pH", "labs", (_u("", "", decimals=2),), 7.20, 7.50, plain=True),
                bun(8, 70), sodium(124, 146, conv=False), glucose(70, 400),
                Quantity("hemocratit", "hematocrit", "labs", (_u("%", decimals=0),), 24, 48),
                Quantity("partial_pressure_oxygen", "PaO2", "labs", (_u("mm Hg", "mmHg", decimals=0, system=_CONV),
                                                                      _u("kPa", scale=0.133322, decimals=1, system=_SI)), 45, 100),
                Finding("pleural_effusion", 0.2, ("imaging+", "a pleural effusion"), ("imaging-", "pleural effusion"))),
               _PNEUMONIA, ages=(20, 95)),
    Calculator("wells_dvt", "Wells' criteria for DVT", "wells_criteria_dvt", "compute_wells_criteria_dvt_explanation",
               "What is the patient's Wells' score for deep vein thrombosis?", None, "score", 1,
               (history("active_cancer", "active cancer treated within the last 6 months", 0.15),
                sentence("bedridden_for_atleast_3_days", "{He} has been bedridden for the past 4 days.", None, 0.15),
                sentence("major_surgery_in_last_12_weeks", "{He} had major abdominal surgery 5 weeks ago.", None, 0.15),
                Finding("calf_swelling_3cm", 0.4, ("exam+", "calf swelling 4 cm larger than the other leg"), ("exam-", "calf asymmetry")),
                Finding("collateral_superficial_veins", 0.15, ("exam+", "collateral non-varicose superficial veins"), None),
                Finding("leg_swollen", 0.3, ("exam+", "swelling of the entire leg"), None),
                Finding("localized_tenderness_on_deep_venuous_system", 0.4,
                        ("exam+", "tenderness along the deep venous system"), ("exam-", "tenderness along the deep veins")),
                Finding("pitting_edema_on_symptomatic_leg", 0.35, ("exam+", "pitting edema confined to the symptomatic leg"), None),
                Finding("paralysis_paresis_immobilization_in_lower_extreme", 0.1,
                        ("exam+", "a recent plaster cast on the lower leg"), None),
                history("previous_dvt", "a previously documented DVT", 0.15),
                sentence("alternative_to_dvt_diagnosis", "A ruptured Baker cyst is considered at least as likely as DVT.",
                         "No alternative diagnosis is as likely as DVT.", 0.3)), _DVT),
    Calculator("wells_pe", "Wells' criteria for pulmonary embolism", "wells_criteria_pe", "calculate_pe_wells_explanation",
               "What is the patient's Wells' score for pulmonary embolism?", None, "score", 1.5,
               (sentence("clinical_dvt", "There are clinical signs of deep vein thrombosis in the left leg.",
                         "There are no clinical signs of deep vein thrombosis.", 0.25),
                sentence("pe_number_one", "Pulmonary embolism is considered the most likely diagnosis.",
                         "An alternative diagnosis is considered more likely than pulmonary embolism.", 0.4),
                heart_rate(60, 135), sentence("immobilization_for_3days", "{He} has been immobilized for 5 days.", None, 0.15),
                sentence("surgery_in_past4weeks", "{He} had hip surgery 3 weeks ago.", None, 0.15),
                history("previous_pe", "a prior pulmonary embolism", 0.1), history("previous_dvt", "a prior DVT", 0.1),
                symptom("hemoptysis", "hemoptysis", 0.15),
                history("malignancy_with_treatment", "breast cancer on active treatment", 0.12)), _PE),
    Calculator("caprini", "Caprini score for venous thromboembolism", "caprini_score", "caprini_score_explanation",
               "What is the patient's Caprini score for venous thromboembolism risk?", None, "score", 4,
               (AGE, SEX, Choice("surgery_type", {
                   "none": (0.2, "context", "No surgery is planned."),
                   "minor": (0.25, "context", "{He} is scheduled for minor surgery."),
                   "major": (0.25, "context", "{He} is scheduled for major open surgery lasting more than 45 minutes."),
                   "laparoscopic": (0.15, "context", "{He} is scheduled for a laparoscopic procedure lasting more than 45 minutes."),
                   "elective major lower extremity arthroplasty": (0.15, "context", "{He} is scheduled for an elective total hip arthroplasty."),
               }), Choice("mobility", {
                   "normal": (0.6, "context", "{He} is ambulatory."),
                   "on bed rest": (0.25, "context", "{He} is currently on bed rest."),
                   "confined to bed >72 hours": (0.15, "context", "{He} has been confined to bed for more than 72 hours."),
               }), history("major_surgery", "major surgery within the last month", 0.1),
                history("chf", "congestive heart failure diagnosed within the last month", 0.05),
                history("sepsis", "sepsis within the last month", 0.05), history("pneumonia", "pneumonia within the last month", 0.05),
                history("hip_pelvis_leg_fracture", "a hip fracture within the last month", 0.05),
                history("varicose_veins", "varicose veins", 0.2), symptom("current_swollen_legs", "swollen legs", 0.15),
                history("previous_dvt", "a previous DVT", 0.08), history("previous_pe", "a previous pulmonary embolism", 0.05),
                history("family_history_thrombosis", "a family history of thrombosis", 0.1),
                history("positive_factor_v", "factor V Leiden", 0.03),
                history("inflammatory_bowel_disease", "inflammatory bowel disease", 0.05),
                history("copd", "COPD", 0.1), history("malignancy", "a present or previous malignancy", 0.15)),
               _SURGERY, ages=(20, 90), avoid=_caprini_avoid),
)

#: The included calculators by id (see the module docstring for the excluded ones).
CALCULATORS: dict[str, Calculator] = {c.id: c for c in _CALCULATOR_LIST}
#: Excluded medcalc calculators and the reason (documented in docs/tasks.md too).
EXCLUDED: dict[str, str] = {
    "apache_ii": "adds the GCS instead of 15 - GCS and gives no low-side points (HR, RR, pH, Na, K, Hct, WBC, MAP)",
    "sofa": "cardiovascular item gives 2 points to every patient without hypotension",
    "sirs_criteria": "heart-rate criterion counted in both branches; WBC converted to cells/m^3 (always met)",
    "framingham_risk_score": "risk rounded to tenths before percent (multiples of 10 %; age 75 scores 100 %)",
    "target_weight": "fails to import in medcalc-bench 1.7.0",
    "conception_date": "answer is a date, not a number with a unit",
    "estimated_due_date": "answer is a date, not a number with a unit",
    "gestational_age": "answer is a (weeks, days) pair, not a number with a unit",
}


def calculator_ids() -> list[str]:
    """The ids of the included calculators, in declaration order."""
    return list(CALCULATORS)


# -- computing ------------------------------------------------------------------------------
def _as_medcalc(params: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy with JSON lists turned into tuples (medcalc mutates its input dict)."""
    return {k: tuple(v) if isinstance(v, list) else copy.deepcopy(v) for k, v in params.items()}


def _function(calc: Calculator) -> Callable[[dict[str, Any]], Any]:
    module = importlib.import_module(f"medcalc.{calc.module}")
    return getattr(module, calc.function)


def compute(calculator: str, params: Mapping[str, Any]) -> float | int:
    """The answer of ``medcalc-bench`` for a calculator id and its parameters (as in ``case["params"]``).

    >>> compute("mean_arterial_pressure", {"sys_bp": [120, "mm hg"], "dia_bp": [81, "mm hg"]})
    94.0
    """
    calc = CALCULATORS.get(calculator)
    if calc is None:
        raise TaskArgumentError(f"unknown calculator {calculator!r}; known: {', '.join(CALCULATORS)}")
    raw = _function(calc)(_as_medcalc(params))
    answer = calc.post(raw) if calc.post is not None else raw["Answer"]
    return answer


def reference_for(calc: Calculator, value: float) -> dict[str, Any]:
    """The reference of a case: exact for scores, ±5 % (MedCalc-Bench) for decimal values.

    >>> reference_for(CALCULATORS["bmi"], 20.0)
    {'value': 20.0, 'unit': 'kg/m^2', 'lower': 19.0, 'upper': 21.0}
    >>> reference_for(CALCULATORS["curb_65"], 2)
    {'value': 2, 'unit': None, 'lower': 2, 'upper': 2}
    """
    if calc.exact:
        return {"value": value, "unit": calc.unit, "lower": value, "upper": value}
    margin = abs(value) * TOLERANCE
    return {"value": value, "unit": calc.unit, "lower": round(value - margin, 6), "upper": round(value + margin, 6)}


# -- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class CalculatorConfig:
    """Knobs of the generator.

    Args:
        calculators: ids to draw from (default: all included calculators).
        si_units: probability that a case's laboratory values are written in SI units.
        imperial_units: probability that weight, height and temperature are in lb, in/ft, °F.
        negative_mentions: probability that an absent finding is stated ("no history of …")
            rather than left out.
        consistency_tolerance: largest relative difference allowed between the answer for the
            printed units and the answer for the same values in canonical units.

    >>> CalculatorConfig(calculators=("bmi",)).si_units
    0.4
    """

    calculators: tuple[str, ...] | None = None
    si_units: float = 0.4
    imperial_units: float = 0.4
    negative_mentions: float = 0.5
    consistency_tolerance: float = 0.01

    def __post_init__(self) -> None:
        for name in ("si_units", "imperial_units", "negative_mentions", "consistency_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise TaskArgumentError(f"CalculatorConfig.{name} must be a number in [0, 1], got {value!r}")
        if self.calculators is not None:
            if isinstance(self.calculators, str) or not self.calculators:
                raise TaskArgumentError("CalculatorConfig.calculators must be a non-empty sequence of calculator ids")
            unknown = [c for c in self.calculators if c not in CALCULATORS]
            if unknown:
                raise TaskArgumentError(f"unknown calculators {unknown}; known: {', '.join(CALCULATORS)}")


# -- rendering ------------------------------------------------------------------------------
def _person(d: _Draw) -> str:
    if d.age < 18:
        return "boy" if d.sex == "Male" else "girl"
    return "man" if d.sex == "Male" else "woman"


def _pronouns(text: str, d: _Draw) -> str:
    male = d.sex == "Male"
    for token, (m, f) in {"{He}": ("He", "She"), "{he}": ("he", "she"), "{him}": ("him", "her"),
                          "{His}": ("His", "Her"), "{his}": ("his", "her")}.items():  # fmt: skip
        text = text.replace(token, m if male else f)
    return text


def _join(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def _note(calc: Calculator, d: _Draw) -> str:
    s = d.sections
    he = "He" if d.sex == "Male" else "She"
    if d.age >= 1:
        article = "An" if str(d.age).startswith("8") or d.age in (11, 18) else "A"
        opening = f"{article} {d.age}-year-old {_person(d)} "
    else:
        opening = "An infant " + ("boy " if d.sex == "Male" else "girl ")
    lines = [opening + d.rng.choice(calc.presentations) + "."]
    if s.get("history+"):
        lines.append(f"Past medical history: {_join(s['history+'])}.")
    if s.get("history-"):
        lines.append(f"No history of {_join(s['history-'], 'or')}.")
    if s.get("medications"):
        lines.append(f"Current medications: {_join(s['medications'])}.")
    if s.get("social"):
        lines.append(f"Social history: {_join(s['social'])}.")
    if s.get("symptoms+"):
        lines.append(f"{he} reports {_join(s['symptoms+'])}.")
    if s.get("symptoms-"):
        lines.append(f"{he} denies {_join(s['symptoms-'], 'or')}.")
    lines.extend(_pronouns(t, d) for t in s.get("context", ()))
    if s.get("vitals"):
        lines.append(f"Vital signs: {', '.join(s['vitals'])}.")
    exam = list(s.get("exam", ())) + list(s.get("exam+", ()))
    if exam:
        lines.append(f"On examination: {_join(exam)}.")
    if s.get("exam-"):
        lines.append(f"There is no {_join(s['exam-'], 'or')}.")
    if s.get("labs"):
        lines.append(f"Laboratory results: {', '.join(s['labs'])}.")
    if s.get("ecg"):
        lines.append(f"ECG: {', '.join(s['ecg'])}.")
    if s.get("imaging+"):
        lines.append(f"Chest X-ray shows {_join(s['imaging+'])}.")
    if s.get("imaging-"):
        lines.append(f"Chest X-ray shows no {_join(s['imaging-'], 'or')}.")
    return "\n".join(lines)


def system_prompt() -> str:
    """The system message of every calculator case."""
    return (
        "You are a clinical decision-support assistant. Read the patient note and compute the requested "
        "clinical calculator value from the information in the note; a finding that the note does not "
        "mention counts as absent. "
        + reasoning_instruction(
            "the value followed by its unit, e.g. <answer>68.5 mL/min</answer>; for a score or a "
            "unitless index, the number alone, e.g. <answer>3</answer>."
        )
    )


def _question(calc: Calculator) -> str:
    if calc.unit:
        return f"{calc.question} Give the answer in {calc.unit}."
    return f"{calc.question} Give the answer as a number."


# -- generation -----------------------------------------------------------------------------
def _close(a: float, b: float, calc: Calculator, tolerance: float) -> bool:
    if calc.exact:
        return a == b
    return abs(a - b) <= tolerance * max(abs(a), abs(b), 1e-9) or abs(a - b) < 1e-6


def _attempt(calc: Calculator, index: int, seed: int, attempt: int, config: CalculatorConfig) -> dict[str, Any] | None:
    rng = random.Random(f"{TASK}:{seed}:{index}:{attempt}")
    d = _Draw(
        rng=rng,
        config=config,
        sex=rng.choice(("Male", "Female")),
        age=rng.randint(*calc.ages),
        lab_system=_SI if rng.random() < config.si_units else _CONV,
        body_system="imperial" if rng.random() < config.imperial_units else "metric",
    )
    for f in calc.fields:
        f.draw(d)
    if calc.avoid is not None and calc.avoid(d.params):
        return None
    try:
        value = compute(calc.id, d.params)
        check = compute(calc.id, d.canonical)
    except Exception as exc:  # noqa: BLE001 - medcalc can fail on an odd draw: draw again
        log.debug("calculator %s case %d attempt %d: medcalc raised %r", calc.id, index, attempt, exc)
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    if not _close(float(value), float(check), calc, config.consistency_tolerance):
        log.debug("calculator %s case %d attempt %d: %r (printed units) vs %r (canonical)", calc.id, index, attempt, value, check)
        return None
    note = _note(calc, d)
    return {
        "id": f"{TASK}-{seed}-{index:05d}",
        "prompt": [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": f"Patient note:\n{note}\n\nQuestion: {_question(calc)}"},
        ],
        "task": TASK,
        "reference": reference_for(calc, value),
        "case": {
            "calculator": calc.id,
            "name": calc.name,
            "output": calc.output,
            "params": d.params,
            "mentions": d.mentions,
        },
    }


def _order(seed: int, ids: Sequence[str]) -> list[str]:
    order = list(ids)
    random.Random(f"{TASK}:{seed}:order").shuffle(order)
    return order


def iter_calculator_cases(n: int, seed: int, *, config: CalculatorConfig | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``n`` cases one at a time (the same cases as :func:`generate_calculators`)."""
    check_count(n, TASK)
    config = config or CalculatorConfig()
    order = _order(seed, config.calculators or calculator_ids())
    for index in range(n):
        calc = CALCULATORS[order[index % len(order)]]
        for attempt in range(_MAX_ATTEMPTS):
            record = _attempt(calc, index, seed, attempt, config)
            if record is not None:
                yield record
                break
        else:  # pragma: no cover - would mean a calculator spec cannot produce a valid case
            raise RuntimeError(f"calculator {calc.id} (case {index}, seed {seed}): no valid case in {_MAX_ATTEMPTS} attempts")


@register_task(
    TASK,
    description="Clinical calculators (MedCalc-Bench-style): a generated patient note in mixed units, one of 46 "
    "medcalc-bench calculators; answer = the value with its unit (scores exact, decimals ±5%).",
    preset="calculator",
)
def generate_calculators(n: int, seed: int, *, config: CalculatorConfig | None = None) -> list[dict[str, Any]]:
    """``n`` calculator cases for ``seed`` (deterministic; see the module docstring).

    >>> [case] = generate_calculators(1, seed=0, config=CalculatorConfig(calculators=("curb_65",)))
    >>> case["case"]["calculator"], case["reference"]["lower"] == case["reference"]["upper"]
    ('curb_65', True)
    """
    return list(iter_calculator_cases(n, seed, config=config))
