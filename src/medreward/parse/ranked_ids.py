r"""Ranked lists of ids from model output: ``"1. NCT01234567\n2. NCT07654321"`` → ``("NCT01234567", "NCT07654321")``.

The ids come back in the order the answer lists them, each kept at its first occurrence
(a repeat does not move it and is counted in ``duplicates``). What an id is depends on ``kind``:

* ``nct`` — ClinicalTrials.gov ids, ``NCT`` and eight digits, any case (normalised to upper
  case), not glued to a letter or digit: ``nct01234567`` → ``NCT01234567``.
* ``pmid`` — PubMed ids: a run of 1–9 digits standing on its own (``PMID: 12345`` and
  ``PMID12345`` give ``12345``). A number at the start of a line followed by ``.`` or ``)``
  is a list enumerator (``1.``, ``2)``), not an id; digits inside decimals, words or dotted
  runs (``1.5``, ``HbA1c``) are not ids. Other free-standing numbers (years, doses) *are*
  read as ids: ask the model for a plain list.
* ``icd10`` — ICD-10-CM codes by :func:`medreward.parse.icd.parse_icd_codes` (with or without
  the dot, any case; normalised to ``E11.9``).
* ``token`` — every item of a plain list: the text is split at blanks, commas, semicolons
  and ``|``; quotes, brackets, ``*`` and a trailing ``.``/``:`` are stripped; list markers
  (``-``, ``•``, ``1.``, ``2)``) are dropped. Every other word counts, so prose around the list
  takes ranks: use it for answers that are lists.
* a custom pattern — a :mod:`re2` regular expression (linear time); each match (group 0,
  or group 1 when the pattern has a group), stripped of surrounding blanks, is an id,
  compared as written.

Linear time: one :mod:`re2` scan or one split of the text, then constant work per
candidate. At most ``max_ids`` distinct ids are kept and ``max_candidates`` candidates
examined (``truncated`` says so).

>>> parse_ranked_ids("1. NCT01234567\n2) nct07654321\n3. NCT01234567", "nct").ids
('NCT01234567', 'NCT07654321')
>>> parse_ranked_ids("1. PMID: 31452104\n2. 29876543 (2018)", "pmid").ids
('31452104', '29876543', '2018')
>>> parse_ranked_ids("- doc3\n- doc1, doc7", "token").ids
('doc3', 'doc1', 'doc7')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import re2

from ..text import clean_surrogates
from .icd import normalize_icd_code, parse_icd_codes

__all__ = ["IdKind", "MAX_CANDIDATES", "MAX_IDS", "RankedIds", "normalize_id", "parse_ranked_ids"]

MAX_IDS = 1000
MAX_CANDIDATES = 20000

IdKind = Literal["nct", "pmid", "icd10", "token"]

_NCT = re2.compile(r"(?i)nct[0-9]{8}")
_DIGITS = re2.compile(r"[0-9]{1,9}")
_TOKEN = re2.compile(r"[^\s,;|]+")
_STRIP = "\"'`[](){}<>*“”‘’"
_BULLETS = frozenset("-*•–—·+>")


@dataclass(frozen=True, slots=True)
class RankedIds:
    """Ids of one text, in order of first mention (``ids``), how many repeats were dropped
    (``duplicates``) and whether a bound was hit (``truncated``)."""

    ids: tuple[str, ...]
    duplicates: int = 0
    truncated: bool = False


def _glued(text: str, s: int, e: int) -> bool:
    """The match ``text[s:e]`` touches a letter or digit (part of a longer word)."""
    return (s > 0 and text[s - 1].isalnum()) or (e < len(text) and text[e].isalnum())


def _line_start(text: str, s: int) -> bool:
    """Only blanks stand between the start of the line and ``s``."""
    i = s - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return i < 0 or text[i] in "\n\r"


def _nct(text: str, limit: int):
    for count, m in enumerate(_NCT.finditer(text)):
        if count >= limit:
            yield None
            return
        s, e = m.span()
        if not _glued(text, s, e):
            yield text[s:e].upper()


def _pmid(text: str, limit: int):
    n = len(text)
    for count, m in enumerate(_DIGITS.finditer(text)):
        if count >= limit:
            yield None
            return
        s, e = m.span()
        before = text[s - 1] if s > 0 else ""
        after = text[e] if e < n else ""
        if after.isalnum() or before.isdigit():
            continue
        if before.isalpha() and not text[max(0, s - 4) : s].upper() == "PMID":
            continue  # HbA1c, B12; but PMID12345 is an id
        if before == "." and s > 1 and text[s - 2].isdigit():
            continue  # fractional part of 1.5
        if after == "." and e + 1 < n and text[e + 1].isdigit():
            continue  # integer part of 1.5
        if after and after in ".)" and _line_start(text, s):
            continue  # list enumerator "1." / "2)"
        yield text[s:e].lstrip("0") or "0"


def _is_marker(token: str) -> bool:
    if all(c in _BULLETS for c in token):
        return True
    return len(token) >= 2 and token[-1] in ".)" and token[:-1].isdigit()


def _token(text: str, limit: int):
    for count, m in enumerate(_TOKEN.finditer(text)):
        if count >= limit:
            yield None
            return
        token = m.group(0)
        if _is_marker(token):
            continue
        token = token.strip().strip(_STRIP).rstrip(".:").strip(_STRIP).strip()
        if token and not _is_marker(token):
            yield token


def _pattern(text: str, pattern: re2._Regexp, limit: int):  # type: ignore[name-defined]
    group = 1 if pattern.groups >= 1 else 0
    for count, m in enumerate(pattern.finditer(text)):
        if count >= limit:
            yield None
            return
        found = (m.group(group) or "").strip()
        if found:
            yield found


def parse_ranked_ids(
    text: str,
    kind: IdKind = "token",
    pattern: object | None = None,
    *,
    max_ids: int = MAX_IDS,
    max_candidates: int = MAX_CANDIDATES,
) -> RankedIds:
    """The ids listed in ``text``, in order, deduplicated (see the module doc for ``kind``).
    ``pattern`` (a compiled :mod:`re2` pattern) overrides ``kind``.

    >>> parse_ranked_ids("E11.9, i10, e119", "icd10")
    RankedIds(ids=('E11.9', 'I10'), duplicates=1, truncated=False)
    """
    if not text:
        return RankedIds(())
    text = clean_surrogates(text)  # re2 needs UTF-8; completions arrive cleaned, direct callers may not
    if pattern is None and kind == "icd10":
        parsed = parse_icd_codes(text, max_codes=max_ids, max_candidates=max_candidates)
        return RankedIds(parsed.codes, max(0, len(parsed.mentions) - len(parsed.codes)), parsed.truncated)
    if pattern is not None:
        found = _pattern(text, pattern, max_candidates)
    elif kind == "nct":
        found = _nct(text, max_candidates)
    elif kind == "pmid":
        found = _pmid(text, max_candidates)
    else:
        found = _token(text, max_candidates)
    seen: dict[str, None] = {}
    duplicates = 0
    truncated = False
    for item in found:
        if item is None:
            truncated = True
            break
        if item in seen:
            duplicates += 1
            continue
        if len(seen) >= max_ids:
            truncated = True
            break
        seen[item] = None
    return RankedIds(tuple(seen), duplicates, truncated)


def normalize_id(raw: object, kind: IdKind = "token") -> str | None:
    """One reference id in the form :func:`parse_ranked_ids` gives it (``None`` when it is not
    shaped like an id of ``kind``). An integer is a PMID or a token.

    >>> normalize_id(" nct01234567 ", "nct"), normalize_id(31452104, "pmid"), normalize_id("e119", "icd10")
    ('NCT01234567', '31452104', 'E11.9')
    >>> normalize_id("PMID: 123", "pmid"), normalize_id("NCT123", "nct")
    ('123', None)
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        if kind in ("pmid", "token") and raw >= 0:
            return str(raw)
        return None
    if not isinstance(raw, str):
        return None
    s = clean_surrogates(raw).strip()
    if not s:
        return None
    if kind == "nct":
        return s.upper() if _NCT.fullmatch(s) else None
    if kind == "pmid":
        if s[:4].upper() == "PMID":
            s = s[4:].lstrip(" :")
        return (s.lstrip("0") or "0") if _DIGITS.fullmatch(s) else None
    if kind == "icd10":
        return normalize_icd_code(s)
    return s
