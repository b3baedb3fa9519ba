"""What the adapters hand back and report: the flat float schema of verl / OpenRLHF, and the
warnings about samples that got no reward (a trainer would otherwise hide them)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medreward.records import ScoredRecord, Status
from medreward.runner.stats import RunStats

__all__ = [
    "BACKEND_FIELDS",
    "STATUS_KEYS",
    "backend_keys",
    "backend_shares",
    "NoRewardTally",
    "check_component_keys",
    "count_statuses",
    "flat_scores",
    "not_applicable_reason",
    "warn_failures",
]

log = logging.getLogger("medreward.integrations")

#: Flags in the flat float results of verl / OpenRLHF: exactly one is 1.0 per sample.
STATUS_KEYS: tuple[str, ...] = tuple(f"status_{s.value}" for s in Status)


def flat_scores(
    record: ScoredRecord, component_keys: Sequence[str], *, failed_score: float = 0.0
) -> dict[str, float]:
    """The flat, all-float result of verl and OpenRLHF, with the same keys for every record.

    * ``score``: the reward, or ``failed_score`` when the reward is ``None``;
    * ``status_ok`` / ``status_not_applicable`` / ``status_error`` / ``status_timeout``: 1.0 for
      the record's status, 0.0 for the others;
    * one key per component in ``component_keys``: its value, or 0.0 when it has none
      (not applicable, failed, or not part of this record's spec).
    """
    out: dict[str, float] = {"score": float(failed_score if record.reward is None else record.reward)}
    for key in STATUS_KEYS:
        out[key] = 0.0
    out[f"status_{record.status.value}"] = 1.0
    for name in component_keys:
        value = record.components.get(name)
        out[name] = 0.0 if value is None else float(value)
    return out


#: Backend counters that verl / OpenRLHF results carry per sample (see :func:`backend_shares`).
BACKEND_FIELDS: tuple[str, ...] = ("calls", "cache_hits", "failures", "prompt_tokens", "completion_tokens")


def backend_keys(backend_names: Sequence[str]) -> tuple[str, ...]:
    """``backend/<name>/<field>`` for each backend (sorted) and each of :data:`BACKEND_FIELDS`.

    >>> backend_keys(["judge"])[:2]
    ('backend/judge/calls', 'backend/judge/cache_hits')
    """
    return tuple(f"backend/{name}/{field}" for name in sorted(set(backend_names)) for field in BACKEND_FIELDS)


def backend_shares(stats: RunStats, size: int) -> dict[str, float]:
    """The batch's backend accounting as per-sample values: each counter divided by the number of
    samples scored with it, so that the mean a trainer logs over a step is the calls (tokens, cache
    hits…) per sample, and their sum over the step's samples is the step's total. verl and OpenRLHF
    log per-sample values only; this is how a model reward's cost reaches their logs."""
    if size <= 0:
        return {}
    out: dict[str, float] = {}
    for name, backend in stats.backends.items():
        for field in BACKEND_FIELDS:
            out[f"backend/{name}/{field}"] = getattr(backend, field) / size
    return out


def check_component_keys(names: Sequence[str]) -> None:
    """Component names must not shadow the fixed keys of :func:`flat_scores`."""
    reserved = {"score", *STATUS_KEYS}
    clash = sorted(n for n in names if n in reserved or n.startswith("backend/"))
    if clash:
        raise ValueError(f"component name(s) {clash} clash with the result keys {sorted(reserved)} or the backend/ prefix; rename them in the spec")


def count_statuses(records: Sequence[ScoredRecord]) -> dict[str, int]:
    """How many records have each status (every status present, zeros included)."""
    counts = {s.value: 0 for s in Status}
    for record in records:
        counts[record.status.value] += 1
    return counts


def not_applicable_reason(record: ScoredRecord) -> str | None:
    """Why a ``not_applicable`` record got no reward: the first reason its components give."""
    reason = record.info.get("reason")
    if isinstance(reason, str) and reason:
        return reason
    for name, value in record.components.items():
        info = record.info.get(name)
        if value is None and isinstance(info, Mapping) and info.get("reason"):
            return f"{name}: {info['reason']}"
    return None


@dataclass
class NoRewardTally:
    """Samples without a reward, counted between two warnings of one owner."""

    samples: int = 0
    errors: int = 0
    timeouts: int = 0
    not_applicable: int = 0
    first_error: str | None = None
    first_not_applicable: str | None = None
    last_warned: float = -math.inf

    def add(self, records: Sequence[ScoredRecord]) -> None:
        counts = count_statuses(records)
        self.samples += len(records)
        self.errors += counts[Status.ERROR.value]
        self.timeouts += counts[Status.TIMEOUT.value]
        self.not_applicable += counts[Status.NOT_APPLICABLE.value]
        if self.first_error is None and (counts[Status.ERROR.value] or counts[Status.TIMEOUT.value]):
            self.first_error = next(
                (str(r.info.get("error")) for r in records if r.status in (Status.ERROR, Status.TIMEOUT)), None
            )
        if self.first_not_applicable is None and counts[Status.NOT_APPLICABLE.value]:
            self.first_not_applicable = next(
                (not_applicable_reason(r) for r in records if r.status is Status.NOT_APPLICABLE), None
            )

    @property
    def anything(self) -> bool:
        return bool(self.errors or self.timeouts or self.not_applicable)


_tallies: dict[str, NoRewardTally] = {}
_tallies_lock = threading.Lock()


def warn_failures(owner: str, records: Sequence[ScoredRecord], *, every: float = 0.0) -> None:
    """Warn about samples that got no reward: errors and timeouts, and ``not_applicable``
    samples (e.g. a reference that lacks what the task needs — a dataset problem).

    Batch callers (TRL) warn once per batch. Per-sample callers (verl, OpenRLHF) pass
    ``every`` seconds: counts accumulate and one warning at most every ``every`` seconds
    reports them, so a broken dataset column does not flood the log.
    """
    with _tallies_lock:
        tally = _tallies.get(owner)
        if tally is None:
            tally = _tallies[owner] = NoRewardTally()
        tally.add(records)
        now = time.monotonic()
        if not tally.anything or now - tally.last_warned < every:
            if not every:
                del _tallies[owner]
            return
        _tallies[owner] = NoRewardTally(last_warned=now)
    if tally.errors or tally.timeouts:
        log.warning(
            "%s: %d of %d samples got no reward (error: %d, timeout: %d); first: %s",
            owner, tally.errors + tally.timeouts, tally.samples, tally.errors, tally.timeouts, tally.first_error,
        )
    if tally.not_applicable:
        log.warning(
            "%s: %d of %d samples are not_applicable (no reward: a required component did not apply, "
            "e.g. the reference lacks its field); first: %s",
            owner, tally.not_applicable, tally.samples, tally.first_not_applicable,
        )
