"""Reward benchmark: does a spec rank a correct completion above wrong ones?

Preference items hold one (or more) *chosen* completions and several *rejected* ones for one
prompt. :func:`build_preferences` makes them from cases: the gold completion against
counterfactual corruptions of it (:mod:`medreward.audit.corruptions`); :func:`read_preferences`
reads them from JSONL (RewardBench-1 ``chosen``/``rejected`` strings, or RewardBench-2 lists).
:func:`run_benchmark` scores every completion with a spec in one batch and reports three
accuracies, each with the tie rule of its reference implementation:

* **pairwise accuracy** (RewardBench 1): each (chosen, rejected) pair counts 1 when
  ``chosen > rejected`` and 0 otherwise, **a tie counts 0** — allenai/reward-bench
  ``scripts/run_rm.py`` line 265 (``results = [1 if chosen > rejected else 0 ...]``) and
  ``rewardbench/rewardbench.py`` line 505, commit 05a9005e. An item with one chosen and k
  rejected completions gives k pairs (several chosen: every chosen × rejected pair);
  the accuracy is over pairs.
* **best-of-4 accuracy** (RewardBench 2): the scores of the candidates, chosen first, then
  ``1 / (number of candidates at the maximum)`` if the chosen one is at the maximum, else 0 — a
  tie with k-1 rejected ones earns ``1/k``, as RB2 penalises ties —
  ``rewardbench/utils.py`` lines 569-572 (``reroll_and_score_dataset``), used by
  ``scripts/run_v2.py``. Only items with exactly one chosen and three rejected completions
  (the RB2 layout) count; RB2's separate *Ties* subset score is not implemented.
* **one-to-many accuracy** (RewardMATH): 1 when ``min(chosen) > max(rejected)``, so any tie
  with a rejected completion counts 0; ``one_to_many_accuracy_with_ties`` uses ``>=`` and
  ``mrr`` is the mean reciprocal rank of the first chosen completion when a tie sorts the
  rejected one first — kimsh0507/RewardMATH_official ``src/evaluation/eval.py`` lines 374-376
  (``reward Acc``, ``reward Acc (w/ tie)``, ``reward MRR``) and 310-325 (``_calculate_MRR``),
  commit cde06ab3.

A completion scored with a status other than ``ok`` is an error, never a low reward: it is
counted in ``n_error`` and its whole item is left out of every accuracy (``n_excluded``).

>>> pairwise_result(1.0, 1.0), best_of_n_result(1.0, [1.0, 0.2, 0.0]), one_to_many_result([1.0], [1.0, 0.0])
(0, 0.5, False)
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .cases import gold_completion
from .corruptions import Corruption, get_corruption, list_corruptions
from .scoring import open_scorer, score_all

__all__ = [
    "BenchmarkReport",
    "PreferenceItem",
    "best_of_n_result",
    "build_preferences",
    "one_to_many_result",
    "pairwise_result",
    "read_preferences",
    "reciprocal_rank",
    "run_benchmark",
]

log = logging.getLogger(__name__)

#: fields of a case that are not carried into the records scored for its completions
_NOT_CONTEXT = ("id", "prompt", "completion", "gold", "chosen", "rejected", "source")


@dataclass(frozen=True)
class PreferenceItem:
    """One prompt with its chosen and rejected completions.

    ``source`` names where each rejected completion came from (the corruption's name, or the
    subset of an external file), aligned with ``rejected``. ``context`` holds the other fields of
    the case (``task``, ``reference``…) and goes into every record scored for this item, so rule
    rewards that read the reference can score it.
    """

    id: str
    prompt: str | list[dict[str, Any]]
    chosen: list[Any]
    rejected: list[Any]
    source: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSONL form that :func:`read_preferences` reads back."""
        return {**self.context, "id": self.id, "prompt": self.prompt, "chosen": list(self.chosen),
                "rejected": list(self.rejected), "source": list(self.source)}  # fmt: skip


# -- the three metrics ----------------------------------------------------------------------


def pairwise_result(chosen: float, rejected: float) -> int:
    """RewardBench 1: 1 if ``chosen > rejected`` else 0 (a tie is 0; ``scripts/run_rm.py`` l. 265).

    >>> pairwise_result(0.9, 0.1), pairwise_result(0.5, 0.5), pairwise_result(0.1, 0.9)
    (1, 0, 0)
    """
    return 1 if chosen > rejected else 0


def best_of_n_result(chosen: float, rejected: Sequence[float]) -> float:
    """RewardBench 2: ``1/#max`` if the chosen score is the maximum of all candidates, else 0
    (``rewardbench/utils.py`` l. 569-572: ``(1 / np.sum(scores == max_val)) if scores[0] ==
    max_val else 0``).

    >>> best_of_n_result(1.0, [0.5, 0.2, 0.0]), best_of_n_result(1.0, [1.0, 1.0, 0.0])
    (1.0, 0.3333333333333333)
    >>> best_of_n_result(1.0, [1.0, 1.0, 1.0]), best_of_n_result(0.2, [0.5, 0.1, 0.0])
    (0.25, 0.0)
    """
    scores = [chosen, *rejected]
    top = max(scores)
    return 1.0 / sum(1 for s in scores if s == top) if chosen == top else 0.0


def one_to_many_result(chosen: Sequence[float], rejected: Sequence[float], *, ties_win: bool = False) -> bool:
    """RewardMATH: ``min(chosen) > max(rejected)`` (``>=`` with ``ties_win``; ``eval.py`` l. 374-375).

    >>> one_to_many_result([0.9], [0.1, 0.5]), one_to_many_result([0.9], [0.1, 0.9])
    (True, False)
    >>> one_to_many_result([0.9], [0.1, 0.9], ties_win=True)
    True
    """
    low, high = min(chosen), max(rejected)
    return low >= high if ties_win else low > high


def reciprocal_rank(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """1 / rank of the first chosen completion when all are sorted by score, highest first, a
    rejected one before a chosen one of the same score (RewardMATH ``_calculate_MRR``: it sorts
    ``(score, "cho"|"rej")`` descending, and ``"rej" > "cho"``).

    >>> reciprocal_rank([0.9], [0.1, 0.5]), reciprocal_rank([0.5], [0.9, 0.5, 0.1])
    (1.0, 0.3333333333333333)
    """
    ranked = sorted([(s, "rej") for s in rejected] + [(s, "cho") for s in chosen], reverse=True)
    first = next(i for i, (_, kind) in enumerate(ranked, start=1) if kind == "cho")
    return 1.0 / first


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkReport:
    """What :func:`run_benchmark` measured. Accuracies are ``None`` (see ``note``) when no item
    could be used; ``per_corruption`` is the pairwise accuracy (and tie fraction) of the chosen
    completions against the rejected ones of each source."""

    spec: str
    n_items: int
    n_scored: int
    n_excluded: int
    n_error: int
    n_pairs: int
    pairwise_accuracy: float | None
    n_best_of_4: int
    best_of_4_accuracy: float | None
    one_to_many_accuracy: float | None
    one_to_many_accuracy_with_ties: float | None
    mrr: float | None
    mean_chosen: float | None
    mean_rejected: float | None
    per_corruption: dict[str, dict[str, Any]]
    errors: list[str]
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "n_items": self.n_items, "n_scored": self.n_scored, "n_excluded": self.n_excluded,
            "n_error": self.n_error, "n_pairs": self.n_pairs, "pairwise_accuracy": self.pairwise_accuracy,
            "n_best_of_4": self.n_best_of_4, "best_of_4_accuracy": self.best_of_4_accuracy,
            "one_to_many_accuracy": self.one_to_many_accuracy,
            "one_to_many_accuracy_with_ties": self.one_to_many_accuracy_with_ties, "mrr": self.mrr,
            "mean_chosen": self.mean_chosen, "mean_rejected": self.mean_rejected,
            "per_corruption": {k: dict(v) for k, v in self.per_corruption.items()},
            "errors": list(self.errors), "note": self.note,
        }  # fmt: skip


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def benchmark_from_scores(
    items: Sequence[PreferenceItem],
    chosen_scores: Sequence[Sequence[float | None]],
    rejected_scores: Sequence[Sequence[float | None]],
    *,
    spec: str = "",
    errors: Sequence[str] = (),
) -> BenchmarkReport:
    """The report for scores already computed (``None``: the completion errored), aligned with
    ``items`` — the pure part of :func:`run_benchmark`, usable with any scorer's numbers.

    >>> item = PreferenceItem("1", "q", ["good"], ["bad", "worse", "odd"], ["a", "b", "c"])
    >>> r = benchmark_from_scores([item], [[1.0]], [[0.0, 1.0, 0.5]])
    >>> r.pairwise_accuracy, r.best_of_4_accuracy, r.one_to_many_accuracy, r.per_corruption["b"]
    (0.6666666666666666, 0.5, 0.0, {'n': 1, 'accuracy': 0.0, 'ties': 1})
    """
    pairs: list[int] = []
    best: list[float] = []
    strict: list[bool] = []
    with_ties: list[bool] = []
    ranks: list[float] = []
    all_chosen: list[float] = []
    all_rejected: list[float] = []
    per: dict[str, list[int]] = {}
    per_ties: dict[str, int] = {}
    n_error = n_excluded = 0
    notes: list[str] = []
    for item, cs, rs in zip(items, chosen_scores, rejected_scores, strict=True):
        bad = sum(1 for s in [*cs, *rs] if s is None)
        if bad:
            n_error += bad
            n_excluded += 1
            continue
        c = [float(s) for s in cs]  # type: ignore[arg-type]
        r = [float(s) for s in rs]  # type: ignore[arg-type]
        all_chosen += c
        all_rejected += r
        sources = item.source if len(item.source) == len(r) else ["unlabelled"] * len(r)
        for name, rej in zip(sources, r):
            for cho in c:
                won = pairwise_result(cho, rej)
                pairs.append(won)
                per.setdefault(name, []).append(won)
                per_ties[name] = per_ties.get(name, 0) + (cho == rej)
        if len(c) == 1 and len(r) == 3:
            best.append(best_of_n_result(c[0], r))
        strict.append(one_to_many_result(c, r))
        with_ties.append(one_to_many_result(c, r, ties_win=True))
        ranks.append(reciprocal_rank(c, r))
    n_scored = len(strict)
    if not items:
        notes.append("no preference items")
    elif not n_scored:
        notes.append("every item had a completion that could not be scored (see errors)")
    if n_excluded:
        notes.append(f"{n_excluded} item(s) left out: {n_error} completion(s) scored with a status other than ok")
    if n_scored and not best:
        notes.append("best-of-4 needs items with one chosen and three rejected completions (RewardBench 2 layout); none here")
    elif n_scored and len(best) < n_scored:
        notes.append(f"best-of-4 over the {len(best)} of {n_scored} items with one chosen and three rejected completions")
    return BenchmarkReport(
        spec=spec, n_items=len(items), n_scored=n_scored, n_excluded=n_excluded, n_error=n_error, n_pairs=len(pairs),
        pairwise_accuracy=_mean(pairs), n_best_of_4=len(best), best_of_4_accuracy=_mean(best),
        one_to_many_accuracy=_mean([float(x) for x in strict]),
        one_to_many_accuracy_with_ties=_mean([float(x) for x in with_ties]), mrr=_mean(ranks),
        mean_chosen=_mean(all_chosen), mean_rejected=_mean(all_rejected),
        per_corruption={k: {"n": len(v), "accuracy": _mean(v), "ties": per_ties[k]} for k, v in sorted(per.items())},
        errors=list(dict.fromkeys(errors))[:10], note="; ".join(notes),
    )  # fmt: skip


def run_benchmark(spec_or_scorer: Any, items: Sequence[PreferenceItem], *, progress: bool = False) -> BenchmarkReport:
    """Score every completion of ``items`` with a spec (anything :class:`~medreward.runner.Scorer`
    takes, or a built ``Scorer``, reused) in one batch, and report RB1 / RB2 / RewardMATH accuracies.

    Each completion is scored as the record ``{**item.context, "id", "prompt", "completion"}``.
    """
    items = list(items)
    scorer, own = open_scorer(spec_or_scorer)
    try:
        records: list[dict[str, Any]] = []
        for item in items:
            base = {**item.context, "prompt": item.prompt}
            records += [{**base, "id": f"{item.id}/chosen/{i}", "completion": c} for i, c in enumerate(item.chosen)]
            records += [{**base, "id": f"{item.id}/rejected/{i}", "completion": c} for i, c in enumerate(item.rejected)]
        scored = score_all(scorer, records, "benchmark", progress)
    finally:
        if own:
            scorer.close()
    values: list[float | None] = []
    errors: list[str] = []
    for rec in scored:
        if rec.status.value == "ok" and rec.reward is not None:
            values.append(rec.reward)
        else:
            values.append(None)
            errors.append(f"{rec.status.value}: {rec.info.get('error') or rec.info.get('reason') or _why(rec.info)}")
    chosen: list[list[float | None]] = []
    rejected: list[list[float | None]] = []
    at = 0
    for item in items:
        chosen.append(values[at : at + len(item.chosen)])
        at += len(item.chosen)
        rejected.append(values[at : at + len(item.rejected)])
        at += len(item.rejected)
    return benchmark_from_scores(items, chosen, rejected, spec=scorer.spec.name, errors=errors)


def _why(info: Mapping[str, Any]) -> str:
    """A short reason from a not-ok record's info (the first component's reason or error)."""
    for value in info.values():
        if isinstance(value, Mapping):
            for key in ("error", "reason"):
                if value.get(key):
                    return str(value[key])
    return "no reason given"


# -- building items from cases --------------------------------------------------------------


def build_preferences(
    cases: Iterable[Mapping[str, Any]],
    *,
    n_rejected: int = 3,
    seed: int = 0,
    corruptions: Sequence[str | Corruption] | None = None,
) -> list[PreferenceItem]:
    """Preference items from cases: the gold completion (chosen) against ``n_rejected`` distinct
    corruptions of it (rejected), drawn round-robin over the corruptions that apply to the case's
    task (in an order shuffled per case), so the kinds spread before any repeats; only a kind that
    changes the answer is drawn again (``flip_letter`` gives another wrong letter), a
    reasoning-only kind (``hallucinated_finding``) at most once per item.

    Deterministic for a ``seed`` (each case draws from ``Random(f"{seed}:{id}")``). A case
    without a gold completion, or where no corruption applies, is skipped (logged); a case where
    fewer than ``n_rejected`` distinct corruptions exist keeps the ones found.
    """
    if n_rejected < 1:
        raise ValueError(f"n_rejected must be >= 1, got {n_rejected}")
    chosen_kinds = None if corruptions is None else [c if isinstance(c, Corruption) else get_corruption(c) for c in corruptions]
    items: list[PreferenceItem] = []
    skipped = {"no gold": 0, "no corruption": 0}
    for index, case in enumerate(cases):
        case_id = str(case.get("id") if case.get("id") is not None else f"case-{index}")
        gold = gold_completion(case)
        if gold is None:
            skipped["no gold"] += 1
            continue
        task = case.get("task")
        kinds = [c for c in (chosen_kinds or list_corruptions(task)) if c.applies_to(task)]
        rng = random.Random(f"{seed}:{case_id}")
        rng.shuffle(kinds)
        rejected: list[str] = []
        source: list[str] = []
        for round_ in range(1 + 3 * n_rejected):  # later rounds: an answer kind may give another (another letter)
            for kind in kinds:
                if len(rejected) == n_rejected:
                    break
                if round_ and kind.changes != "answer":
                    continue  # a second hallucinated finding is not a new kind of error
                text = kind.transform(case, gold, rng)
                if text is not None and text != gold and text not in rejected:
                    rejected.append(text)
                    source.append(kind.name)
        if not rejected:
            skipped["no corruption"] += 1
            continue
        context = {k: v for k, v in case.items() if k not in _NOT_CONTEXT}
        items.append(PreferenceItem(case_id, case.get("prompt", ""), [gold], rejected, source, context))
    if any(skipped.values()):
        log.warning("build_preferences skipped %s", ", ".join(f"{n} case(s): {why}" for why, n in skipped.items() if n))
    return items


# -- reading items from JSONL ---------------------------------------------------------------


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


def _completions(value: Any, name: str, where: str) -> list[Any]:
    """``chosen``/``rejected``: a string, a conversation, or a non-empty list of either."""
    if isinstance(value, str) or _is_messages(value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) or _is_messages(v) for v in value):
        return list(value)
    if isinstance(value, list) and not value:
        raise InputError(f"{where}: {name!r} is an empty list (give at least one completion)")
    raise InputError(
        f"{where}: {name!r} must be a string, a list of strings, or chat messages [{{role, content}}], "
        f"got {type(value).__name__}"
    )


def read_preferences(path: str | Path, *, limit: int | None = None) -> list[PreferenceItem]:
    """Preference items from a JSONL file (``.jsonl`` or ``.jsonl.gz``), one object a line:

    * RewardBench 1: ``{"prompt": ..., "chosen": "...", "rejected": "..."}``;
    * RewardBench 2: ``{"prompt": ..., "chosen": ["..."], "rejected": ["...", "...", "..."]}``;

    ``prompt`` a string or chat messages (``[{"role", "content"}]``); ``id`` optional (default
    ``line-N``); ``source`` (a string or a list aligned with ``rejected``) or RB2's ``subset``
    names the rejected completions in ``per_corruption``. Other fields (``task``,
    ``reference``…) go into the scored records. A malformed line raises :class:`InputError`
    naming its line number.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"preference file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"preference path {str(path)!r} is a directory, not a file")
    items: list[PreferenceItem] = []
    try:
        handle = gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")  # noqa: SIM115
        with handle:
            for line_no, line in enumerate(handle, start=1):
                if limit is not None and len(items) >= limit:
                    break
                if not line.strip():
                    continue
                items.append(_preference(line, f"{path.name}: line {line_no}", line_no))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: not valid UTF-8 ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc}") from None
    return items


def _preference(line: str, where: str, line_no: int) -> PreferenceItem:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in obj]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(repr(k) for k in missing)} (a preference line needs prompt, chosen, rejected)")
    prompt = obj["prompt"]
    if not isinstance(prompt, str) and not _is_messages(prompt):
        raise InputError(f"{where}: 'prompt' must be a string or chat messages [{{role, content}}], got {type(prompt).__name__}")
    chosen = _completions(obj["chosen"], "chosen", where)
    rejected = _completions(obj["rejected"], "rejected", where)
    raw_source = obj.get("source", obj.get("subset"))
    if isinstance(raw_source, list) and len(raw_source) == len(rejected) and all(isinstance(s, str) for s in raw_source):
        source = list(raw_source)
    elif isinstance(raw_source, str):
        source = [raw_source] * len(rejected)
    elif raw_source is None:
        source = ["external"] * len(rejected)
    else:
        raise InputError(f"{where}: 'source' must be a string or a list of strings aligned with 'rejected'")
    raw_id = obj.get("id")
    item_id = f"line-{line_no}" if raw_id is None else str(raw_id)
    context = {k: v for k, v in obj.items() if k not in _NOT_CONTEXT and k != "subset"}
    return PreferenceItem(item_id, prompt, chosen, rejected, source, context)
