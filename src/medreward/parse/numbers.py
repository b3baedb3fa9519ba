r"""Numbers with units from model output: ``"12.5 mg/dL"``, ``"≈ 3.2e-1"``, ``"10-12 mg"``.

:func:`parse_numbers` lists every number mention of a text; :func:`final_number` picks the
one that is the answer; :func:`normalize_unit` reads a unit string on its own (for the
units of references).

What is read
------------
* **Values**: ``-4``, ``+4``, ``−4`` (U+2212), ``.5``, ``1,234`` and ``1,234,567.8`` (a comma
  followed by exactly three digits is a thousands separator; ``12,5`` is two numbers, a
  decimal comma is not supported), ``3.2e-1``, and ``3.2 × 10^-1`` / ``3.2x10⁻¹`` /
  ``3.2*10**-1`` (folded into the value when no unit follows).
* **Units** right after the number (at most two spaces between): a lexicon of clinical
  units normalised to strings that :mod:`pint` parses — ``mg/dL`` → ``"mg / dL"``,
  ``mL/min/1.73m²`` → ``"mL / min / (1.73 * m ** 2)"``, ``37.2 °C`` → ``"degC"``,
  ``0.5%`` → ``"percent"``, ``98 mmHg``/``mm Hg`` → ``"mmHg"``, ``72 bpm`` →
  ``"(beat / min)"``, ``18/min`` → ``"1 / min"``. Prefixed forms are generated (``µg``,
  ``ug``, ``mcg``, ``mmol``, ``µmol/L``, ``mEq``, ``mIU``…); compounds join terms with
  ``/``, ``per``, ``·`` or ``*``; exponents are ``²``, ``^2``, ``**2`` or a trailing
  digit on a length (``m2``). A power of ten before a unit is part of the unit:
  ``12.5 ×10^9/L`` is 12.5 of ``"1e9 / L"`` (labs report counts in that unit).
  Spellings that are common words or element symbols are not units: ``in``, ``K``
  (potassium, not kelvin), mixed-case ``Mg``/``Cl``. Matching is case-sensitive, with an
  all-lower or all-upper fallback (``MG/DL``) for units that are not ambiguous
  (``m``/``M``, ``mm``/``mM`` and ``s`` are exact-case only). Unknown words are never
  units: ``unit`` is ``None`` rather than a guess.
* **Ranges**: ``10-12 mg``, ``10–12``, ``10 to 12``, ``between 10 and 12``, ``10~12``,
  ``12 ± 2`` / ``12 +/- 2`` give one mention with ``is_range=True``, ``low``/``high``
  set and ``value`` the midpoint (the centre for ``±``). A hyphen makes a range only
  when ``low <= high`` and the pair is not part of a chain (``2023-01-05``,
  ``140-104-24``) or an equation (``10-12 = -2``).
* **Hedges**: ``~``, ``≈``, ``about``, ``approximately``, ``approx.``, ``around``,
  ``roughly``, ``circa``, ``nearly``… set ``approximate``; ``<``, ``≥``, ``less than``,
  ``at least``… set ``comparator``.
* **Not numbers**: digits inside words or names (``HbA1c``, ``E11.9``, ``CURB-65``,
  ``COVID-19``), ordinals and other digit-letter tokens (``2nd``, ``5x``), dotted ids
  (``1.2.3``) and tokens over 48 characters.

Bounds
------
Linear time: candidates are found by one :mod:`re2` scan (linear in the text); everything
else looks at slices of at most 48 characters around a candidate with ``str`` methods.
No Python ``re`` is used. At most ``max_numbers`` mentions are returned and at most
``max_candidates`` candidate tokens examined; :func:`final_number` reads only the last
``FINAL_WINDOW`` characters.

>>> [(n.value, n.unit) for n in parse_numbers("Cr 1.2 mg/dL, eGFR of 58 mL/min/1.73m²")]
[(1.2, 'mg / dL'), (58.0, 'mL / min / (1.73 * m ** 2)')]
>>> n = parse_numbers("about 10-12 mg")[0]
>>> n.is_range, n.low, n.high, n.unit, n.approximate
(True, 10.0, 12.0, 'mg', True)
>>> final_number("CrCl = (140 - 70) × 80 / (72 × 1.1) = 70.7 mL/min").value
70.7
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import re2

from .negation import negated_before

__all__ = [
    "ANSWER_CUES",
    "FINAL_WINDOW",
    "MAX_CANDIDATES",
    "MAX_NUMBERS",
    "ParsedNumber",
    "final_number",
    "normalize_unit",
    "parse_numbers",
    "unit_lexicon",
]

MAX_NUMBERS = 256
MAX_CANDIDATES = 4096
FINAL_WINDOW = 2048  # characters at the end of the text that final_number reads
_MAX_TOKEN = 48  # longer digit runs are not plausible answers (and would become inf)
_LOOK = 48  # characters of context examined around a candidate
_MAX_TERMS = 6  # unit terms in one compound unit

#: cues that introduce an answer value (see :func:`final_number`)
ANSWER_CUES = frozenset({"=", ":", "≈", "is", "was", "are", "were", "be", "equals"})

# One linear-time scan finds candidate numbers; context is checked in Python on small slices.
_TOKEN = re2.compile(
    r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+\x{2212}]?\d{1,3})?|\.\d+(?:[eE][-+\x{2212}]?\d{1,3})?"
)

_SPACES = " \t\u00a0\u2009\u202f"
_SIGNS = "-+\u2212"
_APPROX_SYMBOLS = "~≈∼≃≅"
_APPROX_WORDS = frozenset(
    {"about", "approximately", "approx", "around", "roughly", "circa", "ca", "nearly", "almost", "estimated", "est"}
)
_DOTTED_APPROX = frozenset({"ca", "est"})  # only with their dot: "Ca 9.1" is calcium
_COMPARATOR_SYMBOLS = {"<": "<", ">": ">", "≤": "<=", "≥": ">=", "⩽": "<=", "⩾": ">="}
_COMPARATOR_PAIRS = {"<=": "<=", ">=": ">=", "=<": "<=", "=>": ">="}
_COMPARATOR_WORDS = {
    ("less", "than"): "<",
    ("fewer", "than"): "<",
    ("greater", "than"): ">",
    ("more", "than"): ">",
    ("at", "least"): ">=",
    ("at", "most"): "<=",
}
_CUE_WORDS = frozenset({"is", "was", "are", "were", "be", "equals", "between", "from"})
_RANGE_WORDS = frozenset({"to", "–", "—", "~", "〜", "through"})
_PLUS_MINUS = frozenset({"±", "+/-", "+-", "+ / -", "+ -", "+/−"})
_SUPERSCRIPTS = {"⁰": "0", "¹": "1", "²": "2", "³": "3", "⁴": "4", "⁵": "5", "⁶": "6", "⁷": "7", "⁸": "8", "⁹": "9"}
_SUPER_MINUS = "⁻"
_TIMES = "×xX*·⋅"
_DEGREE = "°º˚"
_MICRO = "µμu"


@dataclass(frozen=True, slots=True)
class ParsedNumber:
    """One number mention.

    ``value``: the number (for a range, the midpoint; for ``a ± b``, ``a``). ``unit``: the
    unit normalised to a :mod:`pint` expression string, or ``None``. ``is_range``,
    ``low``, ``high``: the interval stated (``low == high == value`` for a plain number).
    ``approximate``: hedged with ``~``/``about``…; ``comparator``: ``"<"``, ``"<="``,
    ``">"`` or ``">="`` when stated as a bound. ``cue``: the word or sign just before the
    number (``"="``, ``":"``, ``"is"``, ``"/"``, ``"out of"``, ``"between"``…) or ``None``.
    ``span``: ``(start, end)`` in the text, sign, range and unit included; ``raw`` is that
    text.
    """

    value: float
    unit: str | None
    is_range: bool
    low: float
    high: float
    approximate: bool
    comparator: str | None
    cue: str | None
    span: tuple[int, int]
    raw: str


@dataclass(frozen=True, slots=True)
class _Token:
    magnitude: float  # unsigned value (a hyphen before it may be a range connector)
    value: float  # signed value
    signed: bool  # a sign char belongs to the number
    unit: str | None
    start: int  # first digit
    sign_start: int  # sign, or first digit
    end: int  # past the number and its unit
    approximate: bool
    comparator: str | None
    cue: str | None


# --------------------------------------------------------------------------------------------
# unit lexicon
# --------------------------------------------------------------------------------------------


def _build_lexicon() -> tuple[dict[str, str], dict[str, str], frozenset[str]]:
    """(exact-case map, case-folded map, length units) from spelling to a pint expression."""
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}

    def add(spelling: str, pint_name: str, *, fold: bool = True) -> None:
        exact[spelling] = pint_name
        if fold and len(spelling) >= 2:
            folded.setdefault(spelling.lower(), pint_name)

    micro = ("µ", "μ", "u")
    # prefixed symbol families: (base spellings, pint base, prefixes)
    families = [
        (("g",), "g", ("", "k", "m", "n", "p") + micro),
        (("L", "l"), "L", ("", "d", "m", "n", "f") + micro),
        (("mol",), "mol", ("", "m", "n", "p", "f") + micro),
        (("Eq", "eq"), "Eq", ("", "m") + micro),
        (("Osm", "osm", "osmol"), "Osm", ("", "m")),
        (("IU",), "IU", ("", "k", "m") + micro),
        (("U",), "U", ("", "k", "m") + micro),
    ]
    for spellings, base, prefixes in families:
        for spelling in spellings:
            for prefix in prefixes:
                pint_prefix = "u" if prefix in micro else prefix
                add(prefix + spelling, pint_prefix + base, fold=bool(prefix) or len(spelling) > 1)
    add("mcg", "ug")
    add("mcL", "uL")
    add("cc", "cc")
    # case matters: m (metre) / M (molar), mm / mM, s / S
    for prefix in ("", "c", "m", "k", "n") + micro:
        pint_prefix = "u" if prefix in micro else prefix
        add(prefix + "m", pint_prefix + "m", fold=False)
    for prefix in ("", "m", "n", "p") + micro:
        pint_prefix = "u" if prefix in micro else prefix
        add(prefix + "M", pint_prefix + "M", fold=False)
    for spelling, name in (("s", "s"), ("ms", "ms"), ("h", "h"), ("d", "day")):
        add(spelling, name, fold=False)
    words = {
        "gram": "g", "grams": "g", "milligram": "mg", "milligrams": "mg", "microgram": "ug",
        "micrograms": "ug", "kilogram": "kg", "kilograms": "kg", "kgs": "kg", "kilo": "kg", "kilos": "kg",
        "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb", "oz": "oz", "ounce": "oz", "ounces": "oz",
        "liter": "L", "liters": "L", "litre": "L", "litres": "L", "milliliter": "mL", "milliliters": "mL",
        "millilitre": "mL", "millilitres": "mL", "deciliter": "dL", "deciliters": "dL", "decilitre": "dL",
        "mole": "mol", "moles": "mol", "millimole": "mmol", "millimoles": "mmol", "micromole": "umol",
        "micromoles": "umol", "meter": "m", "meters": "m", "metre": "m", "metres": "m",
        "centimeter": "cm", "centimeters": "cm", "centimetre": "cm", "centimetres": "cm",
        "millimeter": "mm", "millimeters": "mm", "inch": "inch", "inches": "inch", "ft": "ft", "foot": "ft",
        "feet": "ft", "sec": "s", "secs": "s", "second": "s", "seconds": "s", "msec": "ms", "msecs": "ms",
        "millisecond": "ms", "milliseconds": "ms", "min": "min", "mins": "min", "minute": "min",
        "minutes": "min", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "day": "day", "days": "day",
        "wk": "week", "wks": "week", "week": "week", "weeks": "week", "mo": "month", "mos": "month",
        "month": "month", "months": "month", "yr": "year", "yrs": "year", "year": "year", "years": "year",
        "kcal": "kcal", "percent": "percent", "pct": "percent", "bpm": "(beat / min)", "beat": "beat",
        "beats": "beat", "breath": "breath", "breaths": "breath", "cell": "cell", "cells": "cell",
        "point": "count", "points": "count", "unit": "IU", "units": "IU", "mmHg": "mmHg", "cmH2O": "cmH2O",
        "mmH2O": "mmH2O",
    }  # fmt: skip
    for spelling, name in words.items():
        add(spelling, name)
    lengths = frozenset(k for k, v in exact.items() if v in {"m", "cm", "mm", "km", "um", "nm", "inch", "ft"})
    return exact, folded, lengths


_EXACT, _FOLDED, _LENGTHS = _build_lexicon()
_TEMPERATURE_WORDS = {"celsius": "degC", "centigrade": "degC", "fahrenheit": "degF"}


def unit_lexicon() -> dict[str, str]:
    """Every unit spelling the parser knows (exact case) and its pint expression.

    >>> unit_lexicon()["mcg"], unit_lexicon()["mEq"], unit_lexicon()["bpm"]
    ('ug', 'mEq', '(beat / min)')
    """
    return dict(_EXACT)


def _lookup(word: str) -> str | None:
    name = _EXACT.get(word)
    if name is None and (word.islower() or word.isupper()):
        name = _FOLDED.get(word.lower())
    return name


# --------------------------------------------------------------------------------------------
# small scanners over bounded slices
# --------------------------------------------------------------------------------------------


def _is_digit(c: str) -> bool:
    return len(c) == 1 and "0" <= c <= "9"  # str.isdigit also accepts superscripts


def _skip(text: str, i: int, limit: int, chars: str = _SPACES) -> int:
    while i < limit and text[i] in chars:
        i += 1
    return i


def _word_at(text: str, i: int, limit: int) -> int:
    """End of the unit word starting at ``i`` (letters/µ then letters or digits), or ``i``."""
    if i >= limit or not (text[i].isascii() and text[i].isalpha() or text[i] in "µμ"):
        return i
    j = i + 1
    while j < limit and (text[j].isascii() and text[j].isalnum() or text[j] in "µμ"):
        j += 1
    return j


def _read_int_exponent(text: str, i: int, limit: int) -> tuple[int | None, int]:
    """An exponent ``^-1`` / ``**2`` / ``⁻¹`` / ``²`` at ``i``: (value, end) or (None, i)."""
    j = i
    if text.startswith("**", j):
        j += 2
    elif j < limit and text[j] == "^":
        j += 1
    if j > i:  # explicit operator: ASCII digits (optionally braced) or superscripts
        j2 = j + 1 if j < limit and text[j] == "{" else j
        k = j2 + 1 if j2 < limit and text[j2] in _SIGNS else j2
        d = k
        while d < limit and d - k < 3 and _is_digit(text[d]):
            d += 1
        if d > k:
            sign = -1 if text[j2] in "-\u2212" else 1
            end = d + 1 if j2 > j and d < limit and text[d] == "}" else d
            return sign * int(text[k:d]), end
    k = j + 1 if j < limit and text[j] == _SUPER_MINUS else j
    d = k
    while d < limit and d - k < 3 and text[d] in _SUPERSCRIPTS:
        d += 1
    if d > k:
        digits = "".join(_SUPERSCRIPTS[c] for c in text[k:d])
        return (-1 if k > j else 1) * int(digits), d
    return None, i


def _read_scale(text: str, i: int, limit: int) -> tuple[int | None, int]:
    """``× 10^9`` / ``x10⁹`` / ``*10**9`` at ``i`` (after at most one space): (power, end)."""
    j = _skip(text, i, min(limit, i + 1))
    if j >= limit or text[j] not in _TIMES:
        return None, i
    j = _skip(text, j + 1, min(limit, j + 2))
    if not text.startswith("10", j) or (j + 2 < limit and _is_digit(text[j + 2])):
        return None, i
    power, end = _read_int_exponent(text, j + 2, limit)
    if power is None or abs(power) > 30:
        return None, i
    return power, end


def _read_term(text: str, i: int, limit: int, *, denominator: bool) -> tuple[str | None, int, bool]:
    """One unit term at ``i``: (pint expression, end, is_temperature) or (None, i, False)."""
    if i >= limit:
        return None, i, False
    c = text[i]
    if c == "%":
        return "percent", i + 1, False
    if c in "℃℉":
        return ("degC" if c == "℃" else "degF"), i + 1, True
    if c in _DEGREE:  # °C, ° F; a bare ° says nothing about the scale
        j = _skip(text, i + 1, min(limit, i + 2))
        if j < limit and text[j] in "CcFf" and _word_at(text, j, limit) == j + 1:
            return ("degC" if text[j] in "Cc" else "degF"), j + 1, True
        return None, i, False
    if denominator and _is_digit(c):  # body-surface-area normalisation: /1.73 m²
        j = i
        while j < limit and j - i < 6 and (_is_digit(text[j]) or text[j] == "."):
            j += 1
        literal = text[i:j]
        k = _skip(text, j, min(limit, j + 1))
        if k < limit and text[k] == "m" and literal.count(".") <= 1 and not literal.endswith("."):
            power, end = _read_int_exponent(text, k + 1, limit)
            if power is None and k + 1 < limit and text[k + 1] == "2":
                power, end = 2, k + 2
            if power == 2 and _word_at(text, end, limit) == end:
                return f"({literal} * m ** 2)", end, False
        return None, i, False
    end = _word_at(text, i, limit)
    if end == i:
        return None, i, False
    word = text[i:end]
    lowered = word.lower()
    if lowered in _TEMPERATURE_WORDS:
        return _TEMPERATURE_WORDS[lowered], end, True
    if lowered in ("deg", "degree", "degrees") or word == "degC" or word == "degF":
        if word in ("degC", "degF"):
            return word, end, True
        j = _skip(text, end, min(limit, end + 1))
        k = _word_at(text, j, limit)
        scale = text[j:k].lower()
        if scale in ("c", "celsius", "centigrade"):
            return "degC", k, True
        if scale in ("f", "fahrenheit"):
            return "degF", k, True
        return None, i, False
    name = _lookup(word)
    if name is None and word[-1] in "23" and word[:-1] in _LENGTHS:  # m2, cm2, mm3
        return f"{_EXACT[word[:-1]]} ** {word[-1]}", end, False
    if name is None:
        return None, i, False
    if name in ("mm", "cm"):  # "mm Hg", "cm H2O"
        j = _skip(text, end, min(limit, end + 1))
        k = _word_at(text, j, limit)
        tail = text[j:k]
        if tail in ("Hg", "hg", "HG"):
            return "mmHg" if name == "mm" else "cmHg", k, False
        if tail in ("H2O", "h2o"):
            return f"{name}H2O", k, False
    power, pend = _read_int_exponent(text, end, limit)
    if power is not None and power != 0:
        return f"{name} ** {power}", pend, False
    return name, end, False


def _read_unit(text: str, i: int) -> tuple[str | None, int]:
    """A (compound) unit starting at ``i`` after at most two spaces: (pint expression, end)."""
    limit = min(len(text), i + _LOOK)
    j = _skip(text, i, min(limit, i + 2))
    parts: list[str] = []
    lead_per = False
    if j < limit and text[j] == "/":  # "18/min": per minute
        k = _skip(text, j + 1, min(limit, j + 2))
        if k < limit and not _is_digit(text[k]):
            lead_per, j = True, k
    elif text.startswith("per ", j):
        lead_per, j = True, j + 4
    term, end, temperature = _read_term(text, j, limit, denominator=False)
    if term is None:
        return None, i
    if temperature:
        return (None, i) if lead_per else (term, end)
    parts.append(f"1 / {term}" if lead_per else term)
    for _ in range(_MAX_TERMS - 1):
        k = _skip(text, end, min(limit, end + 1))
        if k < limit and text[k] == "/":
            op, k = "/", _skip(text, k + 1, min(limit, k + 2))
        elif text.startswith("per ", k) and k > end:
            op, k = "/", k + 4
        elif k < limit and text[k] in "·⋅*" and not text.startswith("**", k):
            op, k = "*", _skip(text, k + 1, min(limit, k + 2))
        else:
            break
        nxt, nend, temp = _read_term(text, k, limit, denominator=op == "/")
        if nxt is None or temp:
            break
        parts.append(f"{op} {nxt}")
        end = nend
    return " ".join(parts), end


def normalize_unit(text: str) -> str | None:
    """The pint expression of a whole unit string, or ``None`` if it is not a known unit.

    Used for the units of references, so that both sides go through one lexicon.

    >>> normalize_unit("mL/min/1.73 m²"), normalize_unit("°F"), normalize_unit("points")
    ('mL / min / (1.73 * m ** 2)', 'degF', 'count')
    >>> normalize_unit("x10^9/L"), normalize_unit("furlongs") is None
    ('1e9 / L', True)
    """
    if not isinstance(text, str):
        return None
    s = text.strip()
    if not s or len(s) > _LOOK:
        return None
    return _unit_string(s)


@lru_cache(maxsize=1024)
def _unit_string(s: str) -> str | None:
    power, j = None, 0
    if s[0] in _TIMES:  # "x10^9/L"
        power, j = _read_scale(s, 0, len(s))
    elif s.startswith("10"):  # "10^9/L"
        power, j = _read_int_exponent(s, 2, len(s))
        if power is None:
            j = 0
    unit, end = _read_unit(s, j)
    if unit is None or _skip(s, end, len(s)) != len(s):
        return None
    return _scaled(unit, power) if power is not None else unit


def _scaled(unit: str, power: int) -> str:
    if unit.startswith("1 / "):
        return f"1e{power}{unit[1:]}"
    return f"1e{power} * {unit}"


# --------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------


def _trailing_word(window: str, k: int) -> tuple[str, int]:
    """The word that ends at ``window[k-1]`` (letters only) and its start."""
    j = k
    while j > 0 and window[j - 1].isalpha():
        j -= 1
    return window[j:k], j


def _context(text: str, p: int) -> tuple[bool, str | None, str | None]:
    """(approximate, comparator, cue) from the text just before position ``p``."""
    base = max(0, p - _LOOK)
    w = text[base:p]
    approximate = approx_symbol = False
    comparator: str | None = None
    k = len(w)
    for _ in range(4):
        while k > 0 and w[k - 1] in _SPACES:
            k -= 1
        if k == 0:
            break
        c = w[k - 1]
        if c in _APPROX_SYMBOLS:
            approximate = approx_symbol = True
            k -= 1
            continue
        if w[max(0, k - 2) : k] in _COMPARATOR_PAIRS and comparator is None:
            comparator = _COMPARATOR_PAIRS[w[k - 2 : k]]
            k -= 2
            continue
        if c in _COMPARATOR_SYMBOLS and comparator is None:
            comparator = _COMPARATOR_SYMBOLS[c]
            k -= 1
            continue
        dot = 1 if c == "." else 0  # "approx." / "ca."
        word, start = _trailing_word(w, k - dot)
        lowered = word.lower()
        if lowered in _APPROX_WORDS and (dot or lowered not in _DOTTED_APPROX):
            approximate = True
            k = start
            continue
        if not dot and comparator is None and lowered in ("than", "least", "most"):
            m = start
            while m > 0 and w[m - 1] in _SPACES:
                m -= 1
            prev, pstart = _trailing_word(w, m)
            found = _COMPARATOR_WORDS.get((prev.lower(), lowered))
            if found:
                comparator = found
                k = pstart
                continue
        break
    while k > 0 and w[k - 1] in _SPACES:
        k -= 1
    cue: str | None = None
    if k > 0:
        c = w[k - 1]
        if c in "=:/":
            cue = c
        else:
            word, start = _trailing_word(w, k)
            lowered = word.lower()
            if lowered in _CUE_WORDS:
                cue = lowered
            elif lowered == "of":
                m = start
                while m > 0 and w[m - 1] in _SPACES:
                    m -= 1
                if _trailing_word(w, m)[0].lower() == "out":
                    cue = "out of"
    if cue is None and approx_symbol:
        cue = "≈"
    return approximate, comparator, cue


def _token(text: str, s: int, e: int) -> _Token | None:
    """Check one regex candidate in its context; ``None`` when it is not a number mention."""
    if e - s > _MAX_TOKEN:
        return None
    n = len(text)
    prev = text[s - 1] if s > 0 else ""
    if prev and (prev.isalnum() or prev in "_."):
        return None  # inside a word or an id: HbA1c, E11.9, v1.2
    sign_start, signed, negative = s, False, False
    if prev and prev in _SIGNS:
        before = text[s - 2] if s >= 2 else ""
        if before and (before.isalpha() or before == "_"):
            return None  # a hyphenated name: CURB-65, COVID-19
        if not before or not (_is_digit(before) or before in ")]}%²³"):  # else it is an operator or a range dash
            signed, negative, sign_start = True, prev != "+", s - 1
    nxt = text[e] if e < n else ""
    if _is_digit(nxt) or (nxt == "." and e + 1 < n and _is_digit(text[e + 1])):
        return None  # bad grouping (1,2345) or a dotted id (1.2.3)
    try:
        magnitude = float(text[s:e].replace(",", "").replace("\u2212", "-"))
    except ValueError:  # pragma: no cover - the pattern only admits float syntax
        return None
    limit = min(n, e + _LOOK)
    power, after_scale = _read_scale(text, e, limit)
    unit, end = _read_unit(text, after_scale)
    if unit is None:
        if power is not None:
            magnitude *= 10.0**power
            end = after_scale
        else:
            end = e
            if nxt.isalpha():
                return None  # 2nd, 5x, 12abc: a word, not a quantity
    elif power is not None:
        unit = _scaled(unit, power)
    if not math.isfinite(magnitude):
        return None
    approximate, comparator, cue = _context(text, sign_start)
    value = -magnitude if negative else magnitude
    return _Token(magnitude, value, signed, unit, s, sign_start, end, approximate, comparator, cue)


def _single(text: str, t: _Token) -> ParsedNumber:
    return ParsedNumber(
        t.value, t.unit, False, t.value, t.value, t.approximate, t.comparator, t.cue,
        (t.sign_start, t.end), text[t.sign_start : t.end],
    )  # fmt: skip


def _range(text: str, a: _Token, b: _Token) -> ParsedNumber | None:
    """``a`` and ``b`` as one range mention, or ``None`` when they are two numbers."""
    if b.sign_start - a.end > 16 or a.comparator or b.comparator:
        return None
    if a.unit and b.unit and a.unit != b.unit:
        return None
    unit = b.unit or a.unit
    with_sign = text[a.end : b.start].strip(_SPACES).lower()  # b's sign char included
    without_sign = text[a.end : b.sign_start].strip(_SPACES).lower()
    value = None
    if with_sign in _PLUS_MINUS:
        low, high, value = a.value - b.magnitude, a.value + b.magnitude, a.value
    elif without_sign in _RANGE_WORDS or (without_sign == "and" and a.cue == "between"):
        low, high = sorted((a.value, b.value))
    elif with_sign in ("-", "\u2212") and a.value <= b.magnitude:
        # a hyphen is a range unless the pair is part of a chain or an equation
        if a.sign_start >= 2 and text[a.sign_start - 1] in "-/" and _is_digit(text[a.sign_start - 2]):
            return None
        after = _skip(text, b.end, min(len(text), b.end + 3))
        if after < len(text) and text[after] in "=+-*/×\u2212":
            return None
        low, high = a.value, b.magnitude
    else:
        return None
    if value is None:
        value = (low + high) / 2.0
    # in "10~12" the tilde is the connector, not a hedge on 12
    approximate = a.approximate or (b.approximate and without_sign not in ("~", "〜"))
    return ParsedNumber(
        value, unit, True, low, high, approximate, None, a.cue,
        (a.sign_start, b.end), text[a.sign_start : b.end],
    )  # fmt: skip


def _scan(text: str, start: int, max_numbers: int, max_candidates: int) -> list[ParsedNumber]:
    tokens: list[_Token] = []
    for count, m in enumerate(_TOKEN.finditer(text, start)):
        if count >= max_candidates or len(tokens) > 2 * max_numbers:
            break
        s, e = m.span()
        if tokens and s < tokens[-1].end:  # inside the previous mention's unit (1.73 of /1.73m²)
            continue
        tok = _token(text, s, e)
        if tok is not None:
            tokens.append(tok)
    out: list[ParsedNumber] = []
    i = 0
    while i < len(tokens) and len(out) < max_numbers:
        if i + 1 < len(tokens):
            merged = _range(text, tokens[i], tokens[i + 1])
            if merged is not None:
                out.append(merged)
                i += 2
                continue
        out.append(_single(text, tokens[i]))
        i += 1
    return out


def parse_numbers(
    text: str, *, max_numbers: int = MAX_NUMBERS, max_candidates: int = MAX_CANDIDATES
) -> list[ParsedNumber]:
    """Every number mention of ``text`` in order (at most ``max_numbers``; see the module doc).

    >>> [(n.value, n.unit) for n in parse_numbers("Na 1,234 mmol/L; T 98.6 °F; WBC 12.5 ×10^9/L")]
    [(1234.0, 'mmol / L'), (98.6, 'degF'), (12.5, '1e9 / L')]
    >>> [n.value for n in parse_numbers("HbA1c 7.2%, CURB-65 score 2, 3rd visit")]
    [7.2, 2.0]
    """
    if not text:
        return []
    return _scan(text, 0, max_numbers, max_candidates)


def final_number(text: str, *, window: int = FINAL_WINDOW, skip_negated: bool = False) -> ParsedNumber | None:
    """The mention that states the answer's value, read from the last ``window`` characters.

    Rule: among the mentions (ranges count as one), drop denominators — a number after
    ``/`` or ``out of`` — unless nothing else is left; then take the **last mention
    introduced by an answer cue** (``=``, ``:``, ``≈``, ``is``, ``was``, ``are``, ``were``,
    ``be``, ``equals``), else the **last mention**. So a trailing remark such as "(normal
    range 0-9)" or "5 out of 9" does not displace "the score is 3". ``None`` when the text
    has no number. ``skip_negated``: mentions right after a negation ("not 40",
    :func:`medreward.parse.negation.negated_before`) are not candidates.

    >>> final_number("The HAS-BLED score is 3 (range 0-9).").value
    3.0
    >>> final_number("5 out of 9 criteria").value
    5.0
    >>> final_number("no numbers here") is None
    True
    """
    if not text:
        return None
    start = max(0, len(text) - max(1, window))
    # a window holds at most window/2 mentions, so nothing at its end is cut off
    mentions = _scan(text, start, max(1, window), max(1, window))
    if not mentions:
        return None
    if skip_negated:
        mentions = [m for m in mentions if not negated_before(text, m.span[0])]
        if not mentions:
            return None
    pool = [m for m in mentions if m.cue not in ("/", "out of")] or mentions
    for mention in reversed(pool):
        if mention.cue in ANSWER_CUES:
            return mention
    return pool[-1]
