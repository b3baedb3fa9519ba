r"""Per-criterion eligibility labels from model output: ``"C1: met\nC2: not met"`` →
``{"c1": "met", "c2": "not_met"}`` (patient–trial matching: PRISM, TREC-CT, NLI4CT).

Layouts read, first that applies:

* **JSON** (the whole answer, a fenced ```json block, or the span from the first ``{``/``[`` to
  the last ``}``/``]``): an object ``{criterion_id: label}``; an object whose values are objects
  with a ``label`` (or ``status`` / ``verdict`` / ``assessment``) and optional ``evidence``; a
  list of such objects with an ``id`` (or ``criterion`` / ``criterion_id`` / ``name``); or an
  object ``{"criteria": <one of those>, "evidence": [...]}``.
* **Lines** ``ID: label`` or ``ID = label`` (bullets and ``**`` markup ignored), e.g.
  ``- Inclusion 2: not met (no HbA1c on file)``, several on a line separated by ``;``
  (``C1: met; C2: unknown``); a line ``Evidence: 3, 7, 12`` lists evidence ids.

Labels (the first words of the value, any case, ``_``/``-`` read as blanks): ``met`` (met,
meets, satisfied, fulfilled, yes, true, eligible), ``not_met`` (not met, unmet, does not meet,
not satisfied, not fulfilled, no, false, ineligible, excluded) and ``unknown`` (unknown,
insufficient, unclear, not enough information, cannot determine, undetermined,
indeterminate). Anything else is kept with ``label = None``.

Criterion ids are compared by :func:`criterion_key` (case-folded, blanks collapsed, quotes,
brackets and ``*`` stripped). Evidence ids (NLI4CT sentence indices) are strings:
``3`` and ``"3"`` are the same id.

Bounded: JSON is tried only on answers up to ``MAX_JSON_CHARS``; at most ``MAX_ITEMS``
criteria and ``MAX_LINES`` lines are read (``truncated`` says so); each label looks at its
first four words.

>>> a = parse_criteria("C1: met\n- **C2**: Not met (HbA1c 9.1%)\nC3: insufficient info\nEvidence: 4, 7")
>>> [(i.id, i.label) for i in a.items], a.evidence, a.format
([('c1', 'met'), ('c2', 'not_met'), ('c3', 'unknown')], ('4', '7'), 'lines')
>>> [(i.id, i.label, i.evidence) for i in parse_criteria('[{"id": "E1", "label": "met", "evidence": [2]}]').items]
[('e1', 'met', ('2',))]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "LABELS",
    "MAX_ITEMS",
    "CriteriaAnswer",
    "CriterionLabel",
    "Label",
    "criterion_key",
    "evidence_ids",
    "normalize_label",
    "parse_criteria",
]

Label = Literal["met", "not_met", "unknown"]
LABELS: tuple[Label, ...] = ("met", "not_met", "unknown")
MAX_ITEMS = 500
MAX_LINES = 5000
MAX_JSON_CHARS = 200_000
MAX_EVIDENCE = 1000

_PHRASES: tuple[tuple[tuple[str, ...], Label], ...] = (
    (("not", "met"), "not_met"), (("unmet",), "not_met"), (("does", "not", "meet"), "not_met"),
    (("doesn't", "meet"), "not_met"), (("not", "satisfied"), "not_met"), (("not", "fulfilled"), "not_met"),
    (("ineligible",), "not_met"), (("excluded",), "not_met"), (("no",), "not_met"), (("false",), "not_met"),
    (("met",), "met"), (("meets",), "met"), (("satisfied",), "met"), (("fulfilled",), "met"),
    (("yes",), "met"), (("true",), "met"), (("eligible",), "met"),
    (("unknown",), "unknown"), (("insufficient",), "unknown"), (("unclear",), "unknown"),
    (("not", "enough"), "unknown"), (("cannot", "determine"), "unknown"), (("can't", "determine"), "unknown"),
    (("cannot", "be", "determined"), "unknown"), (("undetermined",), "unknown"), (("indeterminate",), "unknown"),
)  # fmt: skip
_WORD_STRIP = ".,;:!?()[]{}*\"'`“”‘’"
_KEY_STRIP = " \t*_`\"'“”‘’()[]{}#"
_ID_KEYS = ("id", "criterion_id", "criterion", "name")
_LABEL_KEYS = ("label", "status", "verdict", "assessment")


@dataclass(frozen=True, slots=True)
class CriterionLabel:
    """One criterion of the answer: its ``id`` (:func:`criterion_key` form), ``label`` (``None``:
    the text did not name one of the three), ``raw`` label text and ``evidence`` ids."""

    id: str
    label: Label | None
    raw: str
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CriteriaAnswer:
    """What an answer states: ``items`` (first mention of each criterion), ``evidence`` (all
    evidence ids, in order, deduplicated), ``format`` (``json`` | ``lines`` | ``none``),
    ``duplicates`` (repeated criteria dropped) and ``truncated``."""

    items: tuple[CriterionLabel, ...]
    evidence: tuple[str, ...]
    format: str
    duplicates: int = 0
    truncated: bool = False


def criterion_key(raw: object) -> str:
    """The form criterion ids are compared in.

    >>> criterion_key("  **Inclusion   2** "), criterion_key(3)
    ('inclusion 2', '3')
    """
    text = raw if isinstance(raw, str) else str(raw)
    return " ".join(text[:200].strip(_KEY_STRIP).split()).casefold()


def normalize_label(text: object) -> Label | None:
    """``met`` / ``not_met`` / ``unknown`` from the first words of ``text``, or ``None``.

    >>> normalize_label("Not_met: no biopsy"), normalize_label("YES"), normalize_label("maybe")
    ('not_met', 'met', None)
    """
    if isinstance(text, bool):
        return "met" if text else "not_met"
    if not isinstance(text, str):
        return None
    words = tuple(
        w.strip(_WORD_STRIP) for w in text[:80].replace("_", " ").replace("-", " ").casefold().split()[:4]
    )
    words = tuple(w for w in words if w)
    for phrase, label in _PHRASES:
        if words[: len(phrase)] == phrase:
            return label
    return None


def evidence_ids(raw: object) -> tuple[str, ...] | None:
    """Evidence ids from a list (of ids or numbers) or a comma/blank-separated string; ``None``
    when ``raw`` is neither.

    >>> evidence_ids([3, "7", " 7 "]), evidence_ids("1, 4 9"), evidence_ids({"a": 1})
    (('3', '7'), ('1', '4', '9'), None)
    """
    if isinstance(raw, str):
        items: list[Any] = raw.replace(",", " ").replace(";", " ").split()
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        return None
    out: dict[str, None] = {}
    for item in items[:MAX_EVIDENCE]:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            return None
        key = str(item).strip().strip(_WORD_STRIP).casefold()
        if key:
            out[key] = None
    return tuple(out)


def _json_candidate(text: str) -> Any:
    if len(text) > MAX_JSON_CHARS:
        return None
    s = text.strip()
    fence = s.find("```")
    if fence >= 0:
        end = s.find("```", fence + 3)
        if end > fence:
            body = s[fence + 3 : end]
            s = body[4:] if body[:4].casefold() == "json" else body
            s = s.strip()
    for candidate in (s, _span(s)):
        if candidate and candidate[0] in "[{":
            try:
                return json.loads(candidate)
            except (ValueError, RecursionError):
                continue
    return None


def _span(s: str) -> str | None:
    starts = [i for i in (s.find("{"), s.find("[")) if i >= 0]
    if not starts:
        return None
    start = min(starts)
    end = max(s.rfind("}"), s.rfind("]"))
    return s[start : end + 1] if end > start else None


def _from_json(data: Any) -> tuple[list[tuple[Any, Any, Any]], tuple[str, ...]] | None:
    """(id, label value, evidence value) triples and top-level evidence, or None for another shape."""
    top_evidence: tuple[str, ...] = ()
    if isinstance(data, Mapping) and ("criteria" in data or "evidence" in data):
        top_evidence = evidence_ids(data.get("evidence")) or ()
        data = data.get("criteria", {})
    triples: list[tuple[Any, Any, Any]] = []
    if isinstance(data, Mapping):
        for key, value in list(data.items())[: MAX_ITEMS + 1]:
            if isinstance(value, Mapping):
                label = next((value[k] for k in _LABEL_KEYS if k in value), None)
                triples.append((key, label, value.get("evidence")))
            else:
                triples.append((key, value, None))
    elif isinstance(data, list):
        for entry in data[: MAX_ITEMS + 1]:
            if not isinstance(entry, Mapping):
                return None
            key = next((entry[k] for k in _ID_KEYS if k in entry), None)
            if key is None or isinstance(key, (Mapping, list)):
                continue
            label = next((entry[k] for k in _LABEL_KEYS if k in entry), None)
            triples.append((key, label, entry.get("evidence")))
    else:
        return None
    return triples, top_evidence


def _from_lines(text: str) -> tuple[list[tuple[Any, Any, Any]], tuple[str, ...], bool]:
    triples: list[tuple[Any, Any, Any]] = []
    evidence: list[str] = []
    lines = text.splitlines()
    truncated = len(lines) > MAX_LINES
    for line in lines[:MAX_LINES]:
        first = _entry(line)
        if first is not None and criterion_key(first[0]) == "evidence":
            evidence.extend(evidence_ids(first[1][:5000]) or ())
            continue
        for segment in line.split(";") if first is not None else ():
            entry = _entry(segment)
            if entry is not None:
                triples.append((entry[0], entry[1], None))
        if len(triples) > MAX_ITEMS:
            break
    return triples, tuple(dict.fromkeys(evidence)), truncated


def _entry(text: str) -> tuple[str, str] | None:
    """``(key, value)`` of ``key: value`` / ``key = value`` (bullets and markup dropped), or None."""
    s = text.strip().lstrip("-*•–·>").strip()
    cut = min((i for i in (s.find(":"), s.find("=")) if i > 0), default=-1)
    if cut <= 0:
        return None
    return s[:cut], s[cut + 1 :].lstrip(" *:=")


def parse_criteria(text: str) -> CriteriaAnswer:
    """Criterion labels and evidence ids of an answer (see the module doc for the layouts)."""
    if not text or not text.strip():
        return CriteriaAnswer((), (), "none")
    parsed = _from_json(_json_candidate(text)) if ("{" in text or "[" in text) else None
    truncated = False
    if parsed is not None:
        triples, evidence = parsed
        fmt = "json"
    else:
        triples, evidence, truncated = _from_lines(text)
        fmt = "lines"
    if len(triples) > MAX_ITEMS:
        triples, truncated = triples[:MAX_ITEMS], True
    items: dict[str, CriterionLabel] = {}
    duplicates = 0
    all_evidence: dict[str, None] = dict.fromkeys(evidence)
    for key, value, ev in triples:
        cid = criterion_key(key)
        if not cid:
            continue
        if cid in items:
            duplicates += 1
            continue
        ids = evidence_ids(ev) or () if ev is not None else ()
        all_evidence.update(dict.fromkeys(ids))
        raw = value if isinstance(value, str) else "" if value is None else str(value) if isinstance(value, (int, float)) else type(value).__name__
        items[cid] = CriterionLabel(cid, normalize_label(value), raw[:80], ids)
    if not items and not all_evidence:
        fmt = "none" if fmt == "lines" else fmt
    return CriteriaAnswer(tuple(items.values()), tuple(all_evidence), fmt, duplicates, truncated)
