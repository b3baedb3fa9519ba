r"""Class probabilities from model output: ``'{"CN": 0.2, "MCI": 0.5, "AD": 0.3}'`` or
``"CN: 20%\nMCI: 50%\nAD: 30%"`` → ``(("CN", 0.2), ("MCI", 0.5), ("AD", 0.3))``.

Layouts, first that applies:

* **JSON** (the whole answer, a fenced ```json block, or the span from the first ``{`` to the
  last ``}``): an object ``{label: p}``, or ``{"probabilities": {label: p}}``; a value is a
  number or a string such as ``"30%"``.
* **Lines** ``label: p``, ``label = p`` or ``P(label) = p`` (bullets and ``**`` ignored), with
  ``p`` a number, optionally followed by ``%``; several entries may share a line, separated by
  ``,``, ``;`` or ``|`` (``CN: 0.2, MCI: 0.5, AD: 0.3``), so a decimal comma is not read.

A value with ``%`` is divided by 100. ``NaN``, ``inf`` and negative values are returned as
read: judging them is the reward's job. Labels are returned as written (stripped of
markup); a repeated label keeps its first value (``duplicates`` counts the repeats).

Bounded: JSON is tried only on answers up to ``MAX_JSON_CHARS``; at most ``MAX_ENTRIES``
entries and ``MAX_LINES`` lines are read (``truncated`` says so); numbers are read by one
:mod:`re2` match at the start of each value.

>>> parse_probabilities("CN: 20%\n- **MCI**: 50 %\nP(AD) = 0.3").entries
(('CN', 0.2), ('MCI', 0.5), ('AD', 0.3))
>>> parse_probabilities('```json\n{"probabilities": {"CN": "10%", "AD": 0.9}}\n```').entries
(('CN', 0.1), ('AD', 0.9))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import re2

from ..text import clean_surrogates

__all__ = ["MAX_ENTRIES", "ParsedProbabilities", "parse_probabilities", "read_probability"]

MAX_ENTRIES = 200
MAX_LINES = 5000
MAX_JSON_CHARS = 200_000

_NUMBER = re2.compile(r"^\s*([-+−]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|(?i:[-+]?nan|[-+]?inf(?:inity)?))\s*(%?)")
_LABEL_STRIP = " \t*_`\"'“”‘’#"


@dataclass(frozen=True, slots=True)
class ParsedProbabilities:
    """``entries`` (label as written, value; percentages already divided by 100), ``format``
    (``json`` | ``lines`` | ``none``), ``duplicates`` and ``truncated``."""

    entries: tuple[tuple[str, float], ...]
    format: str
    duplicates: int = 0
    truncated: bool = False


def read_probability(raw: object) -> float | None:
    """A probability value: a number, or a string holding one (``"0.3"``, ``"30%"``, ``"NaN"``);
    ``None`` when it is neither.

    >>> read_probability("30 %"), read_probability(0.25), read_probability("high"), read_probability(True)
    (0.3, 0.25, None, None)
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    if not isinstance(raw, str):
        return None
    m = _NUMBER.match(clean_surrogates(raw[:64]))
    if m is None:
        return None
    value = float(m.group(1).replace("−", "-"))
    return value / 100.0 if m.group(2) and math.isfinite(value) else value


def _label(raw: str) -> str:
    s = raw.strip().lstrip("-*•–·>").strip(_LABEL_STRIP)
    if len(s) > 3 and s[:2].casefold() == "p(" and s.endswith(")"):
        s = s[2:-1].strip(_LABEL_STRIP)
    return " ".join(s[:200].split())


def _json_object(text: str) -> Mapping | None:
    if len(text) > MAX_JSON_CHARS or "{" not in text:
        return None
    s = text.strip()
    fence = s.find("```")
    if fence >= 0:
        end = s.find("```", fence + 3)
        if end > fence:
            body = s[fence + 3 : end]
            s = (body[4:] if body[:4].casefold() == "json" else body).strip()
    start, stop = s.find("{"), s.rfind("}")
    for candidate in (s, s[start : stop + 1] if 0 <= start < stop else ""):
        if candidate.startswith("{"):
            try:
                data = json.loads(candidate)
            except (ValueError, RecursionError):
                continue
            if isinstance(data, Mapping):
                inner = data.get("probabilities")
                return inner if isinstance(inner, Mapping) else data
    return None


def _segments(lines: list[str]):
    """Entries of the line layout: lines, each cut at ``,`` ``;`` ``|`` (``CN: 0.2, AD: 0.8``)."""
    for line in lines:
        yield from line.replace(";", ",").replace("|", ",").split(",")


def parse_probabilities(text: str) -> ParsedProbabilities:
    """Label–probability pairs of an answer (see the module doc for the layouts)."""
    if not text or not text.strip():
        return ParsedProbabilities((), "none")
    text = clean_surrogates(text)  # re2 needs UTF-8; completions arrive cleaned, direct callers may not
    pairs: list[tuple[str, float]] = []
    truncated = False
    data = _json_object(text)
    if data is not None:
        fmt = "json"
        for key, raw in list(data.items())[: MAX_ENTRIES + 1]:
            value = read_probability(raw)
            if value is not None and isinstance(key, str):
                pairs.append((_label(key), value))
    else:
        fmt = "lines"
        lines = text.splitlines()
        truncated = len(lines) > MAX_LINES
        for segment in _segments(lines[:MAX_LINES]):
            cut = min((i for i in (segment.find(":"), segment.find("=")) if i > 0), default=-1)
            if cut <= 0:
                continue
            value = read_probability(segment[cut + 1 :].lstrip(" *:="))
            if value is not None:
                pairs.append((_label(segment[:cut]), value))
                if len(pairs) > MAX_ENTRIES:
                    break
    if len(pairs) > MAX_ENTRIES:
        pairs, truncated = pairs[:MAX_ENTRIES], True
    seen: dict[str, float] = {}
    duplicates = 0
    for label, value in pairs:
        if not label:
            continue
        if label in seen:
            duplicates += 1
            continue
        seen[label] = value
    if not seen:
        fmt = "none" if fmt == "lines" else fmt
    return ParsedProbabilities(tuple(seen.items()), fmt, duplicates, truncated)
