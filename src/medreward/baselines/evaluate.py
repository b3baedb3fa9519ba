"""Evaluation of scored rollouts per policy: mean reward plus task metrics.

The mean reward comes from the Scorer (the task's preset or any spec); the task metrics are
computed from the completions and references, independent of the spec, by metric functions
registered per task:

.. code-block:: python

    from medreward.baselines.evaluate import MetricSet, register_metric, set_metrics

    @register_metric("icd_coding")
    def icd_metrics(records):                      # records: Sequence[ScoredRecord]
        pairs = [(parse_codes(r), r.record["reference"]["codes"]) for r in records]
        return set_metrics(pairs, prefix="code_")  # code_micro_f1, code_macro_f1, ...

    @register_metric("mcq")
    def mcq_metrics(records):
        return MetricSet({"accuracy": accuracy(pick(r) == r.record["reference"]["answer"] for r in records)})

A task may register several functions; their metrics are merged (a later function may not
reuse a metric name). Toxicology registers :func:`toxicology_metrics` here: micro-F1, macro-F1
and per-class F1 over the 14 classes, exact match and mean per-sample F1.

>>> from medreward.runner import Scorer
>>> records = [{"completion": "<think>x</think><answer>opioids</answer>", "reference": {"substances": ["opioids"]}},
...            {"completion": "<think>x</think><answer>none</answer>", "reference": {"substances": ["ethanol"]}}]
>>> result = evaluate(Scorer("toxicology").score(records), task="toxicology", policy="demo")
>>> result.n, round(result.mean_reward, 2), result.metrics["micro_f1"], result.per_class
(2, 0.55, 0.6666666666666666, {'opioids': 1.0, 'ethanol': 0.0})
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..parse.labels import parse_labels
from ..parse.tags import extract_section
from ..records import Rollout, ScoredRecord, Status
from ..vocab import load_vocabulary
from .base import load_builtin_policies

__all__ = [
    "EvaluationResult",
    "MetricFunction",
    "MetricSet",
    "accuracy",
    "evaluate",
    "evaluate_by_policy",
    "metric_functions",
    "register_metric",
    "set_metrics",
    "toxicology_metrics",
]


@dataclass(frozen=True)
class MetricSet:
    """What one metric function returns: named metrics and, optionally, a per-class score."""

    metrics: dict[str, float]
    per_class: dict[str, float] | None = None


MetricFunction = Callable[[Sequence[ScoredRecord]], MetricSet]


@dataclass(frozen=True)
class EvaluationResult:
    """One policy's evaluation on one task.

    ``n`` counts every record; ``mean_reward`` averages the rewards of ``ok`` records (``None``
    when there is none); ``statuses`` counts the scoring statuses.
    """

    policy: str
    task: str
    n: int
    mean_reward: float | None
    metrics: dict[str, float]
    per_class: dict[str, float] | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "task": self.task, "n": self.n, "mean_reward": self.mean_reward,
            "metrics": self.metrics, "per_class": self.per_class, "statuses": self.statuses,
        }  # fmt: skip


_METRICS: dict[str, list[MetricFunction]] = {}


def register_metric(task: str) -> Callable[[MetricFunction], MetricFunction]:
    """Register a metric function for ``task`` (decorator). Several per task are merged."""

    def decorator(fn: MetricFunction) -> MetricFunction:
        functions = _METRICS.setdefault(task, [])
        if fn not in functions:
            functions.append(fn)
        return fn

    return decorator


def metric_functions(task: str) -> list[MetricFunction]:
    """The metric functions registered for ``task`` (after importing the built-in baselines)."""
    load_builtin_policies()
    return list(_METRICS.get(task, ()))


# -- generic helpers ------------------------------------------------------------------------
def accuracy(correct: Iterable[bool]) -> float:
    """Share of ``True`` (0.0 for no items).

    >>> accuracy([True, False, True, True])
    0.75
    """
    flags = list(correct)
    return sum(1 for c in flags if c) / len(flags) if flags else 0.0


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def set_metrics(
    pairs: Iterable[tuple[Iterable[str], Iterable[str]]],
    *,
    labels: Sequence[str] | None = None,
    prefix: str = "",
) -> MetricSet:
    """Multi-label metrics of (predicted, true) label sets.

    ``micro_f1`` pools true/false positives and negatives over all labels; ``macro_f1`` averages
    the per-label F1 over the labels that occur in a reference or a prediction (a label never
    seen is left out rather than scored 0 or 1); ``exact_match`` is the share of identical sets;
    ``sample_f1`` the mean per-sample F1 (∅/∅ = 1, as the reward); ``precision``/``recall`` are
    micro-averaged; ``mean_predicted`` the mean predicted set size. With ``labels``, predictions
    outside them are ignored (they are counted in the reward, not here) and ``per_class`` is in
    that order.

    >>> m = set_metrics([({"a"}, {"a", "b"}), (set(), set())])
    >>> round(m.metrics["micro_f1"], 3), m.metrics["exact_match"], m.per_class
    (0.667, 0.5, {'a': 1.0, 'b': 0.0})
    """
    allowed = set(labels) if labels is not None else None
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    n = exact = 0
    sample_f1 = predicted_total = 0.0
    for predicted, true in pairs:
        p, t = set(predicted), set(true)
        if allowed is not None:
            p &= allowed
        n += 1
        exact += p == t
        common = p & t
        sample_f1 += _f1(len(common), len(p - t), len(t - p))
        predicted_total += len(p)
        tp.update(common)
        fp.update(p - t)
        fn.update(t - p)
    seen = set(tp) | set(fp) | set(fn)
    order = [c for c in labels if c in seen] if labels is not None else sorted(seen)
    per_class = {c: _f1(tp[c], fp[c], fn[c]) for c in order}
    TP, FP, FN = sum(tp.values()), sum(fp.values()), sum(fn.values())
    metrics = {
        "micro_f1": 2 * TP / (2 * TP + FP + FN) if TP + FP + FN else (1.0 if n else 0.0),
        "macro_f1": sum(per_class.values()) / len(per_class) if per_class else (1.0 if n else 0.0),
        "precision": TP / (TP + FP) if TP + FP else 0.0,
        "recall": TP / (TP + FN) if TP + FN else 0.0,
        "exact_match": exact / n if n else 0.0,
        "sample_f1": sample_f1 / n if n else 0.0,
        "mean_predicted": predicted_total / n if n else 0.0,
    }
    return MetricSet({prefix + k: v for k, v in metrics.items()}, per_class)


# -- toxicology -----------------------------------------------------------------------------
def _predicted_classes(record: Mapping[str, Any]) -> set[str]:
    """Vocabulary ids in the ``<answer>`` of a record's completion (∅ when there is none)."""
    vocab = load_vocabulary("toxicology")
    try:
        text = Rollout.from_dict(record).completion_text
    except Exception:  # noqa: BLE001 - a broken record predicts nothing; the scorer reports it
        return set()
    section = extract_section(text, "answer")
    if section is None:
        return set()
    ids: set[str] = set()
    for label in parse_labels(section.content).labels:
        ids.update(vocab.normalize(label) or ())
    return ids


@register_metric("toxicology")
def toxicology_metrics(records: Sequence[ScoredRecord]) -> MetricSet:
    """Micro/macro/per-class F1 over the 14 substance classes (DeToxR reports micro-F1).

    The prediction is read from the ``<answer>`` section as the ``multilabel`` reward reads it
    (labels → vocabulary ids); labels outside the vocabulary are not a class, so they lower the
    reward but not these class metrics.
    """
    from ..tasks.toxicology import CLASS_IDS

    pairs = []
    for r in records:
        reference = r.record.get("reference")
        if not isinstance(reference, Mapping) or not isinstance(reference.get("substances"), list):
            continue
        pairs.append((_predicted_classes(r.record), reference["substances"]))
    return set_metrics(pairs, labels=CLASS_IDS)


# -- evaluation -----------------------------------------------------------------------------
def evaluate(records: Sequence[ScoredRecord], *, task: str, policy: str) -> EvaluationResult:
    """Mean reward, statuses and the task's registered metrics over one policy's scored records."""
    statuses = Counter(r.status.value for r in records)
    rewards = [r.reward for r in records if r.status is Status.OK and r.reward is not None and math.isfinite(r.reward)]
    metrics: dict[str, float] = {}
    per_class: dict[str, float] | None = None
    for fn in metric_functions(task):
        result = fn(records)
        clash = set(result.metrics) & set(metrics)
        if clash:
            raise ValueError(f"metric names {sorted(clash)} of task {task!r} are produced twice")
        metrics.update(result.metrics)
        if result.per_class is not None:
            per_class = {**(per_class or {}), **result.per_class}
    return EvaluationResult(
        policy=policy,
        task=task,
        n=len(records),
        mean_reward=sum(rewards) / len(rewards) if rewards else None,
        metrics=metrics,
        per_class=per_class,
        statuses=dict(statuses),
    )


def evaluate_by_policy(records: Iterable[ScoredRecord], *, task: str, default_policy: str = "unknown") -> list[EvaluationResult]:
    """Group scored rollouts by their ``policy`` field (first-seen order) and evaluate each group."""
    groups: dict[str, list[ScoredRecord]] = {}
    for r in records:
        policy = r.record.get("policy")
        groups.setdefault(policy if isinstance(policy, str) and policy else default_policy, []).append(r)
    return [evaluate(group, task=task, policy=policy) for policy, group in groups.items()]
