"""Per-slice rewards, length–reward correlation and GRPO groups without reward variance.

- **Slices** (subgroup gaps, as ClinicLLM reports them): the rewards grouped by any record
  field, a nested one by a dotted path (``case.patient.sex``; a list element by its index,
  ``prompt.0.content``). A record without the field (or with null there) falls in the
  ``"(missing)"`` slice. Per slice: the number of rewards, their mean and population standard
  deviation, the gap to the overall mean, and the records without a reward (``n_error``: not ok,
  left out of the mean).
- **Length–reward correlation** (the length exploitation found in CXR report RL): Spearman and
  Pearson of completion length against reward, with bootstrap intervals
  (:mod:`medreward.audit.agreement`). Length is counted in whitespace-separated words by default
  (tokenizer-free, close to tokens) or in characters.
- **Zero-variance groups**: the fraction of GRPO groups (rollouts sharing a group key, by default
  the ``group`` field else the prompt) whose rewards are all equal. Such a group has zero
  advantage for every rollout, so it teaches nothing (DAPO's dynamic sampling drops them).
  Groups with fewer than 2 rewarded rollouts have no variance to speak of: they are counted
  apart, not in the fraction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import RecordError
from ..records import Rollout
from ..text import as_text
from .agreement import AgreementStat, agreement_stat, pearson, spearman

__all__ = [
    "MISSING", "LengthReward", "SliceRow", "ZeroVarianceGroups", "completion_length", "field_value", "group_keys",
    "length_reward_correlation", "slice_key", "slice_records", "slice_table", "zero_variance_group_fraction",
    "zero_variance_groups",
]  # fmt: skip

#: the slice of records that lack the field
MISSING = "(missing)"
_ABSENT = object()


@dataclass(frozen=True)
class SliceRow:
    """One slice: its key, the rewards in it (n, mean, population std), the gap of its mean to
    the overall mean, and its records without a reward."""

    key: str
    n: int
    mean: float | None
    std: float | None
    gap: float | None = None
    n_error: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "n": self.n, "mean": self.mean, "std": self.std, "gap": self.gap, "n_error": self.n_error}


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (a key that itself holds dots is found first), or
    :data:`MISSING` when the path does not exist or ends in null.

    >>> field_value({"case": {"patient": {"sex": "F"}}}, "case.patient.sex")
    'F'
    >>> field_value({"prompt": [{"content": "hi"}]}, "prompt.0.content")
    'hi'
    >>> field_value({"case": {}}, "case.patient.sex")
    '(missing)'
    """
    value: Any = record.get(path, _ABSENT) if isinstance(record, Mapping) else _ABSENT
    if value is _ABSENT:
        value = record
        for part in path.split("."):
            if isinstance(value, Mapping):
                value = value.get(part, _ABSENT)
            elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
                value = value[int(part)]
            else:
                value = _ABSENT
            if value is _ABSENT:
                break
    return MISSING if value is _ABSENT or value is None else value


def slice_key(value: Any) -> str:
    """A slice's name for a field value: strings as they are, other values as JSON.

    >>> [slice_key(v) for v in ("F", 42, True, ["a", "b"])]
    ['F', '42', 'true', '["a", "b"]']
    """
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def slice_table(values: Sequence[float | None], keys: Sequence[Hashable]) -> list[SliceRow]:
    """Rewards by slice key (None rewards: records that did not score ok, counted as ``n_error``),
    sorted by key with :data:`MISSING` last.

    >>> [r.to_dict() for r in slice_table([1.0, 0.0, 0.5, None], ["F", "F", "M", "M"])]
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'key': 'F', 'n': 2, 'mean': 0.5, 'std': 0.5, 'gap': 0.0, 'n_error': 0},
     {'key': 'M', 'n': 1, 'mean': 0.5, 'std': 0.0, 'gap': 0.0, 'n_error': 1}]
    """
    if len(values) != len(keys):
        raise ValueError(f"values and keys must have the same length, not {len(values)} and {len(keys)}")
    rewards: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for value, key in zip(values, keys):
        name = key if isinstance(key, str) else slice_key(key)
        rewards.setdefault(name, [])
        v = _finite_or_none(value)
        if v is None:
            errors[name] = errors.get(name, 0) + 1
        else:
            rewards[name].append(v)
    everything = [v for vs in rewards.values() for v in vs]
    overall = float(np.mean(everything)) if everything else None
    rows = []
    for name in sorted(rewards, key=lambda k: (k == MISSING, k)):
        vs = np.asarray(rewards[name])
        mean = float(vs.mean()) if vs.size else None
        std = float(vs.std()) if vs.size else None
        gap = mean - overall if mean is not None and overall is not None else None
        rows.append(SliceRow(name, int(vs.size), mean, std, gap, errors.get(name, 0)))
    return rows


def slice_records(records: Iterable[Mapping[str, Any]], rewards: Sequence[float | None], path: str) -> list[SliceRow]:
    """:func:`slice_table` of ``rewards`` by the field at ``path`` of the aligned ``records``."""
    return slice_table(rewards, [slice_key(field_value(r, path)) for r in records])


# -- length vs reward ---------------------------------------------------------------------------
def completion_length(record: Mapping[str, Any], unit: Literal["words", "chars"] = "words") -> int:
    """The length of a record's completion (conversational: the assistant turns) in
    whitespace-separated words or in characters; 0 for a completion that is not text.

    >>> completion_length({"completion": "<think>a b</think> <answer>c</answer>"})
    3
    >>> completion_length({"completion": "abc"}, unit="chars")
    3
    """
    completion = record.get("completion", "")
    if isinstance(completion, list):
        completion = "\n".join(
            _text(turn.get("content", "")) for turn in completion
            if isinstance(turn, Mapping) and turn.get("role", "assistant") == "assistant"
        )  # fmt: skip
    text = _text(completion)
    if unit == "chars":
        return len(text)
    if unit != "words":
        raise ValueError(f"unit must be 'words' or 'chars', not {unit!r}")
    return len(text.split())


def _text(value: Any) -> str:
    """A completion's text; a value that is not text (null, a number) has length 0."""
    return as_text(value) if isinstance(value, str) else ""


@dataclass(frozen=True)
class LengthReward:
    """Spearman and Pearson correlation of completion length with reward."""

    spearman: AgreementStat
    pearson: AgreementStat
    n: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"spearman": self.spearman.to_dict(), "pearson": self.pearson.to_dict(), "n": self.n, "note": self.note}


def length_reward_correlation(
    lengths: Sequence[float], rewards: Sequence[float | None], *, n_boot: int = 1000, seed: int = 0
) -> LengthReward:
    """Spearman and Pearson of length against reward (None rewards left out), each with a
    bootstrap interval; None with a reason when undefined (e.g. every reward equal).

    >>> r = length_reward_correlation([10, 50, 200, 400], [0.1, 0.2, 0.9, 0.8], n_boot=0)
    >>> r.spearman.value, round(r.pearson.value, 3)
    (0.8, 0.836)
    """
    if len(lengths) != len(rewards):
        raise ValueError(f"lengths and rewards must have the same length, not {len(lengths)} and {len(rewards)}")
    pairs = [(float(n), v) for n, r in zip(lengths, rewards) if (v := _finite_or_none(r)) is not None]
    x = np.asarray([p[0] for p in pairs], dtype=float)
    y = np.asarray([p[1] for p in pairs], dtype=float)
    left_out = len(lengths) - len(pairs)
    note = f"{left_out} record(s) without a reward left out" if left_out else ""
    return LengthReward(
        agreement_stat("spearman", spearman, x, y, n_boot, seed, kinds=("lengths", "rewards")),
        agreement_stat("pearson", pearson, x, y, n_boot, seed, kinds=("lengths", "rewards")),
        int(x.size), note,
    )  # fmt: skip


# -- GRPO groups --------------------------------------------------------------------------------
def group_keys(records: Iterable[Mapping[str, Any]], field: str | None = None) -> list[str]:
    """The GRPO group of each record: the value at ``field`` (a dotted path; :data:`MISSING`
    when absent), else the rollout contract's group (the ``group`` field, else a hash of the
    prompt; ``medreward.records.Rollout.group_key``).

    >>> group_keys([{"group": "g1"}, {"case": {"id": 7}}], field="case.id")
    ['(missing)', '7']
    >>> a, b, c = group_keys([{"prompt": "x"}, {"prompt": "x"}, {"prompt": "y", "group": "G"}])
    >>> a == b != c, c
    (True, 'G')
    """
    if field is not None:
        return [slice_key(field_value(r, field)) for r in records]
    keys = []
    for record in records:
        group = record.get("group")
        try:
            rollout = Rollout.from_dict({"prompt": record.get("prompt", ""), "completion": "",
                                         "group": group if isinstance(group, str) or group is None else str(group)})  # fmt: skip
        except RecordError:
            rollout = Rollout.from_dict({"prompt": repr(record.get("prompt")), "completion": ""})
        keys.append(str(rollout.group_key))
    return keys


@dataclass(frozen=True)
class ZeroVarianceGroups:
    """How many GRPO groups have all rewards equal, of those with at least 2 rewarded rollouts."""

    fraction: float | None
    n_groups: int
    n_zero_variance: int
    n_too_small: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "n_groups": self.n_groups, "n_zero_variance": self.n_zero_variance,
                "n_too_small": self.n_too_small, "note": self.note}  # fmt: skip


def zero_variance_groups(rewards: Sequence[float | None], groups: Sequence[Hashable], *, tol: float = 1e-12) -> ZeroVarianceGroups:
    """Groups whose rewards are all equal (spread ``max − min <= tol``); None rewards (records
    that did not score ok) are left out of their group.

    >>> zero_variance_groups([1, 1, 0, 1, 0.5, None], ["a", "a", "b", "b", "c", "c"]).to_dict()
    ... # doctest: +NORMALIZE_WHITESPACE
    {'fraction': 0.5, 'n_groups': 2, 'n_zero_variance': 1, 'n_too_small': 1,
     'note': '1 group(s) with fewer than 2 rewarded rollouts left out'}
    """
    if len(rewards) != len(groups):
        raise ValueError(f"rewards and groups must have the same length, not {len(rewards)} and {len(groups)}")
    members: dict[Hashable, list[float]] = {}
    for reward, group in zip(rewards, groups):
        values = members.setdefault(group, [])
        v = _finite_or_none(reward)
        if v is not None:
            values.append(v)
    sized = [vs for vs in members.values() if len(vs) >= 2]
    too_small = len(members) - len(sized)
    flat = sum(1 for vs in sized if max(vs) - min(vs) <= tol)
    note = f"{too_small} group(s) with fewer than 2 rewarded rollouts left out" if too_small else ""
    if not sized:
        note = "; ".join(x for x in ("undefined: no group with at least 2 rewarded rollouts", note) if x)
        return ZeroVarianceGroups(None, 0, 0, too_small, note)
    return ZeroVarianceGroups(flat / len(sized), len(sized), flat, too_small, note)


def zero_variance_group_fraction(rewards: Sequence[float | None], groups: Sequence[Hashable]) -> float | None:
    """The fraction of groups (with at least 2 rewarded rollouts) whose rewards are all equal;
    None when there is no such group.

    >>> zero_variance_group_fraction([1, 1, 0, 1], ["a", "a", "b", "b"])
    0.5
    """
    return zero_variance_groups(rewards, groups).fraction
