"""Per-dataset (per-task) reward normalisation: running (MedGRPO) and reference-frozen (Quark RFN).

Mixing datasets whose metrics live on different scales lets the easiest dataset dominate GRPO
(MedGRPO reports mIoU ≈ 0.01 without normalisation). Each source ``d`` therefore gets its own
centre and scale, and its raw metric ``m`` is mapped through

* ``"median_logistic"``: ``σ((m − med_d)/s_d)`` with ``s_d = IQR_d/(2·ln 3)``, so a source's
  median maps to 0.5 and, for quartiles symmetric about the median, its 25th/75th percentiles
  map to 0.25/0.75 — MedGRPO (arXiv 2512.06581) [UNVERIFIED: inferred];
* ``"zscore"``: ``(m − μ_d)/σ_d`` (sample std) — Quark RFN (arXiv 2602.11661)
  [UNVERIFIED: inferred]. Sources and choices: docs/formulas.md#per-dataset-normalisation.

:class:`RunningMedianNormalizer` keeps a sliding window of each source's most recent values
(a bounded, deterministic window rather than a random reservoir, so resumed runs replay
exactly). :class:`ReferenceFrozenNormalizer` fits its statistics once on the reference
policy's rewards and never updates them.

Degenerate scale: when ``s_d`` (or ``σ_d``) is below ``min_scale`` — e.g. a binary metric
whose IQR is 0, or a single value — ``fallback_scale`` (default 1.0) is used instead of
dividing by ~0. NaN/``None`` values are left out of statistics and map to NaN.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from medreward.shape._common import (
    ArrayLike,
    Groups,
    GroupsLike,
    JsonState,
    as_float_array,
    as_float_matrix,
    as_groups,
    check_choice,
    check_positive,
    check_positive_int,
    sigmoid,
)

__all__ = [
    "NormMethod",
    "NormStats",
    "ReferenceFrozenNormalizer",
    "RunningMedianNormalizer",
    "median_logistic",
    "robust_stats",
]

NormMethod = Literal["median_logistic", "zscore"]
_IQR_TO_SCALE = 2.0 * math.log(3.0)  # σ(±ln 3) = 0.75 / 0.25


@dataclass(frozen=True)
class NormStats:
    """Centre and scale of one source (median and IQR/(2 ln 3), or mean and std)."""

    center: float
    scale: float
    count: int


def median_logistic(values: ArrayLike, *, center: float, scale: float) -> np.ndarray:
    """``σ((m − center)/scale)``: the MedGRPO mapping for one source ([UNVERIFIED: inferred];
    docs/formulas.md#per-dataset-normalisation).

    >>> median_logistic([0.2, 0.5, 0.8], center=0.5, scale=0.3 / math.log(3)).round(3).tolist()
    [0.25, 0.5, 0.75]
    """
    scale = check_positive(scale, "scale")
    return sigmoid((as_float_array(values, "values") - float(center)) / scale)


def robust_stats(
    values: ArrayLike, *, method: NormMethod = "median_logistic", min_scale: float = 1e-6, fallback_scale: float = 1.0
) -> NormStats:
    """Centre/scale of a sample of raw metrics, ignoring NaN.

    ``median_logistic``: median and ``IQR/(2 ln 3)`` (numpy's linear-interpolation
    percentiles); ``zscore``: mean and sample std (ddof=1). A scale below ``min_scale`` (or
    fewer than two values) uses ``fallback_scale``. No valid value → centre NaN.

    >>> robust_stats([0.0, 0.25, 0.5, 0.75, 1.0]).center
    0.5
    >>> robust_stats([1.0, 1.0, 1.0]).scale
    1.0
    """
    check_choice(method, "method", ("median_logistic", "zscore"))
    v = as_float_array(values, "values")
    v = v[~np.isnan(v)]
    if v.size == 0:
        return NormStats(math.nan, float(fallback_scale), 0)
    if method == "median_logistic":
        q25, center, q75 = np.percentile(v, [25.0, 50.0, 75.0])
        scale = (q75 - q25) / _IQR_TO_SCALE
    else:
        center = v.mean()
        scale = v.std(ddof=1) if v.size > 1 else 0.0
    if not scale >= min_scale:
        scale = fallback_scale
    return NormStats(float(center), float(scale), int(v.size))


def _split(groups: Groups) -> list[tuple[int, np.ndarray]]:
    """(dense id, sample indices) for each present group, via one stable sort."""
    order = np.argsort(groups.ids, kind="stable")
    sorted_ids = groups.ids[order]
    present = groups.present()
    starts = np.searchsorted(sorted_ids, present, side="left")
    ends = np.searchsorted(sorted_ids, present, side="right")
    return [(int(g), order[a:b]) for g, a, b in zip(present, starts, ends)]


def _as_sources(sources: GroupsLike | Hashable | None, n: int) -> Groups:
    if sources is None or isinstance(sources, str | bytes | int):
        key = None if sources is None else sources
        labels = np.empty(1, dtype=object)
        labels[0] = key
        return Groups(np.zeros(n, dtype=np.int64), 1 if n else 0, labels)
    return as_groups(sources, n, name="sources", other="values")


def _json_key(key: Hashable) -> Any:
    if key is None or isinstance(key, str | int | float | bool):
        return key
    raise ValueError(f"source keys must be str, int or None to save state, got {key!r}")


class RunningMedianNormalizer(JsonState):
    """MedGRPO-style per-source normalisation with running statistics.

    Each call to :meth:`update` appends a batch's valid values to its source's window of the
    last ``window`` values; :meth:`transform` maps values with the current statistics;
    calling the object does both (the batch is included in its own statistics, as PPO-C's
    EMA is updated before use). Statistics are computed lazily per source.

    >>> norm = RunningMedianNormalizer(window=100)
    >>> norm([0.1, 0.2, 0.3, 0.8, 0.9, 1.0], ["a", "a", "a", "b", "b", "b"]).round(3).tolist()
    [0.1, 0.5, 0.9, 0.1, 0.5, 0.9]
    """

    def __init__(
        self,
        *,
        window: int = 1024,
        method: NormMethod = "median_logistic",
        min_scale: float = 1e-6,
        fallback_scale: float = 1.0,
    ) -> None:
        self.window = check_positive_int(window, "window")
        self.method: NormMethod = check_choice(method, "method", ("median_logistic", "zscore"))  # type: ignore[assignment]
        self.min_scale = check_positive(min_scale, "min_scale", allow_zero=True)
        self.fallback_scale = check_positive(fallback_scale, "fallback_scale")
        self._buffers: dict[Hashable, np.ndarray] = {}
        self._stats: dict[Hashable, NormStats] = {}

    @property
    def sources(self) -> list[Hashable]:
        return list(self._buffers)

    def stats(self, source: Hashable = None) -> NormStats:
        """Current statistics of ``source`` (ValueError if it has no values yet)."""
        if source not in self._buffers:
            raise ValueError(f"source {source!r} has no values yet; call update() first")
        if source not in self._stats:
            self._stats[source] = robust_stats(
                self._buffers[source], method=self.method, min_scale=self.min_scale, fallback_scale=self.fallback_scale
            )
        return self._stats[source]

    def update(self, values: ArrayLike, sources: GroupsLike | Hashable | None = None) -> None:
        """Append the batch's valid values to each source's window."""
        v = as_float_array(values, "values")
        self._update(v, _as_sources(sources, v.size))

    def _update(self, v: np.ndarray, g: Groups) -> None:
        for dense, idx in _split(g):  # one iteration per source, not per sample
            new = v[idx]
            new = new[~np.isnan(new)]
            if new.size == 0:
                continue
            key = g.key(dense)
            old = self._buffers.get(key, np.empty(0))
            self._buffers[key] = np.concatenate([old, new])[-self.window :]
            self._stats.pop(key, None)

    def transform(self, values: ArrayLike, sources: GroupsLike | Hashable | None = None) -> np.ndarray:
        """Map values with the current statistics of their sources (no update)."""
        v = as_float_array(values, "values")
        return self._transform(v, _as_sources(sources, v.size))

    def _transform(self, v: np.ndarray, g: Groups) -> np.ndarray:
        center = np.full(g.n_groups, np.nan)
        scale = np.ones(g.n_groups)
        for dense in g.present():
            s = self.stats(g.key(int(dense)))
            center[dense], scale[dense] = s.center, s.scale
        z = (v - center[g.ids]) / scale[g.ids]
        return sigmoid(z) if self.method == "median_logistic" else z

    def __call__(self, values: ArrayLike, sources: GroupsLike | Hashable | None = None) -> np.ndarray:
        v = as_float_array(values, "values")
        g = _as_sources(sources, v.size)  # resolve the keys once for both passes
        self._update(v, g)
        return self._transform(v, g)

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state; :meth:`load_state_dict` restores it exactly."""
        return {
            "window": self.window,
            "method": self.method,
            "min_scale": self.min_scale,
            "fallback_scale": self.fallback_scale,
            "buffers": [[_json_key(k), buf.tolist()] for k, buf in self._buffers.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            window=state["window"],
            method=state["method"],
            min_scale=state["min_scale"],
            fallback_scale=state["fallback_scale"],
        )
        self._buffers = {key: np.asarray(buf, dtype=np.float64) for key, buf in state["buffers"]}


class ReferenceFrozenNormalizer(JsonState):
    """Quark-style Reference-Frozen Normalisation: statistics fitted once, never updated.

    Fit on the reference (SFT) policy's rewards before RL, then transform every RL batch with
    those fixed statistics, per source and per reward column (``values`` may be 1-D or
    samples × reward components). ``method="median_logistic"`` gives the frozen MedGRPO
    variant (median from a baseline-model evaluation before RL, as MedGRPO's summaries
    describe). Fitting twice raises: make a new normalizer for a new reference.

    >>> rfn = ReferenceFrozenNormalizer().fit([1.0, 2.0, 3.0])
    >>> rfn.transform([2.0, 4.0]).tolist()
    [0.0, 2.0]
    """

    def __init__(self, *, method: NormMethod = "zscore", min_scale: float = 1e-6, fallback_scale: float = 1.0) -> None:
        self.method: NormMethod = check_choice(method, "method", ("median_logistic", "zscore"))  # type: ignore[assignment]
        self.min_scale = check_positive(min_scale, "min_scale", allow_zero=True)
        self.fallback_scale = check_positive(fallback_scale, "fallback_scale")
        self._stats: dict[Hashable, list[NormStats]] | None = None
        self._n_columns = 0
        self._one_d = True

    @property
    def is_fitted(self) -> bool:
        return self._stats is not None

    @property
    def stats(self) -> dict[Hashable, list[NormStats]]:
        """Per source, one :class:`NormStats` per reward column."""
        if self._stats is None:
            raise RuntimeError("ReferenceFrozenNormalizer is not fitted; call fit() on reference rewards first")
        return {k: list(v) for k, v in self._stats.items()}

    def fit(self, values: ArrayLike, sources: GroupsLike | Hashable | None = None) -> ReferenceFrozenNormalizer:
        """Compute the frozen statistics from the reference policy's rewards (once)."""
        if self._stats is not None:
            raise RuntimeError("ReferenceFrozenNormalizer is already fitted and frozen; create a new one to refit")
        self._one_d = np.ndim(values) == 1 and not _is_ragged(values)
        m = as_float_matrix(values, "values")
        g = _as_sources(sources, m.shape[0])
        stats: dict[Hashable, list[NormStats]] = {}
        for dense, idx in _split(g):
            stats[g.key(dense)] = [
                robust_stats(
                    m[idx, j], method=self.method, min_scale=self.min_scale, fallback_scale=self.fallback_scale
                )
                for j in range(m.shape[1])  # one iteration per reward column
            ]
        self._stats = stats
        self._n_columns = m.shape[1]
        return self

    def transform(self, values: ArrayLike, sources: GroupsLike | Hashable | None = None) -> np.ndarray:
        """Normalise with the frozen statistics; an unknown source raises ValueError."""
        stats = self.stats
        one_d = np.ndim(values) == 1 and not _is_ragged(values)
        m = as_float_matrix(values, "values")
        if m.shape[1] != self._n_columns and m.shape[0] > 0:
            raise ValueError(
                f"values has {m.shape[1]} reward columns but the normalizer was fitted on {self._n_columns}"
            )
        g = _as_sources(sources, m.shape[0])
        center = np.full((g.n_groups, self._n_columns), np.nan)
        scale = np.ones((g.n_groups, self._n_columns))
        for dense in g.present():
            key = g.key(int(dense))
            if key not in stats:
                raise ValueError(f"source {key!r} was not in the reference data; known: {sorted(map(str, stats))}")
            center[dense] = [s.center for s in stats[key]]
            scale[dense] = [s.scale for s in stats[key]]
        z = (m - center[g.ids]) / scale[g.ids] if m.shape[0] else m.reshape(0, self._n_columns)
        out = sigmoid(z) if self.method == "median_logistic" else z
        return out[:, 0] if one_d and out.shape[1] == 1 else out

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (config and the frozen statistics)."""
        return {
            "method": self.method,
            "min_scale": self.min_scale,
            "fallback_scale": self.fallback_scale,
            "n_columns": self._n_columns,
            "stats": None
            if self._stats is None
            else [[_json_key(k), [[s.center, s.scale, s.count] for s in v]] for k, v in self._stats.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            method=state["method"], min_scale=state["min_scale"], fallback_scale=state["fallback_scale"]
        )
        self._n_columns = int(state["n_columns"])
        if state["stats"] is not None:
            self._stats = {k: [NormStats(float(c), float(s), int(n)) for c, s, n in v] for k, v in state["stats"]}


def _is_ragged(values: Any) -> bool:
    return not isinstance(values, np.ndarray) and any(isinstance(v, list | tuple | np.ndarray) for v in values)
