"""Multiple-choice questions: loaders for public MCQ layouts, and an offline MCQ generator.

**Loaders** — :func:`load_mcq` reads a JSONL file into cases in the rollout format
(``reference: {"answer": "C", "options": {"A": …}}``, ``task: "mcq"``):

* **MedQA** (Jin et al., "What Disease does this Patient Have? A Large-scale Open Domain Question
  Answering Dataset from Medical Exams", Applied Sciences 2021; the ``questions/*.jsonl`` files):
  ``question``, ``options`` as a dict ``{"A": "...", ...}``, ``answer`` (the option *text*) and/or
  ``answer_idx`` (the letter); when both are present they must agree. ``meta_info`` is kept.
* **MedMCQA** (Pal et al., "MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset for Medical
  domain Question Answering", CHIL 2022): ``question``, ``opa``/``opb``/``opc``/``opd``, ``cop``,
  plus ``id``, ``choice_type``, ``exp``, ``subject_name``, ``topic_name`` (kept). **``cop`` is
  1-based (1-4) in the original release files and 0-based (0-3) in the Hugging Face
  ``openlifescienceai/medmcqa`` copy** [recalled from both distributions' documentation; not
  re-checked offline]. ``cop_base="auto"`` decides per file: any ``cop`` 0 → 0-based, any 4 →
  1-based, both → an :class:`~medreward.errors.InputError`; a file with only 1-3 is read as
  1-based (the original release) and says so in :attr:`McqLoadResult.notes`. ``cop = -1`` (the
  test split, whose answers are hidden) is reported as a problem.
* **generic**: ``question``, ``options`` as a list (A, B, … in order) or a dict, and the answer as
  ``answer`` (a letter, or an option's exact text) or ``answer_idx`` (a 0-based index or a letter).
* **HealthBench** (OpenAI, "HealthBench: Evaluating Large Language Models Towards Improved Human
  Health", 2025): ``prompt`` (a list of chat messages), ``rubrics`` (a list of ``{criterion,
  points, tags}``), ``example_tags``, ``prompt_id`` and, where present, ``ideal_completions_data``
  (``{"ideal_completion": ...}``) → a case with ``task: "healthbench"`` and ``reference: {"rubric":
  [{criterion, points, tags}, ...], "ideal_answer": ...}``, the reference the ``rubric`` component
  reads; the ``healthbench`` preset scores it (an LLM judge grades each criterion).

``layout="auto"`` recognises each line by its fields (``rubrics`` → HealthBench, ``opa`` → MedMCQA,
an ``options`` dict → MedQA, an ``options`` list → generic). A malformed line (bad JSON, missing or
empty fields, an answer that is not one of the options…) becomes a :class:`LineProblem` with its
1-based line number; the other lines are kept. Blank lines are skipped.

**Generator** — task ``mcq`` (preset ``mcq``) writes questions offline from packaged vocabularies:

* ``drug_class`` — "To which drug class does *lorazepam* belong?" over the 14 classes of the
  toxicology vocabulary (:func:`medreward.vocab.load_vocabulary`); a drug is used only when
  ``drug-named-entity-recognition`` knows it under that exact name (street names and brands are
  left out);
* ``class_member`` — "Which of the following drugs belongs to the class *Antipsychotics*?";
* ``icd_chapter`` — "In which chapter of ICD-10-CM is code *K35.80* classified?" (the code's title
  is shown with probability ``show_title``); chapter titles are given without their code ranges.

Distractors are plausible: classes of the same pharmacological family (CNS depressants,
psychotropics, analgesics, other) are three times as likely as others; ICD chapters are weighted by
1/distance in the chapter list (neighbouring chapters share letters, e.g. D for neoplasms and
blood). Every question has ``n_options`` options (4 or 5) and the correct letters are balanced
exactly: each block of ``n_options`` consecutive cases uses every letter once, in a seeded order.

>>> cases = generate_mcq(5, seed=2)
>>> sorted(c["reference"]["answer"] for c in cases)
['A', 'B', 'C', 'D', 'E']
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ._common import TaskArgumentError, check_count, reasoning_instruction
from .base import register_task

__all__ = [
    "LETTERS",
    "LineProblem",
    "McqConfig",
    "McqLoadResult",
    "drug_classes",
    "generate_mcq",
    "iter_mcq_cases",
    "load_mcq",
    "mcq_case",
    "system_prompt",
]

log = logging.getLogger(__name__)

TASK = "mcq"
LETTERS = "ABCDEFGHIJ"
Layout = Literal["auto", "medqa", "medmcqa", "generic", "healthbench"]
_LAYOUTS = ("auto", "medqa", "medmcqa", "generic", "healthbench")


# -- case records ---------------------------------------------------------------------------
def system_prompt() -> str:
    """The system message of every MCQ case (loaded or generated)."""
    return (
        "You are a medical expert answering a multiple-choice question. Choose the single best option. "
        + reasoning_instruction("the letter of that option only, e.g. <answer>C</answer>.")
    )


def mcq_case(
    id: str,
    question: str,
    options: Mapping[str, str],
    answer: str,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A case in the rollout format for a question, its lettered options and the correct letter.

    ``case`` holds the question and options (what a policy may read) plus ``extra``.

    >>> c = mcq_case("q1", "Which drug is an opioid?", {"A": "Morphine", "B": "Insulin"}, "A")
    >>> c["reference"], c["prompt"][1]["content"].splitlines()[-1]
    ({'answer': 'A', 'options': {'A': 'Morphine', 'B': 'Insulin'}}, 'B. Insulin')
    """
    body = question.strip() + "\n\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
    return {
        "id": id,
        "prompt": [{"role": "system", "content": system_prompt()}, {"role": "user", "content": body}],
        "task": TASK,
        "reference": {"answer": answer, "options": dict(options)},
        "case": {"question": question.strip(), "options": dict(options), **(extra or {})},
    }


# -- loading --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineProblem:
    """A line of an input file that could not be turned into a case (``line`` is 1-based)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class McqLoadResult:
    """What :func:`load_mcq` read: the cases, the problems (by line), how many lines of each
    layout were kept, and notes on file-level decisions (e.g. the MedMCQA ``cop`` base)."""

    cases: list[dict[str, Any]]
    problems: list[LineProblem] = field(default_factory=list)
    layouts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Bad(Exception):
    """A line-level problem (turned into a LineProblem)."""


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"'{key}' must be a non-empty string" + ("" if key in obj else " (missing)"))
    return value.strip()


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _options_dict(raw: Any) -> dict[str, str]:
    if isinstance(raw, Mapping):
        items = list(raw.items())
        keys = [str(k).strip().upper() for k, _ in items]
        if any(len(k) != 1 or k not in LETTERS for k in keys) or len(set(keys)) != len(keys):
            raise _Bad(f"option keys must be distinct letters A-J, got {[k for k, _ in items]}")
        values = [v for _, v in items]
    elif isinstance(raw, list):
        if len(raw) > len(LETTERS):
            raise _Bad(f"at most {len(LETTERS)} options, got {len(raw)}")
        keys, values = list(LETTERS[: len(raw)]), raw
    else:
        raise _Bad("'options' must be an object {letter: text} or a list of texts" + ("" if raw is not None else " (missing)"))
    if len(keys) < 2:
        raise _Bad(f"a question needs at least 2 options, got {len(keys)}")
    options: dict[str, str] = {}
    for k, v in sorted(zip(keys, values), key=lambda kv: kv[0]):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not v.strip():
            raise _Bad(f"option {k} must be a non-empty string")
        options[k] = v.strip()
    return options


def _letter_of_text(options: Mapping[str, str], text: str) -> str | None:
    matches = [k for k, v in options.items() if _norm(v) == _norm(text)]
    return matches[0] if len(matches) == 1 else None


def _medqa(obj: Mapping[str, Any], line: int, source: str) -> dict[str, Any]:
    question = _text(obj, "question")
    options = _options_dict(obj.get("options"))
    idx, answer = obj.get("answer_idx"), obj.get("answer")
    letter = None
    if idx is not None:
        if not isinstance(idx, str) or idx.strip().upper() not in options:
            raise _Bad(f"answer_idx {idx!r} is not one of the option letters {''.join(options)}")
        letter = idx.strip().upper()
    if isinstance(answer, str) and answer.strip():
        by_text = _letter_of_text(options, answer)
        if letter is None:
            if by_text is None and answer.strip().upper() in options and len(answer.strip()) == 1:
                by_text = answer.strip().upper()  # a bare letter in 'answer'
            if by_text is None:
                raise _Bad(f"answer {answer[:60]!r} matches no option (or several)")
            letter = by_text
        elif _norm(options[letter]) != _norm(answer) and not (len(answer.strip()) == 1 and answer.strip().upper() == letter):
            raise _Bad(f"answer_idx {letter} ({options[letter][:40]!r}) disagrees with answer {answer[:40]!r}")
    if letter is None:
        raise _Bad("no answer: give 'answer_idx' (a letter) or 'answer' (the option text)")
    extra = {"source": "medqa", "line": line}
    if "meta_info" in obj:
        extra["meta_info"] = obj["meta_info"]
    return mcq_case(str(obj.get("id") or f"{source}-{line}"), question, options, letter, extra=extra)


def _cop_value(obj: Mapping[str, Any]) -> int:
    cop = obj.get("cop")
    if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():
        cop = int(cop)
    if isinstance(cop, bool) or not isinstance(cop, int):
        raise _Bad(f"'cop' must be an integer, got {cop!r}")
    return cop


def _medmcqa(obj: Mapping[str, Any], line: int, source: str, cop_base: int) -> dict[str, Any]:
    question = _text(obj, "question")
    options = {letter: _text(obj, key) for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"))}
    cop = _cop_value(obj)
    if cop == -1:
        raise _Bad("no answer key (cop = -1: MedMCQA's test split has no public answers)")
    position = cop - cop_base
    if not 0 <= position <= 3:
        raise _Bad(f"cop {cop} is outside {cop_base}-{cop_base + 3} ({cop_base}-based, as read for this file)")
    extra: dict[str, Any] = {"source": "medmcqa", "line": line}
    for key in ("choice_type", "exp", "subject_name", "topic_name"):
        if obj.get(key) is not None:
            extra[key] = obj[key]
    return mcq_case(str(obj.get("id") or f"{source}-{line}"), question, options, "ABCD"[position], extra=extra)


def _generic(obj: Mapping[str, Any], line: int, source: str) -> dict[str, Any]:
    question = _text(obj, "question")
    options = _options_dict(obj.get("options"))
    letter = None
    idx = obj.get("answer_idx")
    if isinstance(idx, int) and not isinstance(idx, bool):
        if not 0 <= idx < len(options):
            raise _Bad(f"answer_idx {idx} is outside 0-{len(options) - 1} (0-based)")
        letter = list(options)[idx]
    elif isinstance(idx, str) and idx.strip().upper() in options:
        letter = idx.strip().upper()
    elif idx is not None:
        raise _Bad(f"answer_idx {idx!r} is neither a 0-based index nor an option letter")
    answer = obj.get("answer")
    if letter is None and isinstance(answer, str) and answer.strip():
        a = answer.strip()
        letter = a.upper() if len(a) == 1 and a.upper() in options else _letter_of_text(options, a)
        if letter is None:
            raise _Bad(f"answer {a[:60]!r} is neither an option letter nor exactly one option's text")
    if letter is None:
        raise _Bad("no answer: give 'answer' (a letter or the option text) or 'answer_idx' (0-based)")
    return mcq_case(str(obj.get("id") or f"{source}-{line}"), question, options, letter, extra={"source": "generic", "line": line})


def _healthbench(obj: Mapping[str, Any], line: int, source: str) -> dict[str, Any]:
    prompt = obj.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise _Bad("'prompt' must be a non-empty list of chat messages")
    for i, msg in enumerate(prompt):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise _Bad(f"prompt message {i} must be an object with string 'role' and 'content'")
    rubrics = obj.get("rubrics")
    if not isinstance(rubrics, list) or not rubrics:
        raise _Bad("'rubrics' must be a non-empty list")
    rubric: list[dict[str, Any]] = []
    for i, item in enumerate(rubrics):
        criterion = item.get("criterion") if isinstance(item, Mapping) else None
        if not isinstance(criterion, str) or not criterion.strip():
            raise _Bad(f"rubric {i} must be an object with a non-empty string 'criterion'")
        points = item.get("points")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not math.isfinite(points):
            raise _Bad(f"rubric {i} must have numeric 'points', got {points!r}")
        item_tags = item.get("tags") or []
        if not isinstance(item_tags, list) or not all(isinstance(t, str) for t in item_tags):
            raise _Bad(f"rubric {i}: 'tags' must be a list of strings")
        # exactly the fields the rubric component reads (medreward.rewards.rubric.parse_rubric)
        rubric.append({"criterion": criterion, "points": points, "tags": list(item_tags)})
    tags = obj.get("example_tags", [])
    if not isinstance(tags, list):
        raise _Bad("'example_tags' must be a list")
    reference: dict[str, Any] = {"rubric": rubric}
    ideal = obj.get("ideal_completions_data")
    if isinstance(ideal, Mapping) and isinstance(ideal.get("ideal_completion"), str) and ideal["ideal_completion"].strip():
        reference["ideal_answer"] = ideal["ideal_completion"]
    known = {"prompt", "rubrics", "example_tags", "prompt_id"}
    return {
        "id": str(obj.get("prompt_id") or f"{source}-{line}"),
        "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
        "task": "healthbench",
        "reference": reference,
        "case": {"source": "healthbench", "line": line, "example_tags": list(tags),
                 "extra": {k: v for k, v in obj.items() if k not in known}},
    }  # fmt: skip


def _detect(obj: Mapping[str, Any]) -> str:
    if "rubrics" in obj:
        return "healthbench"
    if "opa" in obj:
        return "medmcqa"
    if isinstance(obj.get("options"), Mapping):
        return "medqa"
    if isinstance(obj.get("options"), list):
        return "generic"
    raise _Bad("unrecognised layout: expected MedQA (options dict), MedMCQA (opa..opd, cop), generic (options list) "
               "or HealthBench (prompt, rubrics) fields")  # fmt: skip


def _read_lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, decode error) for every line of a JSONL file (``.gz`` allowed)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        handle = opener(path, "rb")
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a JSONL file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    yield number, raw.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    yield number, None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
        except (OSError, EOFError) as exc:  # a truncated .gz
            raise InputError(f"cannot read {path}: {exc}") from None


def load_mcq(path: str | os.PathLike[str], layout: Layout = "auto", *, cop_base: Literal["auto", 0, 1] = "auto") -> McqLoadResult:
    """Read a JSONL file of MCQs (MedQA, MedMCQA, generic) or HealthBench items into cases.

    Args:
        path: a ``.jsonl`` (or ``.jsonl.gz``) file.
        layout: ``auto`` (recognised per line), ``medqa``, ``medmcqa``, ``generic`` or ``healthbench``.
        cop_base: MedMCQA's ``cop`` numbering: ``auto`` (see the module docstring), ``0`` or ``1``.

    Returns: an :class:`McqLoadResult`; malformed lines are in ``problems`` with their line number.
    Raises :class:`~medreward.errors.InputError` for a missing/unreadable file, a bad argument, or
    a MedMCQA file whose ``cop`` values mix both numberings.

    >>> import tempfile, json
    >>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write(json.dumps({"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 4}) + "\\n{oops\\n")
    >>> result = load_mcq(f.name)
    >>> result.cases[0]["reference"]["answer"], [str(p) for p in result.problems]
    ('D', ['line 2: invalid JSON (Expecting property name enclosed in double quotes at column 2)'])
    """
    if layout not in _LAYOUTS:
        raise InputError(f"unknown MCQ layout {layout!r}; choose one of {', '.join(_LAYOUTS)}")
    if cop_base not in ("auto", 0, 1):
        raise InputError(f"cop_base must be 'auto', 0 or 1, got {cop_base!r}")
    path = Path(path)
    source = path.name.split(".")[0] or "mcq"
    parsed: list[tuple[int, Any]] = []
    problems: list[LineProblem] = []
    for number, text, error in _read_lines(path):
        if error is not None:
            problems.append(LineProblem(number, error))
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(LineProblem(number, f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append(LineProblem(number, f"a line must be a JSON object, got {type(obj).__name__}"))
            continue
        parsed.append((number, obj))

    kinds: dict[int, str] = {}
    for number, obj in parsed:
        try:
            kinds[number] = _detect(obj) if layout == "auto" else layout
        except _Bad as exc:
            problems.append(LineProblem(number, str(exc)))

    notes: list[str] = []
    base = cop_base
    if base == "auto":
        cops = set()
        for number, obj in parsed:
            if kinds.get(number) == "medmcqa":
                try:
                    cops.add(_cop_value(obj))
                except _Bad:
                    pass
        if 0 in cops and 4 in cops:
            raise InputError(f"{path}: MedMCQA 'cop' values include both 0 and 4; pass cop_base=0 or cop_base=1")
        base = 0 if 0 in cops else 1
        if cops and not (0 in cops or 4 in cops):
            notes.append("MedMCQA cop values are all within 1-3: read as 1-based (the original release); "
                         "pass cop_base=0 for the Hugging Face copy")  # fmt: skip
        elif cops:
            notes.append(f"MedMCQA cop read as {base}-based")

    cases: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for number, obj in parsed:
        kind = kinds.get(number)
        if kind is None:
            continue
        try:
            if kind == "medqa":
                case = _medqa(obj, number, source)
            elif kind == "medmcqa":
                case = _medmcqa(obj, number, source, int(base))
            elif kind == "generic":
                case = _generic(obj, number, source)
            else:
                case = _healthbench(obj, number, source)
        except _Bad as exc:
            problems.append(LineProblem(number, f"{kind}: {exc}"))
            continue
        cases.append(case)
        counts[kind] = counts.get(kind, 0) + 1
    problems.sort(key=lambda p: p.line)
    for p in problems[:20]:
        log.warning("%s: %s", path, p)
    if len(problems) > 20:
        log.warning("%s: %d more malformed lines", path, len(problems) - 20)
    return McqLoadResult(cases, problems, counts, notes)


# -- generation -----------------------------------------------------------------------------
_FAMILIES = (
    frozenset({"opioids", "benzodiazepines", "sedative_hypnotics", "ethanol", "anticonvulsants"}),
    frozenset({"antidepressants", "antipsychotics", "anticholinergics"}),
    frozenset({"acetaminophen", "salicylates", "opioids"}),
    frozenset({"stimulants", "cannabinoids", "cardiovascular", "toxic_alcohols"}),
)


@dataclass(frozen=True)
class DrugClasses:
    """The toxicology classes (id → display name) and their generic member drugs."""

    names: dict[str, str]
    members: dict[str, tuple[str, ...]]


@lru_cache(maxsize=1)
def drug_classes() -> DrugClasses:
    """Class names from the toxicology vocabulary and, per class, the members that
    ``drug-named-entity-recognition`` knows under exactly that name (generic drug names; street
    names, brands and alternative spellings are dropped). Members claimed by two classes are dropped."""
    from drug_named_entity_recognition import find_drugs

    from ..vocab import load_vocabulary

    vocab = load_vocabulary("toxicology")
    names = {cid: cls.name for cid, cls in vocab.classes.items()}
    owners: dict[str, set[str]] = {}
    for cid, cls in vocab.classes.items():
        for member in cls.members:
            owners.setdefault(member.casefold(), set()).add(cid)
    members: dict[str, tuple[str, ...]] = {}
    for cid, cls in vocab.classes.items():
        kept = []
        for member in cls.members:
            if not member[:1].islower() or len(owners[member.casefold()]) > 1:
                continue
            found = find_drugs(member.split(), is_ignore_case=True)
            if found and _norm(found[0][0].get("name", "")) == _norm(member):
                kept.append(member)
        members[cid] = tuple(sorted(set(kept)))
    return DrugClasses(names, members)


def _family_weight(a: str, b: str) -> float:
    return 3.0 if any(a in f and b in f for f in _FAMILIES) else 1.0


def _weighted_sample(rng: random.Random, items: Sequence[str], weights: Sequence[float], k: int) -> list[str]:
    pool, w, out = list(items), list(weights), []
    for _ in range(min(k, len(pool))):
        i = rng.choices(range(len(pool)), weights=w)[0]
        out.append(pool.pop(i))
        w.pop(i)
    return out


def _drug_class_question(rng: random.Random, k: int) -> tuple[str, str, list[str], dict[str, Any]]:
    dc = drug_classes()
    cid = rng.choice([c for c in sorted(dc.members) if dc.members[c]])
    drug = rng.choice(dc.members[cid])
    others = [c for c in sorted(dc.names) if c != cid]
    distractors = _weighted_sample(rng, others, [_family_weight(cid, o) for o in others], k - 1)
    question = f"To which drug class does {drug} belong?"
    return question, dc.names[cid], [dc.names[o] for o in distractors], {"kind": "drug_class", "drug": drug, "class": cid}


def _class_member_question(rng: random.Random, k: int) -> tuple[str, str, list[str], dict[str, Any]]:
    dc = drug_classes()
    cid = rng.choice([c for c in sorted(dc.members) if dc.members[c]])
    drug = rng.choice(dc.members[cid])
    others = [c for c in sorted(dc.members) if c != cid and dc.members[c]]
    classes = _weighted_sample(rng, others, [_family_weight(cid, o) for o in others], k - 1)
    distractors = [rng.choice(dc.members[o]) for o in classes]
    question = f"Which of the following drugs belongs to the class '{dc.names[cid]}'?"
    return question, drug, distractors, {"kind": "class_member", "drug": drug, "class": cid}


def _chapter_title(title: str) -> str:
    return title.rsplit(" (", 1)[0] if title.endswith(")") else title  # drop "(A00-B99)": it gives the answer away


def _icd_chapter_question(rng: random.Random, k: int, show_title: float) -> tuple[str, str, list[str], dict[str, Any]]:
    from .icd_coding import icd, load_icd_index

    index = load_icd_index()
    chapters = list(index.billable)
    chapter = rng.choice(chapters)
    code = rng.choice(index.billable[chapter])
    pos = chapters.index(chapter)
    others = [c for c in chapters if c != chapter]
    distractors = _weighted_sample(rng, others, [1.0 / abs(chapters.index(o) - pos) for o in others], k - 1)
    title = icd().get_description(code)
    shown = rng.random() < show_title
    question = f"In which chapter of ICD-10-CM is the code {code}" + (f" ({title})" if shown else "") + " classified?"
    return (question, _chapter_title(index.chapter_titles[chapter]),
            [_chapter_title(index.chapter_titles[o]) for o in distractors],
            {"kind": "icd_chapter", "code": code, "chapter": chapter, "title_shown": shown})  # fmt: skip


_KINDS = ("drug_class", "class_member", "icd_chapter")


@dataclass(frozen=True)
class McqConfig:
    """Knobs of the MCQ generator.

    Args:
        n_options: options per question, 4 or 5 (the correct letter is balanced over them).
        kinds: weights of the question kinds (``drug_class``, ``class_member``, ``icd_chapter``).
        show_title: probability that an ``icd_chapter`` question shows the code's title.

    >>> McqConfig(n_options=4).kinds["icd_chapter"]
    1.0
    """

    n_options: int = 5
    kinds: Mapping[str, float] = field(default_factory=lambda: {k: 1.0 for k in _KINDS})
    show_title: float = 0.5

    def __post_init__(self) -> None:
        if self.n_options not in (4, 5) or isinstance(self.n_options, bool):
            raise TaskArgumentError(f"McqConfig.n_options must be 4 or 5, got {self.n_options!r}")
        unknown = set(self.kinds) - set(_KINDS)
        if unknown or not any(w > 0 for w in self.kinds.values()) or any(w < 0 for w in self.kinds.values()):
            raise TaskArgumentError(f"McqConfig.kinds must give non-negative weights to {', '.join(_KINDS)} (one > 0), got {dict(self.kinds)!r}")
        if isinstance(self.show_title, bool) or not 0.0 <= self.show_title <= 1.0:
            raise TaskArgumentError(f"McqConfig.show_title must be a probability in [0, 1], got {self.show_title!r}")


def _answer_letter(seed: int, index: int, k: int) -> str:
    block = list(LETTERS[:k])
    random.Random(f"{TASK}:{seed}:letters:{index // k}").shuffle(block)
    return block[index % k]


def iter_mcq_cases(n: int, seed: int, *, config: McqConfig | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``n`` generated MCQ cases (the same cases as :func:`generate_mcq`)."""
    check_count(n, TASK)
    config = config or McqConfig()
    kinds = [k for k in _KINDS if config.kinds.get(k, 0) > 0]
    weights = [config.kinds[k] for k in kinds]
    k = config.n_options
    for index in range(n):
        rng = random.Random(f"{TASK}:{seed}:{index}")
        kind = rng.choices(kinds, weights=weights)[0]
        if kind == "drug_class":
            question, correct, distractors, info = _drug_class_question(rng, k)
        elif kind == "class_member":
            question, correct, distractors, info = _class_member_question(rng, k)
        else:
            question, correct, distractors, info = _icd_chapter_question(rng, k, config.show_title)
        letter = _answer_letter(seed, index, k)
        rng.shuffle(distractors)
        texts = list(distractors)
        texts.insert(LETTERS.index(letter), correct)
        options = {LETTERS[i]: t for i, t in enumerate(texts)}
        yield mcq_case(f"{TASK}-{seed}-{index:05d}", question, options, letter, extra={"source": "generated", **info})


@register_task(
    TASK,
    description="Multiple-choice questions generated offline: drug -> class and class -> drug (toxicology vocabulary "
    "checked against drug-named-entity-recognition), ICD-10-CM code -> chapter; 5 options, letters balanced.",
    preset="mcq",
)
def generate_mcq(n: int, seed: int, *, config: McqConfig | None = None) -> list[dict[str, Any]]:
    """``n`` generated MCQ cases for ``seed`` (deterministic; see the module docstring).

    >>> [case] = generate_mcq(1, seed=0, config=McqConfig(kinds={"drug_class": 1.0}))
    >>> case["case"]["kind"], len(case["reference"]["options"])
    ('drug_class', 5)
    """
    return list(iter_mcq_cases(n, seed, config=config))
