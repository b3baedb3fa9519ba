"""``medreward compare SPEC_A SPEC_B --rollouts FILE [--json] [--limit N] [--group-key FIELD]``.

How differently two specs reward the same rollouts: the STARC distance (one-step, per prompt:
:mod:`medreward.audit.starc`; 0 = the same GRPO advantages, 1 = opposite) and the rank agreement
of the two rewards over all compared rollouts (Spearman, Kendall τ-b, Pearson:
:mod:`medreward.audit.agreement`), each with a percentile bootstrap interval (``--n-boot``,
``--seed``), plus each spec's mean reward and fraction of GRPO groups with zero reward variance.

Which rollouts are compared: those scored ``ok`` by both specs. A record that either spec scores
``error``, ``timeout`` or ``not_applicable`` has no reward there: it is left out and counted (per
spec and status). Groups (prompts, for STARC and the zero-variance fraction) are the rollout
contract's ``group`` field, else the prompt (docs/contracts.md#rollout-record-input), or the
field ``--group-key`` names (a dotted path such as ``case.id``).

The file is read once per spec (the two scorers see the same stream, chunked as ``medreward
score`` chunks it); only the rewards, statuses and group keys are kept, so ``--limit`` and
large files cost little memory. A pipe is read once and held in memory.

``--json`` prints exactly one JSON object on stdout: ``starc``, ``spearman``, ``kendall``,
``pearson`` (a number, or null when undefined: see ``notes``), the counts ``n_records``,
``n_compared``, ``n_excluded``, ``excluded`` (per spec, by status), and the details
(``starc_detail``, ``agreement``, ``mean_reward``, ``zero_variance_groups``). Exit codes: 0, or 2
for a user mistake (missing or empty file, unknown spec, bad option), with a message.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from ..audit.agreement import agreement_stat, kendall_tau_b, pearson, spearman
from ..audit.slices import MISSING, group_keys, zero_variance_groups
from ..audit.starc import starc_distance
from ..errors import InputError
from ..io import GuardedRecords, read_records
from ..records import ScoredRecord, Status
from ..runner import Scorer
from .console import out, progress_bar, user_errors
from .score import QUIET_OPTION, TIME_LIMIT_OPTION, _count_records, build_scorer

__all__ = ["Comparison", "compare_command", "compare_rewards"]


@dataclass(frozen=True)
class _Scores:
    """What one spec gave each record: its reward (None unless ok) and its status."""

    rewards: list[float | None]
    statuses: list[str]
    groups: list[str]


@dataclass(frozen=True)
class Comparison:
    """The comparison of two specs' rewards over the same rollouts (``to_dict``: the ``--json`` object)."""

    spec_a: str
    spec_b: str
    n_records: int
    n_compared: int
    excluded: dict[str, dict[str, int]]
    starc: Any  # StarcResult
    agreement: dict[str, Any]  # name -> AgreementStat
    mean_reward: dict[str, float | None]
    zero_variance: dict[str, Any]  # "a"/"b" -> ZeroVarianceGroups
    notes: list[str] = field(default_factory=list)

    @property
    def n_excluded(self) -> int:
        return self.n_records - self.n_compared

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec_a": self.spec_a, "spec_b": self.spec_b,
            "starc": self.starc.distance,
            **{name: stat.value for name, stat in self.agreement.items()},
            "n_records": self.n_records, "n_compared": self.n_compared, "n_excluded": self.n_excluded,
            "excluded": self.excluded,
            "starc_detail": self.starc.to_dict(),
            "agreement": {name: stat.to_dict() for name, stat in self.agreement.items()},
            "mean_reward": self.mean_reward,
            "zero_variance_groups": {side: z.to_dict() for side, z in self.zero_variance.items()},
            "notes": self.notes,
        }  # fmt: skip


def compare_rewards(
    a: _Scores, b: _Scores, *, spec_a: str, spec_b: str, n_boot: int = 1000, seed: int = 0, notes: Iterable[str] = ()
) -> Comparison:
    """STARC, rank agreement, mean rewards and zero-variance groups of two specs' scores of the
    same records (aligned by position); records not ok under either spec are left out and counted."""
    both = [i for i, (ra, rb) in enumerate(zip(a.rewards, b.rewards)) if ra is not None and rb is not None]
    ra = [a.rewards[i] for i in both]
    rb = [b.rewards[i] for i in both]
    groups = [a.groups[i] for i in both]
    x, y = np.asarray(ra, dtype=float), np.asarray(rb, dtype=float)
    kinds = (f"rewards of {spec_a}", f"rewards of {spec_b}")
    stats = {
        name: agreement_stat(name, fn, x, y, n_boot, seed, kinds)
        for name, fn in (("spearman", spearman), ("kendall", kendall_tau_b), ("pearson", pearson))
    }
    starc = starc_distance(ra, rb, groups, n_boot=n_boot, seed=seed)
    excluded = {
        side: dict(sorted(Counter(s for s, r in zip(scores.statuses, scores.rewards) if r is None).items()))
        for side, scores in (("a", a), ("b", b))
    }
    notes = list(notes)
    n_excluded = len(a.rewards) - len(both)
    if n_excluded:
        notes.append(f"{n_excluded} of {len(a.rewards)} record(s) without a reward under one spec or both left out")
    for name, stat in (("starc", starc), *stats.items()):
        if stat.note:
            notes.append(f"{name}: {stat.note}")
    mean = {side: (float(np.mean(v)) if len(v) else None) for side, v in (("a", x), ("b", y))}
    zero = {side: zero_variance_groups(v.tolist(), groups) for side, v in (("a", x), ("b", y))}
    return Comparison(spec_a, spec_b, len(a.rewards), len(both), excluded, starc, stats, mean, zero, notes)


# -- reading and scoring ------------------------------------------------------------------------
def _limited(records: Iterable[Any], limit: int | None) -> Iterator[Any]:
    return iter(records) if limit is None else itertools.islice(records, limit)


def _score(scorer: Scorer, source: Iterable[Any], group_key: str | None, label: str, total: int | None, quiet: bool) -> _Scores:
    rewards: list[float | None] = []
    statuses: list[str] = []
    groups: list[str] = []
    progress = progress_bar(label, quiet=quiet)
    with progress:
        task = progress.add_task(label, total=total)
        for record in scorer.iter_score(source, on_progress=lambda n: progress.advance(task, n)):
            ok = record.status is Status.OK and record.reward is not None and math.isfinite(record.reward)
            rewards.append(float(record.reward) if ok else None)  # type: ignore[arg-type]
            statuses.append(record.status.value)
            groups.append(group_keys([_data(record)], group_key)[0])
    return _Scores(rewards, statuses, groups)


def _data(record: ScoredRecord) -> dict[str, Any]:
    """The input record (a malformed line's stand-in has no prompt: it is left out anyway)."""
    return record.record if isinstance(record.record, dict) else {}


def _records(rollouts: Path, limit: int | None) -> tuple[Any, Any]:
    """Two independent streams of the same records (a pipe is read once and held), each with
    the guard that reports a file damaged part-way."""
    if rollouts.exists() and not rollouts.is_file() and not rollouts.is_dir():  # a named pipe: one read
        guard = GuardedRecords(read_records(rollouts))
        held = list(_limited(guard, limit))
        if guard.error is not None:
            raise guard.error
        return (held, None), (held, None)
    first = GuardedRecords(read_records(rollouts))
    second = GuardedRecords(read_records(rollouts))
    return (_limited(first, limit), first), (_limited(second, limit), second)


def _check_group_key(a: _Scores, b: _Scores, group_key: str) -> list[str]:
    """A --group-key that no compared record has is a typo (an error), not one big group; the
    records that lack it form one group, said in a note."""
    compared = [g for g, ra, rb in zip(a.groups, a.rewards, b.rewards) if ra is not None and rb is not None]
    missing = sum(g == MISSING for g in compared)
    if compared and missing == len(compared):
        raise InputError(f"--group-key {group_key!r}: no compared record has this field (a dotted path such as case.id)")
    return [f"{missing} compared record(s) have no field {group_key!r}: they form one group, {MISSING!r}"] if missing else []


def _fmt(value: float | None, digits: int = 4) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"[{low:.4f}, {high:.4f}]"


def _print_table(result: Comparison, rollouts: Path) -> None:
    table = Table(title=f"medreward compare · {result.spec_a} vs {result.spec_b} · {rollouts}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_column("95% bootstrap CI", justify="right")
    starc = result.starc
    table.add_row("STARC distance (0 same, 1 opposite)", _fmt(starc.distance), _interval(starc.ci_low, starc.ci_high))
    labels = {"spearman": "Spearman ρ", "kendall": "Kendall τ-b", "pearson": "Pearson r"}
    for name, stat in result.agreement.items():
        table.add_row(labels[name], _fmt(stat.value), _interval(stat.ci_low, stat.ci_high))
    table.add_row(f"mean reward {escape(result.spec_a)} / {escape(result.spec_b)}",
                  f"{_fmt(result.mean_reward['a'])} / {_fmt(result.mean_reward['b'])}", "")  # fmt: skip
    za, zb = result.zero_variance["a"].fraction, result.zero_variance["b"].fraction
    table.add_row("zero-variance groups a / b", f"{_fmt(za, 3)} / {_fmt(zb, 3)}", "")
    table.add_row("prompts used for STARC", f"{starc.n_groups_used} of {starc.n_groups}", "")
    table.add_row("records compared", f"{result.n_compared} of {result.n_records}", "")
    out.print(table)
    for side, spec in (("a", result.spec_a), ("b", result.spec_b)):
        if result.excluded[side]:
            parts = ", ".join(f"{n} {status}" for status, n in result.excluded[side].items())
            out.print(f"left out under {escape(spec)}: {parts}", highlight=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"[dim]{escape(note)}[/]", highlight=False, soft_wrap=True)


@user_errors
def compare_command(
    spec_a: str = typer.Argument(..., metavar="SPEC_A", help="First spec: a preset name (see `medreward specs`) or a spec TOML."),
    spec_b: str = typer.Argument(..., metavar="SPEC_B", help="Second spec: a preset name or a spec TOML."),
    rollouts: Path = typer.Option(
        ..., "--rollouts", "-r", help="Rollouts scored by both specs: .jsonl, .jsonl.gz or .parquet (docs/contracts.md).",
    ),  # fmt: skip
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (starc, spearman, kendall, counts) instead of the table."),
    limit: int | None = typer.Option(None, "--limit", help="Compare only the first N records."),
    group_key: str | None = typer.Option(
        None, "--group-key", help="Field that names a record's prompt group (dotted path, e.g. case.id); default: 'group', else the prompt.",
    ),  # fmt: skip
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the intervals (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    time_limit: float = TIME_LIMIT_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Compare two reward specs on the same rollouts: STARC distance and rank agreement."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be a positive number, got {limit}")
    if n_boot < 0:
        raise InputError(f"--n-boot must be 0 or more, got {n_boot}")
    if group_key is not None and not group_key.strip():
        raise InputError("--group-key must name a field")
    # the specs and the file are checked before any scoring
    scorer_a = build_scorer(spec_a, 0, time_limit, None, 256, [], None, False, None)
    try:
        scorer_b = build_scorer(spec_b, 0, time_limit, None, 256, [], None, False, None)
    except BaseException:
        scorer_a.close()
        raise
    try:
        (source_a, guard_a), (source_b, guard_b) = _records(rollouts, limit)
        count = _count_records(rollouts)
        total = count if limit is None or count is None else min(count, limit)
        scores_a = _score(scorer_a, source_a, group_key, f"scoring with {spec_a}", total, quiet)
        if guard_a is not None and guard_a.error is not None:
            raise guard_a.error
        if not scores_a.rewards:
            raise InputError(f"{rollouts}: no records to compare")
        scores_b = _score(scorer_b, source_b, group_key, f"scoring with {spec_b}", total, quiet)
        if guard_b is not None and guard_b.error is not None:
            raise guard_b.error
    finally:
        scorer_a.close()
        scorer_b.close()
    if len(scores_b.rewards) != len(scores_a.rewards):
        raise InputError(f"{rollouts} changed while it was read: {len(scores_a.rewards)} then {len(scores_b.rewards)} records")
    notes = _check_group_key(scores_a, scores_b, group_key) if group_key is not None else []
    result = compare_rewards(scores_a, scores_b, spec_a=scorer_a.spec.name, spec_b=scorer_b.spec.name,
                             n_boot=n_boot, seed=seed, notes=notes)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.to_dict(), allow_nan=False, ensure_ascii=False))
    else:
        _print_table(result, rollouts)
