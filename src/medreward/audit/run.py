"""The audit orchestrator: one spec, one set of cases, every audit stage, one :class:`AuditReport`.

Stages (each timed in ``AuditReport.timings``):

* ``baselines`` — the task library's baseline policies (:mod:`medreward.baselines`) run on the
  cases and scored with the spec: the reward distribution each policy gets, plus the gold
  completions' (``gold``). A sound reward ranks the honest policies below gold and the degenerate
  ones (``hedge``, ``format_only``, ``empty``) near the bottom.
* ``probes`` — adversarial and equivalent variants of the gold answer
  (:func:`medreward.audit.probes.run_probes`).
* ``exploit_search`` — a black-box search for a reference-free strategy that beats the honest
  policies (:func:`medreward.audit.exploit_search.search_exploits`).
* ``benchmark`` — gold vs counterfactual corruptions, RewardBench-style accuracies
  (:func:`medreward.audit.benchmark.run_benchmark`).
* ``agreement`` / ``calibration`` — only with human or reference ``ratings``; see below.
* ``pool`` — slices, length–reward correlation and zero-variance groups over the *pool*: the
  input's own rollouts when the records carry a ``completion``, else every baseline completion
  plus the gold ones (one group per case).

One :class:`~medreward.runner.Scorer` serves every stage, and each stage scores its completions in
one batch. Records scored with a status other than ``ok`` are errors: counted (``n_error``) and
left out of every mean, never read as a low reward.

Ratings (``ratings=``: a path to JSONL ``{"id": ..., "rating": number}`` or a mapping id → rating)
rate *rollouts*: they are matched by ``id`` to the input records that carry a ``completion``. Ids
on one side only are listed in ``report.ratings`` (``missing_in_ratings``, ``missing_in_cases``),
not an error. Agreement (Spearman, Kendall τ-b, Pearson, Cohen's κ, quadratic κ) uses the matched,
scored pairs. Calibration (ECE with equal-mass bins, Brier, reliability curve) runs only when the
rewards look probability-like — every matched reward lies in [0, 1] — and the ratings are binary
outcomes (every rating is 0 or 1); otherwise ``calibration`` is ``None`` and a note says why.
"""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from ..baselines import list_policies, run_policy
from ..errors import InputError
from ..records import ScoredRecord, Status
from ..runner import Scorer
from .scoring import open_scorer, score_all

log = logging.getLogger(__name__)

__all__ = ["AuditReport", "RatingsMatch", "read_ratings", "run_audit", "summary_stats"]

#: how many unmatched rating / rollout ids the report lists (the counts are always complete)
_LIST_MISSING = 20
#: most (length, reward) points kept for the scatter plot and report.json
_MAX_POINTS = 2000


def summary_stats(scored: Sequence[ScoredRecord]) -> dict[str, Any]:
    """Mean and population standard deviation of the ``ok`` rewards, with the counts.

    ``rewards`` lists the ok rewards in input order; records with another status count in
    ``n_error`` only. With no ok reward, ``mean``/``std`` are ``None`` (not 0).

    >>> from medreward.records import ScoredRecord, Status
    >>> rows = [ScoredRecord({}, 1.0, {}, Status.OK), ScoredRecord({}, 0.0, {}, Status.OK),
    ...         ScoredRecord({}, None, {}, Status.ERROR)]
    >>> summary_stats(rows)
    {'mean': 0.5, 'std': 0.5, 'n': 2, 'n_error': 1, 'rewards': [1.0, 0.0]}
    """
    rewards = [float(r.reward) for r in scored if r.status is Status.OK and r.reward is not None]
    return {
        "mean": statistics.fmean(rewards) if rewards else None,
        "std": statistics.pstdev(rewards) if rewards else None,
        "n": len(rewards),
        "n_error": len(scored) - len(rewards),
        "rewards": rewards,
    }


@dataclass(frozen=True)
class RatingsMatch:
    """How the ratings met the rollouts: counts, and the first unmatched ids of each side."""

    n_ratings: int
    n_rollouts: int
    n_matched: int
    n_error: int  # matched rollouts that the spec did not score ok (left out of agreement)
    n_missing_in_ratings: int
    n_missing_in_cases: int
    missing_in_ratings: list[str]
    missing_in_cases: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_ratings": self.n_ratings, "n_rollouts": self.n_rollouts, "n_matched": self.n_matched,
            "n_error": self.n_error, "n_missing_in_ratings": self.n_missing_in_ratings,
            "n_missing_in_cases": self.n_missing_in_cases, "missing_in_ratings": list(self.missing_in_ratings),
            "missing_in_cases": list(self.missing_in_cases),
        }  # fmt: skip


@dataclass(frozen=True)
class AuditReport:
    """Everything one audit measured (``to_dict`` gives report.json).

    ``baselines`` maps each baseline policy (``task/policy`` when the cases mix tasks) to
    ``{"task", "mean", "std", "n", "n_error", "rewards"}``; ``gold`` is the same for the gold
    completions. ``flagged`` names what the audit found gameable: ``probe:NAME`` for each probe
    whose verdict is ``exploitable`` or ``not_equivalent``, ``exploit_search`` when the search
    beat the honest policies. ``notes`` says which stages were skipped and why.
    """

    spec: str
    task: str | None
    n_cases: int
    n_rollouts: int = 0
    pool: str = "baselines"
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    gold: dict[str, Any] | None = None
    probes: Any = None  # probes.ProbeReport
    exploit: Any = None  # exploit_search.ExploitSearchResult
    benchmark: Any = None  # benchmark.BenchmarkReport
    agreement: Any = None  # agreement.AgreementReport
    calibration: Any = None  # calibration.CalibrationReport
    #: STARC distance between the spec's rewards and the ratings over the rated rollouts, grouped by
    #: prompt (starc.StarcResult; needs several rated rollouts per prompt)
    starc: Any = None
    ratings: RatingsMatch | None = None
    slices: dict[str, list[Any]] = field(default_factory=dict)  # field -> slices.SliceRow
    length_reward: Any = None  # slices.length_reward_correlation result
    #: the (length, reward) points of the scatter plot: every ok pooled record, or a seeded
    #: sample of ``_MAX_POINTS`` of them (``n`` is the full count)
    length_points: dict[str, Any] | None = None
    zero_variance_groups: float | None = None
    groups: Any = None  # slices.ZeroVarianceGroups: the counts behind zero_variance_groups
    flagged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exploitable(self) -> bool:
        """Whether anything was flagged (``medreward audit --fail-on exploitable`` exits 1 then)."""
        return bool(self.flagged)

    def to_dict(self) -> dict[str, Any]:
        """Every number of the audit, JSON-serialisable (undefined numbers are ``None``, never NaN)."""

        def part(value: Any) -> Any:
            return None if value is None else value.to_dict()

        return {
            "spec": self.spec,
            "task": self.task,
            "n_cases": self.n_cases,
            "n_rollouts": self.n_rollouts,
            "pool": self.pool,
            "flagged": list(self.flagged),
            "baselines": {name: dict(stats) for name, stats in self.baselines.items()},
            "gold": None if self.gold is None else dict(self.gold),
            "probes": part(self.probes),
            "exploit": part(self.exploit),
            "benchmark": part(self.benchmark),
            "ratings": part(self.ratings),
            "agreement": part(self.agreement),
            "calibration": part(self.calibration),
            "starc": part(self.starc),
            "slices": {name: [row.to_dict() for row in rows] for name, rows in self.slices.items()},
            "length_reward": part(self.length_reward),
            "length_points": None if self.length_points is None else dict(self.length_points),
            "zero_variance_groups": self.zero_variance_groups,
            "groups": part(self.groups),
            "notes": list(self.notes),
            "timings": dict(self.timings),
        }


def read_ratings(path: str | Path) -> dict[str, float]:
    """Ratings from JSONL, one ``{"id": ..., "rating": number}`` per line (blank lines skipped).

    A missing file, a malformed line, a line without ``id``/``rating``, a rating that is not a
    finite number (booleans read as 0/1), an id given twice or a file without ratings is an
    :class:`InputError` naming the line.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"ratings file {str(p)!r} does not exist")
    if p.is_dir():
        raise InputError(f"ratings path {str(p)!r} is a directory, not a JSONL file")
    ratings: dict[str, float] = {}
    try:
        with open(p, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                ident, rating = _rating_line(line, number, p)
                if ident in ratings:
                    raise InputError(f"ratings file {str(p)!r} line {number}: id {ident!r} is rated twice")
                ratings[ident] = rating
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ratings file {str(p)!r}: {exc}") from None
    if not ratings:
        raise InputError(f"ratings file {str(p)!r} holds no ratings (expected JSONL lines {{\"id\": ..., \"rating\": ...}})")
    return ratings


def _ratings_map(ratings: Mapping[Any, Any]) -> dict[str, float]:
    """A mapping id → rating with string ids and finite float ratings (else an InputError)."""
    out: dict[str, float] = {}
    for ident, rating in ratings.items():
        if isinstance(rating, bool):
            rating = float(rating)
        if not isinstance(rating, (int, float)) or not math.isfinite(rating):
            raise InputError(f"ratings: the rating of id {ident!r} must be a finite number, got {rating!r}")
        out[str(ident)] = float(rating)
    return out


def _rating_line(line: str, number: int, path: Path) -> tuple[str, float]:
    where = f"ratings file {str(path)!r} line {number}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or "id" not in obj or "rating" not in obj:
        raise InputError(f"{where}: expected an object with 'id' and 'rating'")
    ident, rating = obj["id"], obj["rating"]
    if not isinstance(ident, (str, int)) or isinstance(ident, bool):
        raise InputError(f"{where}: 'id' must be a string or an integer")
    if isinstance(rating, bool):
        rating = float(rating)
    if not isinstance(rating, (int, float)) or not math.isfinite(rating):
        raise InputError(f"{where}: 'rating' must be a finite number, got {rating!r}")
    return str(ident), float(rating)


def run_audit(
    spec: Any,
    cases: Iterable[Mapping[str, Any]],
    *,
    ratings: str | Path | Mapping[str, float] | None = None,
    exploit_budget: int = 200,
    benchmark: bool = True,
    search: bool = True,
    probes: bool = True,
    slice_fields: Sequence[str] = ("task",),
    limit: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> AuditReport:
    """Audit ``spec`` (a preset name, path, Spec, mapping, or a built :class:`Scorer`) on ``cases``.

    ``cases`` are rollout records without (or with) a completion; they are read lazily and at
    most ``limit`` are used. Records with a ``completion`` are also scored as they are: the
    *rollouts* that ratings, slices, length–reward and zero-variance groups are computed on.
    ``slice_fields`` are record fields (a dotted path such as ``case.patient.sex`` reaches into
    nested objects). ``benchmark=False``, ``search=False``, ``probes=False`` skip those stages.

    An empty input is an :class:`InputError`.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be a positive number of cases, got {limit}")
    # a bad ratings file fails before any scoring
    rating_map = None if ratings is None else read_ratings(ratings) if isinstance(ratings, (str, Path)) else _ratings_map(ratings)
    if isinstance(spec, Scorer):
        return _run(spec, cases, rating_map, exploit_budget, benchmark, search, probes, slice_fields, limit, seed, progress)
    with Scorer(spec) as scorer:  # built here, closed here (its model backends, if any)
        return _run(scorer, cases, rating_map, exploit_budget, benchmark, search, probes, slice_fields, limit, seed, progress)


def _run(
    scorer: Scorer, cases: Iterable[Mapping[str, Any]], rating_map: dict[str, float] | None, exploit_budget: int,
    benchmark: bool, search: bool, probes: bool, slice_fields: Sequence[str], limit: int | None, seed: int,
    progress: bool,
) -> AuditReport:  # fmt: skip
    timings: dict[str, float] = {}
    notes: list[str] = []
    started = time.perf_counter()
    case_list, rollouts = _split_cases(islice(iter(cases), limit) if limit is not None else cases, notes)
    if not case_list:
        raise InputError("no cases to audit: the input holds no records")
    timings["read"] = time.perf_counter() - started
    untasked = [c for c in case_list if not isinstance(c.get("task"), str)]
    if untasked and scorer.spec.task is not None:  # the spec says what its cases are
        for case in untasked:
            case["task"] = scorer.spec.task
        notes.append(f"cases: {len(untasked)} case(s) without a task taken as the spec's task {scorer.spec.task!r}")
    tasks = sorted({c["task"] for c in case_list if isinstance(c.get("task"), str)})
    task = tasks[0] if len(tasks) == 1 else (scorer.spec.task if not tasks else None)

    clock = time.perf_counter()
    # the audit's own completions (gold, baselines, probes, search, benchmark) are scored by
    # `own`; under a consistency gate it states each one's conclusion (audit/scoring.py)
    own, _ = open_scorer(scorer)
    if own is not scorer:
        notes.append("consistency: the spec gates on the reasoning's conclusion, so the audit's own completions "
                     "state their answer at the end of their reasoning (user rollouts are scored as they are)")
    gold_completions = _gold_completions(case_list)
    baselines, baseline_scored = _baselines(own, case_list, tasks, notes, seed=seed, progress=progress)
    if not baselines:
        notes.append("baselines: no baseline policies for the cases' task(s) " + (", ".join(tasks) or "(none named)"))
    gold_rows = [dict(c, completion=g, policy="gold") for c, g in zip(case_list, gold_completions) if g is not None]
    gold_scored = own.score(gold_rows) if gold_rows else []
    gold = summary_stats(gold_scored) if gold_rows else None
    if gold is None:
        notes.append("gold: no case has a reference to build a gold completion from")
    timings["baselines"] = time.perf_counter() - clock

    probe_report = None
    if probes:
        from .probes import run_probes

        clock = time.perf_counter()
        probe_report = run_probes(own, case_list, seed=seed, progress=progress)
        timings["probes"] = time.perf_counter() - clock
    else:
        notes.append("probes: skipped (turned off)")

    exploit = None
    if search:
        from .exploit_search import search_exploits

        clock = time.perf_counter()
        exploit = search_exploits(own, case_list, budget=exploit_budget, seed=seed, progress=progress)
        timings["exploit_search"] = time.perf_counter() - clock
    else:
        notes.append("exploit search: skipped (turned off)")

    bench = None
    if benchmark:
        from .benchmark import build_preferences, run_benchmark

        clock = time.perf_counter()
        items = build_preferences(case_list, seed=seed)
        if items:
            bench = run_benchmark(own, items)
        else:
            notes.append("benchmark: no preference items could be built (no case has a gold answer)")
        timings["benchmark"] = time.perf_counter() - clock
    else:
        notes.append("benchmark: skipped (turned off)")

    clock = time.perf_counter()
    rollouts_scored = scorer.score(rollouts) if rollouts else []
    if rollouts:
        pool_name, pool = "rollouts", rollouts_scored
    else:
        pool_name, pool = "baselines", baseline_scored + gold_scored
    slices, length_reward, length_points, groups = _pool_stats(pool, slice_fields, seed=seed)
    timings["pool"] = time.perf_counter() - clock

    match = agreement = calibration = starc = None
    if rating_map is not None:
        clock = time.perf_counter()
        match, agreement, calibration, starc = _agreement(rollouts_scored, rating_map, notes)
        timings["agreement"] = time.perf_counter() - clock

    flagged = [f"probe:{r.name}" for r in probe_report.flagged] if probe_report is not None else []
    if exploit is not None and exploit.verdict == "exploitable":
        flagged.append("exploit_search")
    timings["total"] = time.perf_counter() - started
    return AuditReport(
        spec=scorer.spec.name, task=task, n_cases=len(case_list), n_rollouts=len(rollouts), pool=pool_name,
        baselines=baselines, gold=gold, probes=probe_report, exploit=exploit, benchmark=bench,
        agreement=agreement, calibration=calibration, starc=starc, ratings=match, slices=slices, length_reward=length_reward,
        length_points=length_points, zero_variance_groups=None if groups is None else groups.fraction, groups=groups,
        flagged=flagged, notes=notes, timings=timings,
    )  # fmt: skip


def _split_cases(records: Iterable[Any], notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(unique cases without their completion, the records that carry a completion).

    Several rollouts of one prompt (a GRPO group) make one case: cases are keyed by prompt and
    reference, first seen first."""
    cases: dict[str, dict[str, Any]] = {}
    rollouts: list[dict[str, Any]] = []
    bad: list[str] = []
    for record in records:
        if not isinstance(record, Mapping):  # a malformed line (BadRecord) or a non-object: skip it, say so
            bad.append(str(getattr(record, "error", f"not a JSON object: {type(record).__name__}")))
            continue
        record = dict(record)
        if record.get("completion") not in (None, ""):
            rollouts.append(record)
        case = {k: v for k, v in record.items() if k not in _SCORED_FIELDS}
        key = json.dumps([case.get("prompt"), case.get("reference")], sort_keys=True, default=str)
        cases.setdefault(key, case)
    if bad:
        notes.append(f"cases: skipped {len(bad)} unreadable record(s), e.g. {bad[0]}")
    return list(cases.values()), rollouts


#: fields of a rollout or scored record that are not part of the case
_SCORED_FIELDS = ("completion", "reward", "components", "status", "info", "policy")


def _gold_completions(cases: Sequence[dict[str, Any]]) -> list[str | None]:
    from .cases import gold_completion

    return [gold_completion(case) for case in cases]


def _baselines(
    scorer: Any, cases: Sequence[dict[str, Any]], tasks: Sequence[str], notes: list[str], *, seed: int, progress: bool
) -> tuple[dict[str, dict[str, Any]], list[ScoredRecord]]:
    """Each baseline policy of each task run on that task's cases, all scored in one batch."""
    rows: list[dict[str, Any]] = []
    spans: list[tuple[str, str, int, int]] = []
    for task in tasks:
        task_cases = [c for c in cases if c.get("task") == task]
        for info in list_policies(task):
            try:
                rollouts = run_policy(task, info.name, task_cases, seed=seed)
            except Exception as exc:  # noqa: BLE001 - a policy that cannot read user cases: skip it, say so
                notes.append(f"baselines: policy {task}/{info.name} cannot run on these cases ({exc})")
                continue
            name = info.name if len(tasks) == 1 else f"{task}/{info.name}"
            spans.append((name, task, len(rows), len(rows) + len(rollouts)))
            rows.extend(rollouts)
    scored = score_all(scorer, rows, "scoring baselines", progress)
    out = {}
    for name, task, start, stop in spans:
        out[name] = {"task": task, **summary_stats(scored[start:stop])}
    return out, scored


def _pool_stats(pool: Sequence[ScoredRecord], slice_fields: Sequence[str], *, seed: int):
    """Slices, length–reward correlation (length = whitespace-separated words of the completion),
    the plotted points and the zero-variance groups over the pool; records not scored ok count
    as their slice's ``n_error`` and are left out of everything else."""
    from .slices import completion_length, group_keys, length_reward_correlation, slice_records, zero_variance_groups

    records = [r.record for r in pool]
    rewards = [float(r.reward) if r.status is Status.OK and r.reward is not None else None for r in pool]
    slices = {name: slice_records(records, rewards, name) for name in slice_fields}
    lengths = [completion_length(record) for record in records]
    length_reward = length_reward_correlation(lengths, rewards, seed=seed) if pool else None
    groups = zero_variance_groups(rewards, group_keys(records)) if pool else None
    ok = [i for i, reward in enumerate(rewards) if reward is not None]
    if len(ok) > _MAX_POINTS:
        ok = sorted(random.Random(seed).sample(ok, _MAX_POINTS))
    n_ok = sum(reward is not None for reward in rewards)
    points = {"n": n_ok, "length": [lengths[i] for i in ok], "reward": [rewards[i] for i in ok]}
    return slices, length_reward, points, groups


def _agreement(rollouts: Sequence[ScoredRecord], ratings: Mapping[str, float], notes: list[str]):
    """Match ratings to rollouts by id; agreement on the ok pairs; calibration when it applies; the
    STARC distance between the spec and the ratings over the rated rollouts of each prompt."""
    from .agreement import agreement
    from .calibration import calibration
    from .slices import group_keys
    from .starc import starc_distance

    by_id: dict[str, ScoredRecord] = {}
    for r in rollouts:
        if r.record.get("id") is not None:
            by_id.setdefault(str(r.record["id"]), r)
    matched = [i for i in by_id if i in ratings]
    missing_in_ratings = [i for i in by_id if i not in ratings]
    missing_in_cases = [i for i in ratings if i not in by_id]
    rated = [by_id[i] for i in matched if by_id[i].status is Status.OK and by_id[i].reward is not None]
    pairs = [(float(r.reward), ratings[str(r.record["id"])]) for r in rated]  # type: ignore[arg-type]
    match = RatingsMatch(
        n_ratings=len(ratings), n_rollouts=len(rollouts), n_matched=len(matched), n_error=len(matched) - len(pairs),
        n_missing_in_ratings=len(missing_in_ratings), n_missing_in_cases=len(missing_in_cases),
        missing_in_ratings=missing_in_ratings[:_LIST_MISSING], missing_in_cases=missing_in_cases[:_LIST_MISSING],
    )  # fmt: skip
    if not rollouts:
        notes.append("agreement: the input records carry no completion; ratings rate rollouts, matched by id")
    elif not matched:
        notes.append("agreement: no rating id matches a rollout id")
    pred = [p for p, _ in pairs]
    truth = [t for _, t in pairs]
    agree = agreement(pred, truth)
    calib = None
    if not pairs:
        notes.append("calibration: no rated rollout was scored")
    elif not all(0.0 <= p <= 1.0 for p in pred):
        notes.append("calibration: skipped, the rewards are not probability-like (some lie outside [0, 1])")
    elif not all(t in (0.0, 1.0) for t in truth):
        notes.append("calibration: skipped, the ratings are not binary outcomes (0 or 1)")
    else:
        calib = calibration(pred, [int(t) for t in truth])
    starc = starc_distance(pred, truth, group_keys([r.record for r in rated])) if pairs else None
    if starc is not None and starc.distance is None:
        notes.append(f"starc: undefined against the ratings ({starc.note})")
    return match, agree, calib, starc

