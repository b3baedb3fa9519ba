"""Input coercion and validation shared by the shaping transforms (private).

Every public transform accepts rewards as any 1-D sequence of numbers where ``None`` means
"not applicable" (it becomes NaN) and groups as integer ids or hashable keys. These helpers
turn both into numpy arrays once, so the transforms themselves stay vectorised.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from medreward.compose.aggregate import group_index

ArrayLike = Sequence[Any] | np.ndarray
GroupsLike = Sequence[Hashable] | np.ndarray

# Integer group ids up to this multiple of the batch size are used as they are (a bincount of
# that length is cheap); sparser ids are compressed with np.unique first.
_DENSE_ID_FACTOR = 4


@dataclass(frozen=True)
class Groups:
    """Dense group ids of a batch.

    ``ids[i]`` is in ``0..n_groups-1``; ``labels[g]`` is the caller's key of group ``g``
    (``None`` when the caller's integer ids were used unchanged, so ``g`` is the key). Some ids
    in ``0..n_groups-1`` may be unused when the caller's integer ids have gaps.
    """

    ids: np.ndarray
    n_groups: int
    labels: np.ndarray | None

    def key(self, g: int) -> Hashable:
        """The caller's key of dense group ``g`` (a plain Python value)."""
        if self.labels is None:
            return int(g)
        value = self.labels[g]
        return value.item() if isinstance(value, np.generic) else value

    def present(self) -> np.ndarray:
        """Dense ids of the groups that have at least one sample, ascending."""
        if self.ids.size == 0:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(np.bincount(self.ids, minlength=self.n_groups))


def as_float_array(values: ArrayLike, name: str = "rewards") -> np.ndarray:
    """A 1-D float64 array; ``None`` → NaN, booleans → 0/1."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers or None: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def as_float_matrix(values: ArrayLike, name: str, n_rows: int | None = None) -> np.ndarray:
    """A 2-D float64 array (rows = samples); ragged rows are padded with NaN; 1-D → one column."""
    if isinstance(values, np.ndarray):
        arr = values.astype(np.float64, copy=False)
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            rows = [list(row) if isinstance(row, Sequence | np.ndarray) else [row] for row in values]
            width = max((len(row) for row in rows), default=0)
            arr = np.full((len(rows), width), np.nan)
            for i, row in enumerate(rows):  # conversion of ragged Python input only
                arr[i, : len(row)] = np.asarray(row, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples × items), got shape {arr.shape}")
    if n_rows is not None:
        check_lengths(n_rows, arr.shape[0], "rewards", name)
    return arr


def check_lengths(n_a: int, n_b: int, name_a: str, name_b: str) -> None:
    if n_a != n_b:
        raise ValueError(f"{name_a} has length {n_a} but {name_b} has length {n_b}")


def as_groups(groups: GroupsLike, n: int, *, name: str = "groups", other: str = "rewards") -> Groups:
    """Dense group ids for a batch of ``n`` samples; raises ValueError on a length mismatch."""
    if isinstance(groups, Groups):
        check_lengths(n, groups.ids.size, other, name)
        return groups
    if isinstance(groups, np.ndarray):
        arr = groups
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    else:
        keys = list(groups)
        arr = np.asarray(keys)
        mixed = arr.dtype.kind in "US" and not all(isinstance(k, str | bytes) for k in keys)
        if arr.ndim != 1 or mixed:  # tuple keys, or 1 and "1" that numpy would merge as strings
            arr = np.empty(len(keys), dtype=object)
            for i, key in enumerate(keys):  # slice assignment would unpack the tuples
                arr[i] = key
    check_lengths(n, arr.shape[0], other, name)
    if arr.size == 0:
        return Groups(np.empty(0, dtype=np.int64), 0, None)
    if arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi < _DENSE_ID_FACTOR * arr.size + 1024:
            return Groups(arr.astype(np.int64, copy=False), hi + 1, None)
    if arr.dtype.kind in "iufbUS":
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN; every sample needs a group")
        labels, inverse = np.unique(arr, return_inverse=True)
        return Groups(inverse.reshape(-1).astype(np.int64, copy=False), int(labels.size), labels)
    ids = group_index(list(arr))
    first = np.unique(ids, return_index=True)[1]
    labels = np.empty(first.size, dtype=object)
    for g, i in enumerate(first):
        labels[g] = arr[i]
    return Groups(ids, int(first.size), labels)


def group_constant(values: np.ndarray, groups: Groups, *, atol: float = 0.0) -> np.ndarray:
    """Per-group flag: all non-NaN values of the group are equal (within ``atol``).

    Exact by construction (compares the group's max with its min rather than testing a
    computed std against 0, which float rounding can miss: the mean of three 0.1s is not 0.1).
    Groups with fewer than two valid values are constant.
    """
    hi = np.full(groups.n_groups, -np.inf)
    lo = np.full(groups.n_groups, np.inf)
    np.fmax.at(hi, groups.ids, values)  # fmax/fmin skip NaN
    np.fmin.at(lo, groups.ids, values)
    with np.errstate(invalid="ignore"):
        return ~((hi - lo) > atol)  # no valid value: -inf - inf → constant; all +inf: NaN → constant


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, overflow-free for any finite or infinite input."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])  # x < 0: exp(x) cannot overflow
    out[~pos] = ex / (1.0 + ex)  # NaN lands here and stays NaN
    return out


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``log σ(x) = −log(1 + e^{−x})``, stable for large |x|."""
    with np.errstate(invalid="ignore"):  # NaN in → NaN out, quietly
        return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


def check_probability(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not ok or not math.isfinite(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_positive_int(value: int, name: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004 - one error type for bad params
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_finite(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class JsonState:
    """Mixin: ``save(path)`` / ``load(path)`` through ``state_dict()`` / ``load_state_dict()``."""

    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write the state as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.state_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """A new object restored from a JSON file written by :meth:`save`."""
        obj = cls.__new__(cls)
        obj.load_state_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        return obj
