"""Counterfactual corruptions of a gold completion: the rejected answers of the reward benchmark.

Each corruption changes **one** thing of a correct completion, so a sound reward must score it
below the gold (RoboReward's counterfactual relabelling: the same trajectory with one detail made
wrong; Lee et al., *RoboReward*, 2025). Built-ins, per task (they read the task's real data: the
14-class toxicology vocabulary, the ICD-10-CM tabular list of ``simple-icd-10-cm``, the options of
an MCQ, the reference value and unit of a calculator):

=====================  ===========  ==========================================================
name                   tasks        what changes (``changes``)
=====================  ===========  ==========================================================
drop_substance         toxicology   one substance of the answer is removed (``none`` if it was
                                    the only one) — answer
add_substance          toxicology   a substance class not in the reference is added — answer
swap_substance         toxicology   one substance is replaced by a wrong class — answer
swap_code_sibling      icd_coding   one code is replaced by a billable sibling (a leaf of its
                                    nearest ancestor with another leaf) — answer
drop_code              icd_coding   one code is removed (cases with 2+ codes) — answer
add_code               icd_coding   a billable code of another chapter is added — answer
change_value           calculator   the number is moved outside the tolerance band — answer
change_unit            calculator   the number is kept, the unit made wrong (a different scale
                                    or dimension) — answer
flip_letter            mcq          the answer letter becomes another option's — answer
hallucinated_finding   any          a finding that is not in the prompt is asserted in the
                                    reasoning — reasoning
=====================  ===========  ==========================================================

A reward that reads only the answer scores ``hallucinated_finding`` like the gold (a tie): the
benchmark reports that per corruption rather than hiding it.

A corruption is a :class:`Corruption`; ``transform(record, gold, rng)`` returns the corrupted
completion, or ``None`` when it does not apply to the case (no second code to drop, no unit to
change…). Register your own with :func:`register_corruption`.

>>> import random
>>> gold = "<think>Miosis and apnea.</think>\\n<answer>opioids, ethanol</answer>"
>>> case = {"task": "toxicology", "reference": {"substances": ["opioids", "ethanol"]}}
>>> get_corruption("drop_substance").transform(case, gold, random.Random(0))
'<think>Miosis and apnea.</think>\\n<answer>opioids</answer>'
>>> mcq = {"task": "mcq", "reference": {"answer": "B", "options": {"A": "x", "B": "y"}}}
>>> get_corruption("flip_letter").transform(mcq, "<think>.</think><answer>B</answer>", random.Random(0))
'<think>.</think><answer>A</answer>'
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ..errors import MedrewardError
from ..parse.icd import normalize_icd_code
from ..parse.tags import extract_section

__all__ = [
    "Corruption",
    "UnknownCorruptionError",
    "get_corruption",
    "list_corruptions",
    "register_corruption",
]

Transform = Callable[[Mapping[str, Any], str, random.Random], "str | None"]


class UnknownCorruptionError(MedrewardError):
    """An unknown corruption name (the message lists the known ones)."""


@dataclass(frozen=True)
class Corruption:
    """One counterfactual edit of a gold completion.

    ``tasks``: the tasks it applies to (``None``: any); ``changes``: which part of the completion
    it edits (``"answer"`` changes what is judged correct; ``"reasoning"`` only the reasoning).
    """

    name: str
    description: str
    tasks: tuple[str, ...] | None
    changes: Literal["answer", "reasoning"]
    transform: Transform

    def applies_to(self, task: str | None) -> bool:
        return self.tasks is None or task in self.tasks


_CORRUPTIONS: dict[str, Corruption] = {}


def register_corruption(corruption: Corruption) -> Corruption:
    """Register ``corruption`` under its name (the same object again is a no-op; another one
    under a taken name is a ``TypeError``)."""
    current = _CORRUPTIONS.get(corruption.name)
    if current is not None and current != corruption:
        raise TypeError(f"corruption {corruption.name!r} is registered twice")
    _CORRUPTIONS[corruption.name] = corruption
    return corruption


def list_corruptions(task: str | None = None) -> list[Corruption]:
    """Registered corruptions (sorted by name); with ``task``, those that apply to it."""
    return [c for _, c in sorted(_CORRUPTIONS.items()) if task is None or c.applies_to(task)]


def get_corruption(name: str) -> Corruption:
    """The corruption registered as ``name``; an unknown name lists the known ones."""
    found = _CORRUPTIONS.get(name)
    if found is None:
        raise UnknownCorruptionError(f"unknown corruption {name!r}; known corruptions: {', '.join(sorted(_CORRUPTIONS))}")
    return found


def _corruption(name: str, description: str, tasks: tuple[str, ...] | None, changes: Literal["answer", "reasoning"] = "answer"):
    def decorator(fn: Transform) -> Transform:
        register_corruption(Corruption(name, description, tasks, changes, fn))
        return fn

    return decorator


# -- editing the answer section -------------------------------------------------------------


def _replace_answer(gold: str, edit: Callable[[str], str | None]) -> str | None:
    """``gold`` with the content of its (last) ``<answer>`` section replaced by ``edit(content)``."""
    section = extract_section(gold, "answer")
    if section is None:
        return None
    new = edit(section.content)
    if new is None or new == section.content:
        return None
    return f"{gold[: section.start]}<answer>{new}</answer>{gold[section.end :]}"


def _split_items(content: str) -> tuple[list[str], str]:
    """The comma- (or semicolon-) separated items of a list answer, and the separator to rejoin."""
    sep = ";" if ";" in content and "," not in content else ","
    items = [part.strip() for part in content.split(sep)]
    return [item for item in items if item], f"{sep} "


def _reference_list(record: Mapping[str, Any], field: str) -> list[str]:
    ref = record.get("reference")
    value = ref.get(field) if isinstance(ref, Mapping) else None
    return [str(v) for v in value] if isinstance(value, list) else []


# -- toxicology -----------------------------------------------------------------------------


def _tox_vocab():
    from ..vocab import load_vocabulary

    return load_vocabulary("toxicology")


def _tox_items(content: str) -> tuple[list[str], list[tuple[str, ...] | None], str]:
    vocab = _tox_vocab()
    items, sep = _split_items(content)
    return items, [vocab.normalize(item) for item in items], sep


def _wrong_class(record: Mapping[str, Any], present: set[str], rng: random.Random) -> str | None:
    vocab = _tox_vocab()
    choices = [c for c in vocab.ids if c not in present and c not in _reference_list(record, "substances")]
    return vocab.display_name(rng.choice(choices)) if choices else None


def _none_term() -> str:
    terms = _tox_vocab().none_terms
    return terms[0] if terms else "none"


@_corruption("drop_substance", "One substance class of the answer is removed ('none' if it was the only one).", ("toxicology",))
def _drop_substance(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    def edit(content: str) -> str | None:
        items, ids, sep = _tox_items(content)
        named = [i for i, found in enumerate(ids) if found]
        if not named:
            return None
        drop = rng.choice(named)
        kept = [item for i, item in enumerate(items) if i != drop]
        return sep.join(kept) if kept else _none_term()

    return _replace_answer(gold, edit)


@_corruption("add_substance", "A substance class that is not in the reference is added to the answer.", ("toxicology",))
def _add_substance(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    vocab = _tox_vocab()

    def edit(content: str) -> str | None:
        items, ids, sep = _tox_items(content)
        present = {c for found in ids if found for c in found}
        wrong = _wrong_class(record, present, rng)
        if wrong is None:
            return None
        kept = [item for item in items if not vocab.is_none(item)]  # "none" + a substance would contradict itself
        return sep.join([*kept, wrong])

    return _replace_answer(gold, edit)


@_corruption("swap_substance", "One substance class of the answer is replaced by a wrong class.", ("toxicology",))
def _swap_substance(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    def edit(content: str) -> str | None:
        items, ids, sep = _tox_items(content)
        named = [i for i, found in enumerate(ids) if found]
        if not named:
            return None
        present = {c for found in ids if found for c in found}
        wrong = _wrong_class(record, present, rng)
        if wrong is None:
            return None
        items[rng.choice(named)] = wrong
        return sep.join(items)

    return _replace_answer(gold, edit)


# -- ICD-10-CM ------------------------------------------------------------------------------


def _icd():
    from ..tasks.icd_coding import icd

    return icd()


def _code_items(content: str) -> tuple[list[str], list[str | None], str]:
    items, sep = _split_items(content)
    return items, [normalize_icd_code(item) for item in items], sep


def sibling_codes(code: str, exclude: set[str]) -> list[str]:
    """Billable codes closest to ``code`` in the ICD-10-CM tree: the leaves under its nearest
    ancestor that has a leaf other than ``code`` (and not in ``exclude``), in tabular order.

    >>> sibling_codes("M23.621", set())
    ['M23.622', 'M23.629']
    """
    cm = _icd()
    if not cm.is_valid_item(code):
        return []
    for ancestor in cm.get_ancestors(code):
        if cm.is_chapter(ancestor):
            break
        leaves = [c for c in cm.get_descendants(ancestor)
                  if cm.is_leaf(c) and c != code and c not in exclude and normalize_icd_code(c) == c]  # fmt: skip
        if leaves:
            return leaves
    return []


@_corruption("swap_code_sibling", "One code is replaced by a billable sibling (nearest ancestor's other leaf).", ("icd_coding",))
def _swap_code_sibling(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    reference = set(_reference_list(record, "codes"))

    def edit(content: str) -> str | None:
        items, codes, sep = _code_items(content)
        candidates = [i for i, code in enumerate(codes) if code is not None]
        rng.shuffle(candidates)
        for i in candidates:
            siblings = sibling_codes(codes[i], reference | {c for c in codes if c})  # type: ignore[arg-type]
            if siblings:
                items[i] = rng.choice(siblings)
                return sep.join(items)
        return None

    return _replace_answer(gold, edit)


@_corruption("drop_code", "One code of the answer is removed (answers with two or more codes).", ("icd_coding",))
def _drop_code(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    def edit(content: str) -> str | None:
        items, codes, sep = _code_items(content)
        named = [i for i, code in enumerate(codes) if code is not None]
        if len(named) < 2:
            return None
        drop = rng.choice(named)
        return sep.join(item for i, item in enumerate(items) if i != drop)

    return _replace_answer(gold, edit)


@lru_cache(maxsize=None)
def _addable_codes(chapter: str) -> tuple[str, ...]:
    """The chapter's billable codes that are well-formed codes: the index also lists a few
    entries that are not (blocks without children such as 'C00-C96', 'QA0.0101')."""
    from ..tasks.icd_coding import load_icd_index

    return tuple(c for c in load_icd_index().billable.get(chapter, ()) if normalize_icd_code(c) == c)


@_corruption("add_code", "A billable code from a chapter none of the answer's codes is in is added (chapters 1-21 but 20).", ("icd_coding",))
def _add_code(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    from ..tasks.icd_coding import DEFAULT_CHAPTERS, load_icd_index

    index = load_icd_index()

    def edit(content: str) -> str | None:
        items, codes, sep = _code_items(content)
        used = {index.chapter_of(c) for c in codes if c is not None and c in index.codes}
        chapters = [ch for ch in DEFAULT_CHAPTERS if ch in index.billable and ch not in used]
        if not chapters:
            return None
        codes = _addable_codes(rng.choice(chapters))
        return sep.join([*items, rng.choice(codes)]) if codes else None

    return _replace_answer(gold, edit)


# -- calculators ----------------------------------------------------------------------------

# A unit that reads the same number as a different quantity: another scale of the same
# dimension where one is common (the number is then off by 10-1000x), else another dimension.
WRONG_UNITS: dict[str, str] = {
    "mEq/L": "mEq/dL",
    "msec": "s",
    "mL/min/1.73 m^2": "L/min/1.73 m^2",
    "mg/dL": "g/dL",
    "kg": "g",
    "mL/min": "L/min",
    "mg/day": "g/day",
    "%": "mg/dL",
    "kg/m^2": "g/m^2",
    "mOsm/kg": "Osm/kg",
    "m^2": "cm^2",
    "mmHg": "kPa",
    "mg": "g",
    "L": "mL",
    "mL/hr": "L/hr",
    "mL/h": "L/h",
    "mmol/L": "mg/dL",
    "g/dL": "mg/dL",
}


def _number_span(content: str) -> tuple[int, int] | None:
    """Span of the digits of the answer's value (:func:`~medreward.parse.numbers.final_number`
    finds the mention; its unit may hold digits too, as in ``mL/min/1.73 m^2``)."""
    from ..parse.numbers import final_number

    mention = final_number(content)
    if mention is None:
        return None
    start = end = mention.span[0]
    if end < len(content) and content[end] in "+-\u2212":
        end += 1
    seen_dot = False
    while end < len(content) and (content[end].isdigit() or (content[end] == "." and not seen_dot)):
        seen_dot = seen_dot or content[end] == "."
        end += 1
    if content[end - 1] == ".":
        end -= 1
    return (start, end) if any(ch.isdigit() for ch in content[start:end]) else None


def _format_number(value: float, like: str) -> str:
    decimals = len(like.split(".", 1)[1]) if "." in like else 0
    text = f"{value:.{decimals}f}"
    return text if float(text) != 0 or value == 0 else f"{value:.3g}"


def _real(value: Any) -> float | None:
    """A finite number of a reference field, or ``None`` (references are user data)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _outside_band(value: float, ref: Mapping[str, Any], target: float) -> bool:
    lower = _real(ref.get("lower"))
    upper = _real(ref.get("upper"))
    margin = max(0.05 * abs(target), 1e-9)  # also clear of the presets' 5 % relative tolerance
    low = min(target - margin, lower if lower is not None else target)
    high = max(target + margin, upper if upper is not None else target)
    return value < low or value > high


@_corruption("change_value", "The answer's number is moved outside the reference tolerance band (unit kept).", ("calculator",))
def _change_value(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    ref = record.get("reference")
    target = _real(ref.get("value")) if isinstance(ref, Mapping) else None
    if ref is None or target is None:
        return None

    def edit(content: str) -> str | None:
        span = _number_span(content)
        if span is None:
            return None
        raw = content[span[0] : span[1]]
        try:
            value = float(raw.replace("\u2212", "-"))
        except ValueError:
            return None
        integer = "." not in raw
        steps = [1, 2, 3, -1, -2] if integer and abs(value) < 20 else [0.5, 1.5, 2.0, 0.7, 1.3]
        rng.shuffle(steps)
        for step in steps:
            new = value + step if integer and abs(value) < 20 else value * step
            if integer:
                new = float(round(new))
            if new < 0 <= value or not math.isfinite(new) or not _outside_band(new, ref, target):
                continue
            return content[: span[0]] + _format_number(new, raw) + content[span[1] :]
        return None

    return _replace_answer(gold, edit)


@_corruption("change_unit", "The answer's number is kept and its unit made wrong (another scale or dimension).", ("calculator",))
def _change_unit(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    ref = record.get("reference")
    unit = ref.get("unit") if isinstance(ref, Mapping) else None
    if not isinstance(unit, str) or unit not in WRONG_UNITS:
        return None
    wrong = WRONG_UNITS[unit]

    def edit(content: str) -> str | None:
        at = content.rfind(unit)
        if at != -1:
            return content[:at] + wrong + content[at + len(unit) :]
        span = _number_span(content)  # the unit was left out: the wrong one goes after the number
        return None if span is None else f"{content[: span[1]]} {wrong}{content[span[1] :]}"

    return _replace_answer(gold, edit)


# -- multiple choice ------------------------------------------------------------------------


@_corruption("flip_letter", "The answer letter is replaced by another option's letter (and its text, if shown).", ("mcq",))
def _flip_letter(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    ref = record.get("reference")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("answer"), str) or not isinstance(ref.get("options"), Mapping):
        return None
    options = {str(k): str(v) for k, v in ref["options"].items()}
    right = ref["answer"].strip().upper()
    others = [letter for letter in options if letter.upper() != right]
    if not others:
        return None
    wrong = rng.choice(others)

    def edit(content: str) -> str | None:
        at = _letter_at(content, right)
        if at is None:
            return None
        new = content[:at] + wrong + content[at + 1 :]
        text = options.get(right)
        if text and text in new:
            new = new.replace(text, options[wrong], 1)
        return new

    return _replace_answer(gold, edit)


def _letter_at(content: str, letter: str) -> int | None:
    """Index of ``letter`` standing alone in ``content`` (not inside a word), the first one."""
    for i, ch in enumerate(content):
        if ch.upper() == letter and (i == 0 or not content[i - 1].isalnum()) and (
            i + 1 == len(content) or not content[i + 1].isalnum()
        ):
            return i
    return None


# -- any task -------------------------------------------------------------------------------

# (statement, words that must not already occur in the prompt for it to be a hallucination)
HALLUCINATED_FINDINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("The ECG also shows ST-segment elevation in leads II, III and aVF.", ("st-segment", "st elevation", "avf")),
    ("A chest X-ray shows a large right-sided pneumothorax.", ("pneumothorax", "x-ray")),
    ("Serum potassium is 7.1 mmol/L.", ("potassium",)),
    ("The patient reports a known allergy to penicillin.", ("penicillin", "allergy")),
    ("A head CT shows an acute subdural haematoma.", ("subdural", "head ct")),
    ("Blood cultures grew Staphylococcus aureus.", ("culture", "staphylococcus")),
    ("The troponin is markedly elevated at 12 ng/mL.", ("troponin",)),
    ("There is a history of seizures since childhood.", ("seizure",)),
)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, Mapping))
    return ""


@_corruption("hallucinated_finding", "A finding that is not in the prompt is asserted in the reasoning.", None, "reasoning")
def _hallucinated_finding(record: Mapping[str, Any], gold: str, rng: random.Random) -> str | None:
    prompt = _prompt_text(record.get("prompt")).lower()
    choices = [s for s, words in HALLUCINATED_FINDINGS if not any(w in prompt for w in words)]
    if not choices:
        return None
    finding = rng.choice(choices)
    think = extract_section(gold, "think")
    if think is not None:
        close = think.end - len("</think>")
        gap = "" if not think.content or think.content.endswith((" ", "\n")) else " "
        return f"{gold[:close]}{gap}{finding}{gold[close:]}"
    answer = extract_section(gold, "answer")
    if answer is None:
        return f"{finding}\n{gold}"
    return f"{gold[: answer.start]}<think>{finding}</think>\n{gold[answer.start :]}"

