r"""``numeric``: the answer's value lies in the reference's tolerance band, unit-aware."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field

from ..errors import RecordError
from ..parse.numbers import ParsedNumber, final_number, normalize_unit
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register

__all__ = ["Band", "NumericValue", "UnitError", "convert", "unit_registry"]

log = logging.getLogger(__name__)

# Units pint lacks. Equivalents and osmoles get dimensions of their own: mEq ↔ mmol needs the
# ion's valence and mOsm ↔ mmol the number of particles, so neither converts silently.
# IU = U: clinical usage treats them as one (enzyme activity, insulin).
_DEFINITIONS = (
    "equivalent = [equivalent] = Eq",
    "osmole = [osmole] = Osm = osmol",
    "international_unit = enzyme_unit = IU",
    "beat = count",
    "breath = count",
    "cell = count",
)
_registry_lock = threading.Lock()
_registry: Any = None


def unit_registry() -> Any:
    """The one shared :class:`pint.UnitRegistry` (created on first use, with medical units)."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                import pint  # lazy: the registry takes ~0.2 s to build

                reg = pint.UnitRegistry()
                for definition in _DEFINITIONS:
                    reg.define(definition)
                _registry = reg
    return _registry


class UnitError(ValueError):
    """A unit string pint cannot read."""


@lru_cache(maxsize=2048)
def _parsed_unit(unit: str) -> tuple[float, Any]:
    """(scale, pint Unit) of a unit expression such as ``"1e9 / L"`` (cached: pint is slow)."""
    reg = unit_registry()
    try:
        q = reg.parse_expression(unit)
    except Exception as exc:  # noqa: BLE001 - pint raises UndefinedUnitError, TokenError, AssertionError…
        raise UnitError(f"unknown unit {unit!r} ({type(exc).__name__}: {exc})") from None
    scale, units = (float(q), reg.dimensionless) if not isinstance(q, reg.Quantity) else (float(q.magnitude), q.units)
    if not math.isfinite(scale) or scale == 0:
        raise UnitError(f"unit {unit!r} has a scale of {scale}")
    return scale, units


@lru_cache(maxsize=4096)
def _affine(src: str, dst: str) -> tuple[float, float] | None:
    """``(a, b)`` with ``x [src] = a·x + b [dst]``, or ``None`` when the dimensions differ.

    Every conversion between the units used here is affine (offsets only for °C/°F), so two
    pint conversions per unit pair, cached, replace one per sample.
    """
    reg = unit_registry()
    s_scale, s_unit = _parsed_unit(src)
    d_scale, d_unit = _parsed_unit(dst)
    if reg.Quantity(1.0, s_unit).dimensionality != reg.Quantity(1.0, d_unit).dimensionality:
        return None

    def to(x: float) -> float:
        return float(reg.Quantity(x * s_scale, s_unit).to(d_unit).magnitude) / d_scale

    b = to(0.0)
    a = to(1.0) - b
    if not math.isclose(to(2.0), 2 * a + b, rel_tol=1e-9, abs_tol=1e-12):
        raise UnitError(f"conversion {src!r} → {dst!r} is not linear")
    return a, b


def _dimensionality(unit: str) -> str:
    reg = unit_registry()
    return str(reg.Quantity(1.0, _parsed_unit(unit)[1]).dimensionality)


def convert(
    value: float, src: str, dst: str, *, molar_mass: float | None = None, valence: float | None = None
) -> float | None:
    """``value`` in unit ``src`` expressed in unit ``dst`` (pint expressions), or ``None`` when
    the dimensions differ. Mass ↔ amount conversions use ``molar_mass`` (g/mol) and
    equivalents ↔ amount ``valence`` (Eq/mol), and only when they are given.

    >>> round(convert(150, "lb", "kg"), 3), round(convert(98.6, "degF", "degC"), 6)
    (68.039, 37.0)
    >>> convert(1.2, "mg / dL", "umol / L") is None
    True
    >>> round(convert(1.2, "mg / dL", "umol / L", molar_mass=113.12), 1)  # creatinine
    106.1
    """
    direct = _affine(src, dst)
    if direct is not None:
        a, b = direct
        return a * value + b
    bridges = []
    if molar_mass is not None:
        bridges.append((molar_mass, "g / mol"))
    if valence is not None:
        bridges.append((valence, "Eq / mol"))
    if not bridges:
        return None
    from pint.errors import OffsetUnitCalculusError

    reg = unit_registry()
    s_scale, s_unit = _parsed_unit(src)
    d_scale, d_unit = _parsed_unit(dst)
    target = reg.Quantity(1.0, d_unit).dimensionality
    for magnitude, unit in bridges:
        bridge = reg.Quantity(magnitude, unit)
        for power in (1, -1):
            try:
                q = reg.Quantity(value * s_scale, s_unit) * bridge**power
            except OffsetUnitCalculusError:  # °C cannot be multiplied
                continue
            if q.dimensionality == target:
                return float(q.to(d_unit).magnitude) / d_scale
    return None


@dataclass(frozen=True, slots=True)
class Band:
    """The accepted interval ``[lo, hi]`` (``[lo, hi)`` when ``hi_open``) around ``center``."""

    lo: float
    hi: float
    center: float
    hi_open: bool = False

    def contains(self, x: float) -> bool:
        # float noise from unit conversion (98.6 °F → 37.000000000000006 °C) must not fail an exact match
        eps = 1e-9 * max(1.0, abs(self.lo), abs(self.hi))
        if x < self.lo - eps:
            return False
        return x < self.hi if self.hi_open else x <= self.hi + eps

    def distance(self, x: float) -> tuple[float, float]:
        """(how far ``x`` lies outside the band, the half-width on that side)."""
        if x < self.lo:
            return self.lo - x, self.center - self.lo
        return max(0.0, x - self.hi), self.hi - self.center

    def to_list(self) -> list[float]:
        return [self.lo, self.hi]


def _number(raw: Any, where: str) -> float:
    """A reference number: an int/float or a numeric string; anything else is a data bug."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise RecordError(f"{where} must be a number, got {type(raw).__name__}")
    try:
        value = float(raw)
    except ValueError:
        raise RecordError(f"{where} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise RecordError(f"{where} must be finite, got {raw!r}")
    return value


def _is_integer(raw: Any) -> bool:
    """A reference stated as an integer (JSON ``3`` or ``"3"``, not ``3.0``): a rule-based score."""
    if isinstance(raw, bool):
        return False
    if isinstance(raw, int):
        return True
    if isinstance(raw, str):
        s = raw.strip().lstrip("+-")
        return s.isascii() and s.isdigit()
    return False


# units of a rule-based score: none, or "points"
_SCORE_UNITS = (None, "count")


@lru_cache(maxsize=1024)
def _reference_unit(raw: str) -> str:
    """A reference unit as a pint expression: through the parser's lexicon, else pint itself."""
    unit = normalize_unit(raw)
    if unit is None:
        unit = raw.strip()
    _parsed_unit(unit)  # raises UnitError if pint cannot read it either
    return unit


@register
class NumericValue(RewardComponent):
    r"""1 when the value in the answer lies in the reference's tolerance band, else 0.

    Formula (``scoring = "binary"``): :math:`R = \mathbb{1}[\,\text{lo} \le \hat{x} \le
    \text{hi}\,]` where :math:`\hat{x}` is the answer's value converted to the reference
    unit and the band is, in order of precedence:

    1. ``[lower, upper]`` from the reference (both keys, inclusive) — MedCalc-Bench gives
       these for decimal answers;
    2. for an **integer score** — an integer reference (JSON ``3`` or ``"3"``; ``3.0`` is not
       one) with no unit or the unit ``points`` — with ``integer_policy = "round"``
       (default): the answer rounded half-up must equal it, i.e. :math:`[v-0.5, v+0.5)`;
       ``"exact"``: :math:`\hat{x} = v`; ``"tolerance"``: rule 3;
    3. otherwise :math:`v \pm \max(\text{abs\_tol}, \text{rel\_tol}\cdot|v|)` (exact when
       neither is set).

    Source: MedCalc-Bench (Khandekar et al., NeurIPS 2024 Datasets & Benchmarks,
    arXiv:2406.12036), ``evaluation/evaluate.py::check_correctness``: integer-valued
    calculators (scores) count as correct when ``round(answer) == ground_truth``; decimal
    ones when ``lower_limit <= answer <= upper_limit``, the limits being the ground truth
    ±5 % (hence ``rel_tol = 0.05`` in the ``calculator`` preset). One difference: Python's
    ``round`` rounds .5 to even, this band rounds half up.

    ``scoring = "linear"`` (partial credit, medreward's choice): outside the band the score
    falls linearly from 1 at the band edge to 0 at ``decay`` times the band's half-width
    from the reference value, :math:`R = \max(0, 1 - d/((\text{decay}-1)\,w))` with
    :math:`d` the distance past the edge and :math:`w` the half-width on that side; a
    zero-width band stays binary.

    Reading the answer: the ``<answer>`` section (``answer_tag``; ``None`` reads the whole
    completion), and in it :func:`medreward.parse.numbers.final_number` (the last number
    introduced by ``=``/``is``/``:``…, else the last number).

    Rules:

    * **Units** (pint, one shared registry): the answer is converted to the reference unit,
      so 150 lb scores against 68 kg and 98.6 °F against 37 °C. Mass ↔ amount
      (mg/dL ↔ µmol/L) converts only when the reference gives ``molar_mass`` (g/mol), and
      mEq ↔ mmol only with ``valence``; a wrong dimension scores 0 with the reason in
      ``info``. A bare number is read in the reference unit unless ``require_unit``
      (then 0). A reference without a unit compares the bare value (the answer's unit is
      noted as ignored).
    * **Ranges** ("10-12", "between 10 and 12", "12 ± 2") are hedges: with
      ``range_policy = "inside"`` (default) they score 1 only when the whole range lies
      inside the band, else 0; ``"zero"``: always 0. No partial credit for ranges.
      **Inequalities** ("< 5", "at least 3") are not values: 0, and neither is a negated
      value ("not 49.2 mL/hr", :func:`medreward.parse.negation.negated_before`). An approximate value
      ("≈ 48") is scored like any other and flagged in ``info``.
    * A reference without the field is ``not_applicable``; a non-numeric value, only one of
      ``lower``/``upper``, ``lower > upper`` or an unreadable reference unit raise
      :class:`~medreward.errors.RecordError` (a data bug: the runner records ``error``).

    ``info``: ``reason``, ``parsed`` (value, unit, raw text, range/approximate/comparator),
    ``converted`` (the value — or ``[low, high]`` — in the reference unit), ``reference``,
    ``unit``, ``band``; ``assumed_unit`` when a bare number was read in the reference unit,
    ``unit_ignored`` when the reference has no unit to convert to.

    Params: ``field`` (``"value"``), ``unit_field`` (``"unit"``), ``lower_field``
    (``"lower"``), ``upper_field`` (``"upper"``), ``abs_tol``, ``rel_tol``, ``answer_tag``
    (``"answer"``), ``require_unit`` (false), ``range_policy`` (``"inside"``),
    ``integer_policy`` (``"round"``), ``scoring`` (``"binary"``), ``decay`` (2.0).

    >>> calc = NumericValue(rel_tol=0.05)
    >>> calc(["<answer>23 mL/min</answer>", "<answer>150 lb</answer>", "<answer>150 mg</answer>"],
    ...      [{"value": 23.4, "unit": "mL/min"}, {"value": 68.0, "unit": "kg"}, {"value": 68.0, "unit": "kg"}])
    [1.0, 1.0, 0.0]
    """

    kind = "numeric"

    class Params(ComponentParams):
        field: str = Field(default="value", min_length=1, description="Reference key of the value.")
        unit_field: str = Field(default="unit", min_length=1, description="Reference key of the unit.")
        lower_field: str = Field(default="lower", min_length=1)
        upper_field: str = Field(default="upper", min_length=1)
        abs_tol: float | None = Field(default=None, ge=0, allow_inf_nan=False)
        rel_tol: float | None = Field(default=None, ge=0, allow_inf_nan=False)
        answer_tag: str | None = "answer"
        require_unit: bool = False
        range_policy: Literal["inside", "zero"] = "inside"
        integer_policy: Literal["round", "exact", "tolerance"] = "round"
        scoring: Literal["binary", "linear"] = "binary"
        decay: float = Field(default=2.0, gt=1, allow_inf_nan=False, description="Linear scoring reaches 0 here.")

    params: Params

    def reference_keys(self) -> tuple[str, ...]:
        p = self.params
        return (p.field, p.unit_field, p.lower_field, p.upper_field)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        ref = rollout.reference
        raw = ref.get(p.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{p.field}'")
        value = _number(raw, f"reference.{p.field}")
        ref_unit = self._unit(ref)
        band = self._band(ref, raw, value, ref_unit)
        info: dict[str, Any] = {"reference": value, "unit": ref_unit, "band": band.to_list()}

        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return _zero(info, f"no <{p.answer_tag}> section")
        num = final_number(answer, skip_negated=True)  # "49.2 mL/hr, not 40" states 49.2
        if num is None:
            negated = final_number(answer)
            if negated is None:
                return _zero(info, "no number in the answer")
            info["parsed"] = _describe(negated)
            return _zero(info, f"the value is negated ({negated.raw!r} follows a negation)")
        info["parsed"] = _describe(num)
        if num.comparator is not None:
            return _zero(info, f"an inequality ({num.comparator} {num.value:g}) is not a value")

        # bring the answer into the reference unit
        if ref_unit is None:
            low, mid, high = num.low, num.value, num.high
            if num.unit is not None:
                info["unit_ignored"] = True  # nothing to convert to
        elif num.unit is None:
            if p.require_unit:
                return _zero(info, f"missing unit (expected {ref.get(p.unit_field)!r})")
            low, mid, high = num.low, num.value, num.high
            info["assumed_unit"] = True
        else:
            molar_mass = _optional_number(ref, "molar_mass")
            valence = _optional_number(ref, "valence")
            try:
                converted = [
                    convert(x, num.unit, ref_unit, molar_mass=molar_mass, valence=valence)
                    for x in (num.low, num.value, num.high)
                ]
            except UnitError as exc:  # a parser unit pint cannot read: a bug in our lexicon
                log.warning("numeric: %s", exc)
                return _zero(info, f"unreadable unit {num.unit!r}")
            c_low, c_mid, c_high = converted
            if c_low is None or c_mid is None or c_high is None:
                return _zero(
                    info,
                    f"wrong dimension: answer unit {num.unit!r} is {_dimensionality(num.unit)}, "
                    f"reference unit {ref_unit!r} is {_dimensionality(ref_unit)}",
                )
            low, mid, high = min(c_low, c_high), c_mid, max(c_low, c_high)
        if not all(math.isfinite(x) for x in (low, mid, high)):
            return _zero(info, "the value is not finite")

        if num.is_range:
            info["converted"] = [low, high]
            if p.range_policy == "zero":
                return _zero(info, "a range is a hedge")
            if band.contains(low) and band.contains(high):
                return ComponentScore(1.0, info={**info, "reason": "range inside the band"})
            return _zero(info, "range not inside the band (hedge)")
        info["converted"] = mid
        if band.contains(mid):
            return ComponentScore(1.0, info={**info, "reason": "within the band"})
        if p.scoring == "linear":
            distance, width = band.distance(mid)
            if width > 0:
                score = max(0.0, 1.0 - distance / ((p.decay - 1.0) * width))
                return ComponentScore(score, info={**info, "reason": "outside the band (linear partial credit)"})
        return _zero(info, "outside the band")

    def _band(self, ref: dict[str, Any], raw: Any, value: float, unit: str | None) -> Band:
        p = self.params
        lower, upper = ref.get(p.lower_field), ref.get(p.upper_field)
        if lower is not None or upper is not None:
            if lower is None or upper is None:
                raise RecordError(
                    f"reference has only one of '{p.lower_field}'/'{p.upper_field}'; give both or neither"
                )
            lo = _number(lower, f"reference.{p.lower_field}")
            hi = _number(upper, f"reference.{p.upper_field}")
            if lo > hi:
                raise RecordError(f"reference.{p.lower_field} ({lo}) is above reference.{p.upper_field} ({hi})")
            return Band(lo, hi, min(max(value, lo), hi))
        if p.integer_policy != "tolerance" and _is_integer(raw) and unit in _SCORE_UNITS:
            if p.integer_policy == "round":
                return Band(value - 0.5, value + 0.5, value, hi_open=True)
            return Band(value, value, value)
        tol = max(p.abs_tol or 0.0, (p.rel_tol or 0.0) * abs(value))
        return Band(value - tol, value + tol, value)

    def _unit(self, ref: dict[str, Any]) -> str | None:
        raw = ref.get(self.params.unit_field)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if not isinstance(raw, str):
            raise RecordError(f"reference.{self.params.unit_field} must be a string, got {type(raw).__name__}")
        try:
            return _reference_unit(raw)
        except UnitError as exc:
            raise RecordError(f"reference.{self.params.unit_field}: {exc}") from None


def _optional_number(ref: dict[str, Any], key: str) -> float | None:
    raw = ref.get(key)
    if raw is None:
        return None
    value = _number(raw, f"reference.{key}")
    if value <= 0:
        raise RecordError(f"reference.{key} must be positive, got {raw!r}")
    return value


def _describe(num: ParsedNumber) -> dict[str, Any]:
    out: dict[str, Any] = {"value": num.value, "unit": num.unit, "raw": num.raw[:200]}
    if num.is_range:
        out.update(is_range=True, low=num.low, high=num.high)
    if num.approximate:
        out["approximate"] = True
    if num.comparator:
        out["comparator"] = num.comparator
    return out


def _zero(info: dict[str, Any], reason: str) -> ComponentScore:
    return ComponentScore(0.0, info={**info, "reason": reason})
