"""Baseline policies and metrics for the ``icd_coding`` task.

* ``parent_code`` — **an oracle with slips**: it reads the true codes (``case["codes"]``) and emits
  the *parent* of each one (``simple_icd_10_cm.get_parent``: ``I21.4`` → ``I21``, ``E11.65`` →
  ``E11.6``, ``S72.001A`` → ``S72.001``), the classic under-specification error of coding one level
  too high. Every answer is a valid but non-billable code in the right category, so a hierarchical
  reward gives partial credit and an exact-match metric gives 0 — except for a 3-character
  billable code (``I10``), whose parent is a block, not a code: it is kept, and so correct.
* ``exact_lookup`` — a non-oracle string matcher: each listed diagnosis (without a parenthesised
  category context) is looked up verbatim, case-insensitively, among the titles and inclusion
  terms of the billable codes; unmatched lines get no code. It measures how much of the task is
  plain lookup (the notes reuse the classification's wording).
* ``common_codes`` — always ``I10, E11.9`` (essential hypertension and type 2 diabetes without
  complications, the most frequent diagnoses of US outpatient claims), ignoring the case.

Metrics (registered for ``icd_coding`` in :mod:`medreward.baselines.evaluate`): exact-match set
metrics over codes, prefixed ``code_`` — ``code_micro_f1`` (the headline), ``code_precision``,
``code_recall``, ``code_exact_match``, ``code_sample_f1`` (mean per-case F1) — computed with
:func:`~medreward.baselines.evaluate.set_metrics` on the codes found in the ``<answer>``
(:func:`answer_codes`, the reward's parser; no partial credit for a parent or sibling code).

>>> import random
>>> parent_code_policy({"case": {"codes": ["I21.4", "E11.9"]}}, random.Random(0)).splitlines()[-1]
'<answer>I21, E11</answer>'
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..parse.icd import asserted_codes, normalize_icd_code
from ..parse.tags import extract_section
from ..records import Rollout, ScoredRecord, conversation_text
from ..tasks.icd_coding import icd, load_icd_index
from .base import register_policy
from .evaluate import MetricSet, register_metric, set_metrics

__all__ = ["answer_codes", "common_codes_policy", "exact_lookup_policy", "icd_metrics", "parent_code_policy"]

TASK = "icd_coding"


def answer_codes(text: str) -> list[str]:
    """Codes in the ``<answer>`` section of a completion, read as the reward reads them
    (:func:`medreward.parse.icd.asserted_codes`: normalised, deduplicated, block ranges and
    words such as ``HbA1c`` are not codes, negated codes are not predicted). No ``<answer>`` →
    no codes.

    >>> answer_codes("<think>…</think><answer>E11.9, i10; Z79.4 and E11.9</answer>")
    ['E11.9', 'I10', 'Z79.4']
    >>> answer_codes("<answer>E11.9; rule out I10</answer>")
    ['E11.9']
    """
    section = extract_section(text, "answer")
    return [] if section is None else list(asserted_codes(section.content))


def _completion(reasoning: str, codes: Sequence[str]) -> str:
    return f"<think>{reasoning}</think>\n<answer>{', '.join(codes)}</answer>"


@register_policy(TASK, "parent_code", description="ORACLE WITH SLIPS: reads the true codes and answers the parent of "
                 "each (I21.4 -> I21, S72.001A -> S72.001): right category, not billable (3-character codes kept).")
def parent_code_policy(case: dict[str, Any], rng: random.Random) -> str:
    cm = icd()
    parents = []
    for code in case["case"]["codes"]:
        parent = cm.get_parent(code)
        # a 3-character billable code (I10) has a block above it, not a code: it is kept as is
        parents.append(code if not parent or cm.is_chapter_or_block(parent) else parent)
    return _completion("Coding each diagnosis to its category.", list(dict.fromkeys(parents)))


@lru_cache(maxsize=1)
def _lookup_table() -> dict[str, str]:
    cm = icd()
    table: dict[str, str] = {}
    for codes in load_icd_index().billable.values():
        for code in codes:  # tabular order: a text shared by several codes maps to the first
            for text in (cm.get_description(code), *cm.get_inclusion_term(code)):
                table.setdefault(" ".join(text.casefold().split()), code)
    return table


def _diagnosis_lines(case: Mapping[str, Any]) -> list[str]:
    prompt = case.get("prompt")
    text = conversation_text(prompt, roles=("user",)) if isinstance(prompt, list) else str(prompt or "")
    lines = []
    for line in text.splitlines():
        head, sep, rest = line.partition(". ")
        if sep and head.strip().isdigit():
            lines.append(rest.strip())
    return lines


@register_policy(TASK, "exact_lookup", description="Looks each listed diagnosis up verbatim among ICD-10-CM titles and "
                 "inclusion terms (category context in parentheses dropped); reads the prompt only.")
def exact_lookup_policy(case: dict[str, Any], rng: random.Random) -> str:
    table = _lookup_table()
    codes = []
    for line in _diagnosis_lines(case):
        key = " ".join(line.casefold().split())
        code = table.get(key)
        if code is None and key.endswith(")") and " (" in key:
            code = table.get(key[: key.rindex(" (")])
        if code is not None:
            codes.append(code)
    return _completion("Matching each diagnosis to the tabular list wording.", list(dict.fromkeys(codes)))


@register_policy(TASK, "common_codes", description="Always 'I10, E11.9' (the commonest outpatient diagnoses), "
                 "ignoring the case.")
def common_codes_policy(case: dict[str, Any], rng: random.Random) -> str:
    return _completion("Hypertension and type 2 diabetes are the most common diagnoses.", ["I10", "E11.9"])


@register_metric(TASK)
def icd_metrics(records: Sequence[ScoredRecord]) -> MetricSet:
    """Exact-match code metrics (``code_micro_f1`` …) over the codes of each ``<answer>``."""
    pairs = []
    for r in records:
        reference = r.record.get("reference")
        if not isinstance(reference, Mapping) or not isinstance(reference.get("codes"), list):
            continue
        truth = [c for c in (normalize_icd_code(str(x)) for x in reference["codes"]) if c is not None]
        try:
            text = Rollout.from_dict(r.record).completion_text
        except Exception:  # noqa: BLE001 - a broken record predicts nothing; the scorer reports it
            text = ""
        pairs.append((answer_codes(text), truth))
    result = set_metrics(pairs, prefix="code_")
    # macro-F1 and per-code F1 over ~75k possible codes, each seen a handful of times, are noise
    kept = ("code_micro_f1", "code_precision", "code_recall", "code_exact_match", "code_sample_f1")
    return MetricSet({k: result.metrics[k] for k in kept})
