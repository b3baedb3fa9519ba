"""ICD-10-CM coding cases: a short list of documented diagnoses, coded to billable codes.

Each case lists 1-4 diagnoses of an encounter; the answer is the set of billable ICD-10-CM codes
(``reference: {"codes": [...]}``). Everything comes from ``simple-icd-10-cm`` 1.5.0 (the CDC's
ICD-10-CM April 2026 tabular list, public domain): the codes are **billable leaf codes**
(``is_leaf``: no children, 7th-character extensions included, e.g. ``S72.001A``), and the text of a
diagnosis is the code's title or, with probability ``inclusion_terms``, one of its inclusion
terms (the synonyms the tabular list files under the code, e.g. I21.4 "Non-Q wave myocardial
infarction NOS"), optionally followed by its category's title as context (``parent_context``).

How a case is drawn (``random.Random(f"icd_coding:{seed}:{index}:{attempt}")``):

1. the number of codes k is uniform in ``[min_codes, max_codes]``;
2. k distinct chapters are drawn uniformly from ``chapters`` (default: every chapter except 20,
   external causes, whose V/W/X/Y codes are secondary codes, and 22, special purposes), so cases
   spread across the classification instead of following the code counts (chapter 19 alone holds
   55 % of the billable codes); a pregnancy (O) and a perinatal (P) code never share a case (one is
   the mother's record, the other the newborn's);
3. one billable code is drawn uniformly within each chapter;
4. a pair of codes where one code's (or its ancestors') *Excludes1* note names the other is
   rejected and the case drawn again: Excludes1 means "never coded together".

The first use loads the classification (about 2.5 s; :func:`load_icd_index` caches it); nothing
is loaded at import.

The record: ``id`` (``icd_coding-<seed>-<index>``), ``prompt`` (system + user conversation asking
for reasoning in ``<think>`` and the comma-separated codes in ``<answer>``), ``task:
"icd_coding"``, ``reference: {"codes": [...]}`` (in the order the diagnoses are listed) and
``case: {"codes", "chapters", "titles", "phrases"}`` — ``phrases`` as written in the note.

>>> cases = generate_icd_coding(2, seed=3)
>>> [c["task"] for c in cases], cases[0]["id"]
(['icd_coding', 'icd_coding'], 'icd_coding-3-00000')
>>> all(is_billable(code) for c in cases for code in c["reference"]["codes"])
True
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from ._common import TaskArgumentError, check_count, reasoning_instruction
from .base import register_task

__all__ = [
    "DEFAULT_CHAPTERS",
    "IcdConfig",
    "IcdIndex",
    "generate_icd_coding",
    "icd",
    "is_billable",
    "iter_icd_cases",
    "load_icd_index",
    "system_prompt",
]

log = logging.getLogger(__name__)

TASK = "icd_coding"
#: Chapters drawn by default: all but 20 (external causes) and 22 (codes for special purposes).
DEFAULT_CHAPTERS: tuple[str, ...] = tuple(str(i) for i in range(1, 22) if i != 20)
_MAX_ATTEMPTS = 100


def icd() -> ModuleType:
    """The ``simple_icd_10_cm`` module, imported on first use (it parses a 9.7 MB XML)."""
    with warnings.catch_warnings():  # it imports pkg_resources, which warns on recent setuptools
        warnings.simplefilter("ignore")
        import simple_icd_10_cm

    return simple_icd_10_cm


@dataclass(frozen=True)
class IcdIndex:
    """Billable codes per chapter (tabular order) and chapter titles, from ``simple-icd-10-cm``."""

    billable: dict[str, tuple[str, ...]]  # chapter id -> billable codes
    chapter_titles: dict[str, str]
    codes: frozenset[str]

    def chapter_of(self, code: str) -> str:
        return icd().get_ancestors(code)[-1]


@lru_cache(maxsize=1)
def load_icd_index() -> IcdIndex:
    """Build (once per process) the index of billable ICD-10-CM codes by chapter."""
    cm = icd()
    billable: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    for code in cm.get_all_codes():
        if cm.is_chapter(code):
            titles[code] = cm.get_description(code)
        elif cm.is_leaf(code):
            billable.setdefault(cm.get_ancestors(code)[-1], []).append(code)
    return IcdIndex(
        billable={k: tuple(v) for k, v in sorted(billable.items(), key=lambda kv: int(kv[0]))},
        chapter_titles=dict(sorted(titles.items(), key=lambda kv: int(kv[0]))),
        codes=frozenset(c for v in billable.values() for c in v),
    )


def is_billable(code: str) -> bool:
    """True for a valid ICD-10-CM code with no children (a billable code).

    >>> is_billable("E11.9"), is_billable("E11"), is_billable("X99.99")
    (True, False, False)
    """
    cm = icd()
    return isinstance(code, str) and cm.is_valid_item(code) and cm.is_leaf(code)


def category_of(code: str) -> str:
    """The 3-character category of a code (``"I21.4"`` → ``"I21"``)."""
    return code.replace(".", "")[:3]  # plain string work: simple_icd_10_cm's remove_dot is a list scan


@dataclass(frozen=True)
class IcdConfig:
    """Knobs of the generator.

    Args:
        min_codes, max_codes: the number of diagnoses per case (uniform, 1 <= min <= max <= 10).
        chapters: chapter ids ("1" … "22") to draw from (default :data:`DEFAULT_CHAPTERS`).
        inclusion_terms: probability that a diagnosis is written as one of its inclusion terms
            (when the code has any) instead of its title.
        parent_context: probability that the category's title is added in parentheses.

    >>> IcdConfig(max_codes=2).min_codes
    1
    """

    min_codes: int = 1
    max_codes: int = 4
    chapters: tuple[str, ...] | None = None
    inclusion_terms: float = 0.3
    parent_context: float = 0.3

    def __post_init__(self) -> None:
        for name in ("min_codes", "max_codes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
                raise TaskArgumentError(f"IcdConfig.{name} must be an integer in [1, 10], got {value!r}")
        if self.min_codes > self.max_codes:
            raise TaskArgumentError(f"IcdConfig.min_codes ({self.min_codes}) is above max_codes ({self.max_codes})")
        for name in ("inclusion_terms", "parent_context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise TaskArgumentError(f"IcdConfig.{name} must be a probability in [0, 1], got {value!r}")
        if self.chapters is not None:
            valid = {str(i) for i in range(1, 23)}
            bad = [c for c in self.chapters if c not in valid]
            if isinstance(self.chapters, str) or not self.chapters or bad:
                raise TaskArgumentError(f"IcdConfig.chapters must be chapter ids '1'..'22', got {self.chapters!r}")
            if len(set(self.chapters)) < self.max_codes:
                raise TaskArgumentError(
                    f"IcdConfig.chapters has {len(set(self.chapters))} chapters, fewer than max_codes ({self.max_codes}): "
                    "each code of a case comes from a different chapter"
                )


# -- Excludes1 ------------------------------------------------------------------------------
def _references(note: str) -> list[str]:
    """Code references in an Excludes note: ``"(E08.-)"`` → ``E08``, ``"(Q20-Q28)"`` → ``Q20-Q28``."""
    refs = []
    for chunk in note.split("(")[1:]:
        inside = chunk.split(")", 1)[0]
        for part in inside.split(","):
            ref = part.strip().replace(".-", "").rstrip("-").replace(".", "")
            if ref and ref[0].isalpha() and ref[0].isupper() and len(ref) >= 3:
                refs.append(ref)
    return refs


def _matches(ref: str, code: str) -> bool:
    plain = code.replace(".", "")
    if "-" in ref:
        low, high = ref.split("-", 1)
        return low[:3] <= plain[:3] <= high[:3]
    return plain.startswith(ref)


def _excludes(a: str, b: str) -> bool:
    """True when an Excludes1 note of ``a`` or of one of its ancestors names ``b``."""
    cm = icd()
    for item in [a, *cm.get_ancestors(a)]:
        for note in cm.get_excludes1(item):
            if any(_matches(ref, b) for ref in _references(note)):
                return True
    return False


# -- rendering ------------------------------------------------------------------------------
def system_prompt() -> str:
    """The system message of every ICD coding case."""
    return (
        "You are a certified clinical coder. Assign ICD-10-CM codes to the diagnoses documented for this "
        "encounter: one code per diagnosis, each the most specific billable code (with a 7th character "
        "where the code requires one) and nothing that is not documented. "
        + reasoning_instruction("the codes, comma-separated, e.g. <answer>E11.9, I10</answer>.")
    )


_OPENINGS = (
    "Discharge diagnoses documented by the attending physician:",
    "Diagnoses documented for this encounter:",
    "Assessment at the end of the visit:",
)


def _phrase(code: str, rng: random.Random, config: IcdConfig) -> tuple[str, str]:
    cm = icd()
    title = cm.get_description(code)
    terms = sorted(cm.get_inclusion_term(code))
    text = rng.choice(terms) if terms and rng.random() < config.inclusion_terms else title
    category = category_of(code)
    if category != code and rng.random() < config.parent_context:
        parent = cm.get_description(category)
        if parent.casefold() not in text.casefold():
            text = f"{text} ({parent})"
    return title, text


def _attempt(index: int, seed: int, attempt: int, config: IcdConfig, index_: IcdIndex) -> dict[str, Any] | None:
    rng = random.Random(f"{TASK}:{seed}:{index}:{attempt}")
    chapters = [c for c in (config.chapters or DEFAULT_CHAPTERS) if c in index_.billable]
    k = rng.randint(config.min_codes, config.max_codes)
    chosen = rng.sample(sorted(set(chapters), key=int), min(k, len(set(chapters))))
    if "15" in chosen and "16" in chosen:
        return None
    codes = [rng.choice(index_.billable[ch]) for ch in chosen]
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            if _excludes(a, b) or _excludes(b, a):
                log.debug("icd case %d attempt %d: %s and %s are Excludes1", index, attempt, a, b)
                return None
    titles, phrases = zip(*(_phrase(c, rng, config) for c in codes))
    opening = rng.choice(_OPENINGS)
    lines = [opening] + [f"{i + 1}. {p}" for i, p in enumerate(phrases)]
    return {
        "id": f"{TASK}-{seed}-{index:05d}",
        "prompt": [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": "\n".join(lines) + "\n\nWhich ICD-10-CM codes apply?"},
        ],
        "task": TASK,
        "reference": {"codes": list(codes)},
        "case": {"codes": list(codes), "chapters": list(chosen), "titles": list(titles), "phrases": list(phrases)},
    }


def iter_icd_cases(n: int, seed: int, *, config: IcdConfig | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``n`` cases one at a time (the same cases as :func:`generate_icd_coding`)."""
    check_count(n, TASK)
    config = config or IcdConfig()
    index_ = load_icd_index()
    for index in range(n):
        for attempt in range(_MAX_ATTEMPTS):
            record = _attempt(index, seed, attempt, config, index_)
            if record is not None:
                yield record
                break
        else:  # pragma: no cover - Excludes1 clashes are rare
            raise RuntimeError(f"icd_coding case {index} (seed {seed}): no valid case in {_MAX_ATTEMPTS} attempts")


@register_task(
    TASK,
    description="ICD-10-CM coding: 1-4 documented diagnoses (titles or inclusion terms of billable codes from "
    "simple-icd-10-cm, across chapters); answer = the billable codes.",
    preset="icd_coding",
)
def generate_icd_coding(n: int, seed: int, *, config: IcdConfig | None = None) -> list[dict[str, Any]]:
    """``n`` ICD coding cases for ``seed`` (deterministic; see the module docstring).

    >>> [case] = generate_icd_coding(1, seed=0, config=IcdConfig(min_codes=2, max_codes=2))
    >>> len(case["reference"]["codes"]), len(set(case["case"]["chapters"]))
    (2, 2)
    """
    return list(iter_icd_cases(n, seed, config=config))


def chapters_of(codes: Sequence[str]) -> list[str]:
    """The chapter id of each code (``["E11.9"]`` → ``["4"]``)."""
    cm = icd()
    return [cm.get_ancestors(c)[-1] for c in codes]
