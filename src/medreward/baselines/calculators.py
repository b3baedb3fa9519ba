"""Baseline policies and metrics for the ``calculator`` task.

* ``correct_with_slips`` — **an oracle with slips** (it reads ``case["params"]``, the exact medcalc
  input, and recomputes the answer with ``medcalc-bench``), then makes the mistakes a careful but
  fallible clinician makes, at fixed documented rates (per case, one draw ``u ~ U(0, 1)``):

  - ``u < 0.15`` — a **unit slip** (:data:`UNIT_SLIP_RATE`): if the note states an input in a
    non-canonical unit (creatinine in µmol/L, BUN or glucose in mmol/L, weight in lb, height in in,
    temperature in °F, albumin or haemoglobin in g/L, PaO2 in kPa), one such number is used as if it
    were in the canonical unit, without converting (``input_unit``: 154 lb taken as 154 kg);
    otherwise, when the answer's unit has a confusable neighbour (kg/lb, mg/dL/mmol/L, L/mL,
    mL/hr/mL/min, mg/µg), the right number is reported with the wrong unit
    (``output_unit``: "70.2 lb" for 70.2 kg). A slip that would not change the value beyond the
    tolerance band is not made (the case is answered correctly);
  - ``0.15 <= u < 0.25`` — an **arithmetic slip** (:data:`ARITHMETIC_SLIP_RATE`): a rule-based score
    is off by one point (``off_by_one``, +1 or −1 with equal odds); a decimal value is rounded to
    the nearest integer (``rounding``), which costs the reward only when that leaves the ±5 % band
    (small values such as FIB-4 or FENa);
  - otherwise the medcalc answer, reported with its unit.

  Every unit slip scores 0 on a unit-aware ``numeric`` component; a unit-blind number match would
  pay the ``output_unit`` slips in full (this is what the tests assert).
* ``constant`` — always the calculator's population-typical value (``Calculator.typical``, e.g.
  BMI 25 kg/m², creatinine clearance 90 mL/min, CURB-65 1) with its unit: the floor a reward must
  separate from real computation. It reads only ``case["calculator"]``.

Metrics (registered in :mod:`medreward.baselines.evaluate` for ``calculator``): ``accuracy`` — the
share of answers the ``numeric`` component (unit-aware, the reference band) scores 1.0, computed
with the component's default parameters so it does not depend on the spec's weights or gates;
``answered`` — the share of records with an ``<answer>`` section.

>>> from medreward.tasks.calculators import generate_calculators
>>> import random
>>> [case] = generate_calculators(1, seed=0)
>>> completion = correct_with_slips_policy(case, random.Random(0))
>>> completion.startswith("<think>") and completion.endswith("</answer>")
True
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..parse.tags import extract_section
from ..records import Rollout, ScoredRecord
from ..tasks.calculators import CALCULATORS, TOLERANCE, Calculator, compute
from .base import register_policy
from .evaluate import MetricSet, accuracy, register_metric

__all__ = [
    "ARITHMETIC_SLIP_RATE",
    "UNIT_SLIP_RATE",
    "PlannedAnswer",
    "calculator_metrics",
    "constant_policy",
    "correct_with_slips_policy",
    "plan_answer",
]

log = logging.getLogger(__name__)

TASK = "calculator"
#: Probability of a unit slip (input read in the wrong unit, or the answer labelled with one).
UNIT_SLIP_RATE = 0.15
#: Probability of an arithmetic slip (off by one point on a score, rounding on a decimal).
ARITHMETIC_SLIP_RATE = 0.10

# parameters whose unit a hurried reader ignores -> the canonical medcalc unit they are taken in
_SLIPPABLE_KEYS = frozenset({
    "creatinine", "pre_operative_creatinine", "urine_creatinine", "bun", "glucose", "weight", "height",
    "temperature", "albumin", "hemoglobin", "partial_pressure_oxygen",
})  # fmt: skip
_CANONICAL = {
    "µmol/L": "mg/dL", "mmol/L": "mg/dL", "lbs": "kg", "g": "kg", "in": "cm", "m": "cm",
    "degrees fahrenheit": "degrees celsius", "g/L": "g/dL", "kPa": "mm Hg",
}  # fmt: skip
# answer units and the unit a slip writes instead (same number)
_CONFUSABLE = {"kg": "lb", "mg/dL": "mmol/L", "L": "mL", "mL/hr": "mL/min", "mg": "µg"}

Slip = Literal["input_unit", "output_unit", "off_by_one", "rounding"]


@dataclass(frozen=True)
class PlannedAnswer:
    """What ``correct_with_slips`` answers for one case, and which slip (if any) it made.

    ``value``/``unit`` are what the completion reports; ``correct`` is medcalc's answer;
    ``detail`` says what went wrong, in words (it is written into the reasoning).
    """

    value: float | int
    unit: str | None
    correct: float | int
    slip: Slip | None = None
    detail: str = ""


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _outside_band(value: float, correct: float, calc: Calculator) -> bool:
    if calc.exact:
        return value != correct
    return abs(value - correct) > TOLERANCE * abs(correct) + 1e-9


def _input_unit_slip(calc: Calculator, params: Mapping[str, Any], correct: float, rng: random.Random) -> PlannedAnswer | None:
    keys = sorted(
        k for k, v in params.items()
        if k in _SLIPPABLE_KEYS and isinstance(v, list) and len(v) == 2 and v[1] in _CANONICAL
    )  # fmt: skip
    rng.shuffle(keys)
    for key in keys:
        number, unit = params[key]
        slipped = dict(params)
        slipped[key] = [number, _CANONICAL[unit]]
        try:
            value = compute(calc.id, slipped)
        except Exception as exc:  # noqa: BLE001 - an impossible misreading (e.g. a division by zero): try another
            log.debug("unit slip on %s of %s is not computable: %r", key, calc.id, exc)
            continue
        if isinstance(value, (int, float)) and _outside_band(float(value), float(correct), calc):
            detail = f"I took {key.replace('_', ' ')} {_number(number)} as {_CANONICAL[unit]} (the note gives {unit})."
            return PlannedAnswer(value, calc.unit, correct, "input_unit", detail)
    return None


def plan_answer(case: Mapping[str, Any], rng: random.Random) -> PlannedAnswer:
    """The answer of ``correct_with_slips`` for a case (draws from ``rng`` in a fixed order).

    >>> from medreward.tasks.calculators import generate_calculators
    >>> [case] = generate_calculators(1, seed=4)
    >>> plan = plan_answer(case, random.Random(1))
    >>> plan.correct == case["reference"]["value"]
    True
    """
    structured = case["case"]
    calc = CALCULATORS[structured["calculator"]]
    params = structured["params"]
    correct = compute(calc.id, params)
    u = rng.random()
    if u < UNIT_SLIP_RATE:
        planned = _input_unit_slip(calc, params, correct, rng)
        if planned is not None:
            return planned
        wrong = _CONFUSABLE.get(calc.unit or "")
        if wrong is not None and correct != 0:
            return PlannedAnswer(correct, wrong, correct, "output_unit", f"I reported the result in {wrong}.")
    elif u < UNIT_SLIP_RATE + ARITHMETIC_SLIP_RATE:
        if calc.exact:
            step = rng.choice((-1, 1))
            return PlannedAnswer(correct + step, calc.unit, correct, "off_by_one", "I miscounted one criterion.")
        rounded = round(float(correct))
        if rounded != correct:
            return PlannedAnswer(rounded, calc.unit, correct, "rounding", "I rounded to a whole number.")
    return PlannedAnswer(correct, calc.unit, correct)


def _completion(calc: Calculator, mentions: Mapping[str, Any] | None, answer: float, unit: str | None, note: str) -> str:
    reasoning = f"Calculator: {calc.name}."
    if mentions is not None:
        inputs = "; ".join(dict.fromkeys(str(m) for m in mentions.values()))  # a BP pair is mentioned once
        reasoning += f" Inputs from the note: {inputs or 'none stated (all findings absent)'}."
    reasoning = f"{reasoning} {note}".strip()
    text = _number(answer) + (f" {unit}" if unit else "")
    return f"<think>{reasoning}</think>\n<answer>{text}</answer>"


@register_policy(TASK, "correct_with_slips", description="ORACLE WITH SLIPS: recomputes the answer with medcalc-bench "
                 "from case.params (not a model), then slips at fixed rates: 15% unit slips (an input read in the wrong "
                 "unit, or the answer labelled with a confusable unit), 10% off-by-one scores or whole-number rounding.")
def correct_with_slips_policy(case: dict[str, Any], rng: random.Random) -> str:
    plan = plan_answer(case, rng)
    calc = CALCULATORS[case["case"]["calculator"]]
    note = f"Result: {_number(plan.value)}{' ' + plan.unit if plan.unit else ''}. {plan.detail}".strip()
    return _completion(calc, case["case"].get("mentions") or {}, plan.value, plan.unit, note)


@register_policy(TASK, "constant", description="Always the calculator's population-typical value with its unit "
                 "(e.g. BMI 25 kg/m^2, CrCl 90 mL/min, CURB-65 1), ignoring the patient.")
def constant_policy(case: dict[str, Any], rng: random.Random) -> str:
    calc = CALCULATORS[case["case"]["calculator"]]
    return _completion(calc, None, calc.typical, calc.unit, "I assume a typical patient.")


# -- metrics --------------------------------------------------------------------------------
@register_metric(TASK)
def calculator_metrics(records: Sequence[ScoredRecord]) -> MetricSet:
    """``accuracy``: share of answers the unit-aware ``numeric`` component scores 1.0 (default
    parameters, ±5 % when the reference has no band); ``answered``: share with an ``<answer>``.

    The component is run afresh, so the metric is the same whichever spec scored the records.
    """
    from ..rewards.base import component_class

    numeric = component_class("numeric")(field="value", rel_tol=TOLERANCE)
    rollouts: list[Rollout] = []
    answered: list[bool] = []
    for r in records:
        reference = r.record.get("reference")
        if not isinstance(reference, Mapping) or "value" not in reference:
            continue
        try:
            rollout = Rollout.from_dict(r.record)
            text = rollout.completion_text
        except Exception:  # noqa: BLE001 - a broken record answers nothing; the scorer reports it
            answered.append(False)
            rollouts.append(Rollout(completion="", reference=dict(reference)))
            continue
        answered.append(extract_section(text, "answer") is not None)
        rollouts.append(rollout)
    scores = numeric.score_batch(rollouts) if rollouts else []
    return MetricSet({
        "accuracy": accuracy(s.value == 1.0 for s in scores),
        "answered": accuracy(answered),
    })  # fmt: skip
