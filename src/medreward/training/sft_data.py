"""SFT cold-start data from the task library: ``<think>reasoning</think><answer>reference</answer>``.

A small policy must first learn the answer format before GRPO can reward it (SmolLM2-135M-Instruct
writes ``<think>…</think><answer>…</answer>`` in under 1% of its samples untrained), so the cold
start teaches the format on the tasks' own cases, with the **reference as the answer** and
reasoning that is true to the case:

* ``toxicology`` — the toxidrome baseline's evidence for each reference class (the findings that
  point to it: vitals, pupils, ECG, labs; :func:`~medreward.baselines.toxicology.toxidrome_evidence`)
  and the history baseline's reading of the scene (:func:`~medreward.baselines.toxicology.history_classes`):
  which named substances the findings support and which they do not;
* ``calculator`` — medcalc-bench's own step-by-step explanation of the calculation (the
  ``*_explanation`` functions of the installed ``medcalc`` package, called with the case's
  parameters), or a template naming the inputs when medcalc gives no explanation;
* ``mcq`` — a template: the question's subject, then the chosen option with its text;
* ``icd_coding`` — a template: each documented diagnosis with its code.

Each example is conversational (what TRL's ``SFTTrainer`` applies the chat template to):
``{"prompt": [system, user messages], "completion": [{"role": "assistant", "content": ...}],
"task": ..., "id": ...}``; the loss is on the completion only (TRL's default for
prompt-completion data).

>>> from medreward.tasks.toxicology import generate_toxicology
>>> [case] = generate_toxicology(1, seed=0)
>>> text = sft_completion(case)
>>> text.startswith("<think>") and text.endswith("<answer>ethanol</answer>")
True
"""

from __future__ import annotations

import importlib
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medreward.errors import InputError

__all__ = ["build_sft_examples", "completion_text", "reasoning", "sft_completion", "sft_example"]

log = logging.getLogger(__name__)

_MAX_REASONING_CHARS = 1500  # medcalc explanations can be long; the cold start needs the format, not essays


def completion_text(reasoning_text: str, answer: str) -> str:
    """The target format of the presets."""
    return f"<think>{reasoning_text.strip()}</think>\n<answer>{answer}</answer>"


def _reference(case: Mapping[str, Any]) -> Mapping[str, Any]:
    reference = case.get("reference")
    if not isinstance(reference, Mapping) or not reference:
        raise InputError(f"case {case.get('id', '?')!r} has no reference: SFT data needs the reference as the answer")
    return reference


# -- toxicology --------------------------------------------------------------------------------
def _toxicology(case: Mapping[str, Any]) -> tuple[str, str]:
    from medreward.baselines.toxicology import history_classes, toxidrome_evidence
    from medreward.tasks.toxicology import CLASS_IDS, observed_findings

    reference = _reference(case)
    truth = reference.get("substances")
    if not isinstance(truth, list):
        raise InputError(f"case {case.get('id', '?')!r}: a toxicology reference needs 'substances' (a list)")
    classes = [c for c in CLASS_IDS if c in set(truth)]
    lines: list[str] = []
    structured = case.get("case")
    evidence = {}
    if isinstance(structured, Mapping) and isinstance(structured.get("vitals"), Mapping):
        evidence = toxidrome_evidence(observed_findings(structured))
    for c in classes:
        reasons = evidence[c].reasons[:4] if c in evidence else []
        lines.append(f"{c}: " + (", ".join(reasons) if reasons else "suggested by the history and the overall picture") + ".")
    named = history_classes(case)
    supported = [c for c in named if c in classes]
    unsupported = [c for c in named if c not in classes]
    if supported:
        lines.append("The history is consistent: " + ", ".join(supported) + ".")
    if unsupported:
        them = "it" if len(unsupported) == 1 else "them"
        lines.append("The history also mentions " + ", ".join(unsupported) + f", but the findings do not support {them}.")
    if not classes:
        lines.append("No toxidrome is present and the findings do not point to an intoxicant.")
    answer = ", ".join(classes) if classes else "none"
    return " ".join(lines), answer


# -- calculators -------------------------------------------------------------------------------
def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _calculator(case: Mapping[str, Any]) -> tuple[str, str]:
    from medreward.tasks.calculators import CALCULATORS, _as_medcalc

    reference = _reference(case)
    if "value" not in reference:
        raise InputError(f"case {case.get('id', '?')!r}: a calculator reference needs 'value'")
    value = reference["value"]
    unit = reference.get("unit")
    answer = f"{_number(value)} {unit}" if unit else _number(value)
    structured = case.get("case") if isinstance(case.get("case"), Mapping) else {}
    calc = CALCULATORS.get(str(structured.get("calculator")))
    explanation = None
    if calc is not None and isinstance(structured.get("params"), Mapping):
        try:
            raw = getattr(importlib.import_module(f"medcalc.{calc.module}"), calc.function)(_as_medcalc(structured["params"]))
            if isinstance(raw, Mapping) and isinstance(raw.get("Explanation"), str):
                # medcalc's texts carry source indentation: one space between words, lines kept
                explanation = "\n".join(" ".join(line.split()) for line in raw["Explanation"].strip().splitlines())
        except Exception as exc:  # a medcalc quirk must not stop the data build: the template covers it
            log.debug("medcalc explanation failed for %s: %s", calc.id, exc)
    if explanation:
        if len(explanation) > _MAX_REASONING_CHARS:  # keep the start (inputs, formula) and the end (result)
            half = _MAX_REASONING_CHARS // 2
            explanation = explanation[:half].rsplit(" ", 1)[0] + " … " + explanation[-half:].split(" ", 1)[-1]
        return explanation, answer
    name = calc.name if calc is not None else "requested value"
    mentions = structured.get("mentions") if isinstance(structured.get("mentions"), Mapping) else {}
    inputs = "; ".join(str(m) for m in mentions.values())
    text = f"The question asks for the {name}." + (f" From the note: {inputs}." if inputs else "")
    return text + f" Applying the formula gives {answer}.", answer


# -- mcq, icd ----------------------------------------------------------------------------------
def _mcq(case: Mapping[str, Any]) -> tuple[str, str]:
    reference = _reference(case)
    letter = reference.get("answer")
    if not isinstance(letter, str) or not letter:
        raise InputError(f"case {case.get('id', '?')!r}: an mcq reference needs 'answer' (the letter)")
    options = reference.get("options") if isinstance(reference.get("options"), Mapping) else {}
    structured = case.get("case") if isinstance(case.get("case"), Mapping) else {}
    question = str(structured.get("question") or "").strip()
    text = (f"The question: {question} " if question else "") + "Weighing the options, "
    chosen = options.get(letter)
    text += f"option {letter} ({chosen}) is the best answer." if chosen else f"option {letter} is the best answer."
    return text, letter


def _icd(case: Mapping[str, Any]) -> tuple[str, str]:
    reference = _reference(case)
    codes = reference.get("codes")
    if not isinstance(codes, list) or not codes:
        raise InputError(f"case {case.get('id', '?')!r}: an icd_coding reference needs 'codes' (a non-empty list)")
    structured = case.get("case") if isinstance(case.get("case"), Mapping) else {}
    titles = structured.get("titles") if isinstance(structured.get("titles"), list) else []
    if len(titles) == len(codes):
        text = " ".join(f"{title}: {code}." for title, code in zip(titles, codes))
    else:
        text = "The documented diagnoses map to " + ", ".join(codes) + "."
    return "Coding each documented diagnosis to its most specific billable code. " + text, ", ".join(codes)


_BUILDERS = {"toxicology": _toxicology, "calculator": _calculator, "mcq": _mcq, "icd_coding": _icd}


def reasoning(case: Mapping[str, Any]) -> tuple[str, str]:
    """``(reasoning, answer)`` for a case of a supported task (``case["task"]``)."""
    task = case.get("task")
    builder = _BUILDERS.get(str(task))
    if builder is None:
        raise InputError(f"no SFT template for task {task!r}; supported: {', '.join(sorted(_BUILDERS))}")
    return builder(case)


def sft_completion(case: Mapping[str, Any]) -> str:
    """The target completion of a case: ``<think>reasoning</think>\\n<answer>reference</answer>``."""
    return completion_text(*reasoning(case))


def _messages(prompt: Any, case_id: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in prompt):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    raise InputError(f"case {case_id!r}: 'prompt' must be a string or a list of {{role, content}} messages")


def sft_example(case: Mapping[str, Any]) -> dict[str, Any]:
    """One conversational prompt-completion example for TRL's ``SFTTrainer``."""
    return {
        "id": str(case.get("id", "")),
        "task": str(case.get("task")),
        "prompt": _messages(case.get("prompt"), case.get("id")),
        "completion": [{"role": "assistant", "content": sft_completion(case)}],
    }


def build_sft_examples(cases: Iterable[Mapping[str, Any]], *, shuffle_seed: int | None = 0) -> list[dict[str, Any]]:
    """SFT examples for cases of any supported tasks, interleaved (shuffled with ``shuffle_seed``;
    ``None`` keeps the order)."""
    out = [sft_example(case) for case in cases]
    if not out:
        raise InputError("no cases to build SFT data from")
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(out)
    return out


def generate_cases(tasks: Sequence[str], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` cases split evenly over ``tasks`` (the first tasks get the remainder), each task's
    generator called with ``seed``."""
    from medreward.tasks.base import get_task

    out: list[dict[str, Any]] = []
    for i, task in enumerate(tasks):
        count = n // len(tasks) + (1 if i < n % len(tasks) else 0)
        if count:
            out.extend(get_task(task).generate(count, seed))
    return out
