"""Task-mix curriculum: sampling weights per dataset source as a function of training step.

MedCCO (close-ended questions first, open-ended later) trains on verifiable close-ended tasks
(MCQ, labels) before moving to open-ended ones. MedCCO publishes no formula (docs/formulas.md#task-mix-schedule), so the
schedule is our choice: sampling weights move from a ``start`` mix to an ``end`` mix between
``start_step`` and ``end_step``,

* ``kind="linear"``: ``w(t) = (1 − p)·w_start + p·w_end``, ``p = clip((t − start)/(end − start), 0, 1)``;
* ``kind="step"``: the same with ``p`` rounded down to one of ``stages`` stairs
  (``stages=1``: a single switch at ``end_step``),

renormalised to sum to 1. The schedule is a pure function of the step (deterministic), and
the object also tracks the current step so a resumed run picks up where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["RampKind", "TaskMixSchedule"]

RampKind = Literal["linear", "step"]


def _check_weights(weights: Mapping[str, float], name: str) -> dict[str, float]:
    out = {str(k): float(v) for k, v in weights.items()}
    if not out:
        raise ValueError(f"{name} must name at least one source")
    if any(not (math.isfinite(v) and v >= 0.0) for v in out.values()):
        raise ValueError(f"{name} weights must be finite and >= 0, got {out}")
    if sum(out.values()) <= 0.0:
        raise ValueError(f"{name} weights must not all be 0")
    return out


def _check_step(step: int, name: str = "step") -> int:
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {step!r}")
    return int(step)


class TaskMixSchedule:
    """Per-source sampling weights that ramp from ``start`` to ``end``.

    >>> mix = TaskMixSchedule.close_to_open(["mcq"], ["open_qa"], start_step=0, end_step=100)
    >>> mix.weights(0), mix.weights(25), mix.weights(500)
    ({'mcq': 1.0, 'open_qa': 0.0}, {'mcq': 0.75, 'open_qa': 0.25}, {'mcq': 0.0, 'open_qa': 1.0})
    >>> mix.counts(10, step=25)
    {'mcq': 8, 'open_qa': 2}
    """

    def __init__(
        self,
        start: Mapping[str, float],
        end: Mapping[str, float],
        *,
        start_step: int = 0,
        end_step: int = 1000,
        kind: RampKind = "linear",
        stages: int = 1,
    ) -> None:
        start_w = _check_weights(start, "start")
        end_w = _check_weights(end, "end")
        self.start_step = _check_step(start_step, "start_step")
        self.end_step = _check_step(end_step, "end_step")
        if self.end_step < self.start_step:
            raise ValueError(f"end_step ({end_step}) must be >= start_step ({start_step})")
        if kind not in ("linear", "step"):
            raise ValueError(f"kind must be 'linear' or 'step', got {kind!r}")
        if isinstance(stages, bool) or not isinstance(stages, int) or stages < 1:
            raise ValueError(f"stages must be an integer >= 1, got {stages!r}")
        self.kind: RampKind = kind
        self.stages = stages
        self.sources: tuple[str, ...] = tuple(dict.fromkeys([*start_w, *end_w]))
        self._start_raw, self._end_raw = start_w, end_w  # kept as given so config round-trips exactly
        total_s, total_e = sum(start_w.values()), sum(end_w.values())
        self._start = np.array([start_w.get(s, 0.0) / total_s for s in self.sources])
        self._end = np.array([end_w.get(s, 0.0) / total_e for s in self.sources])
        self._step = 0

    @classmethod
    def close_to_open(
        cls,
        closed: Sequence[str],
        open_ended: Sequence[str],
        *,
        start_step: int = 0,
        end_step: int = 1000,
        kind: RampKind = "linear",
        stages: int = 1,
        final_closed_share: float = 0.0,
    ) -> TaskMixSchedule:
        """MedCCO-style mix: uniform over close-ended sources first, open-ended later.

        ``final_closed_share`` keeps that share of close-ended data at the end (default 0).
        """
        if not closed or not open_ended:
            raise ValueError("close_to_open needs at least one closed and one open-ended source")
        if set(closed) & set(open_ended):
            raise ValueError(f"sources cannot be both closed and open-ended: {sorted(set(closed) & set(open_ended))}")
        share = float(final_closed_share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"final_closed_share must be in [0, 1], got {final_closed_share}")
        start = {s: 1.0 / len(closed) for s in closed} | {s: 0.0 for s in open_ended}
        end = {s: share / len(closed) for s in closed} | {s: (1.0 - share) / len(open_ended) for s in open_ended}
        return cls(start, end, start_step=start_step, end_step=end_step, kind=kind, stages=stages)

    # --- schedule ----------------------------------------------------------------------
    def progress(self, step: int | None = None) -> float:
        """Ramp position in [0, 1] at ``step`` (default: the tracked current step)."""
        t = self._step if step is None else _check_step(step)
        if self.end_step == self.start_step:
            p = 0.0 if t < self.start_step else 1.0
        else:
            p = min(1.0, max(0.0, (t - self.start_step) / (self.end_step - self.start_step)))
        if self.kind == "step":
            p = math.floor(p * self.stages) / self.stages
        return p

    def weights_array(self, step: int | None = None) -> np.ndarray:
        """Weights aligned with :attr:`sources`, summing to 1."""
        p = self.progress(step)
        w = (1.0 - p) * self._start + p * self._end
        return w / w.sum()

    def weights(self, step: int | None = None) -> dict[str, float]:
        """``{source: weight}`` at ``step``, summing to 1."""
        return {s: round(float(w), 12) for s, w in zip(self.sources, self.weights_array(step))}

    def counts(self, batch_size: int, step: int | None = None) -> dict[str, int]:
        """Deterministic integer allocation of a batch (largest remainder; ties → earlier source)."""
        batch_size = _check_step(batch_size, "batch_size")
        exact = self.weights_array(step) * batch_size
        base = np.floor(exact + 1e-9).astype(np.int64)  # 1e-9: 0.3*10 must give 3, not 2
        left = batch_size - int(base.sum())
        if left > 0:
            order = np.lexsort((np.arange(exact.size), -(exact - base)))
            base[order[:left]] += 1
        return {s: int(c) for s, c in zip(self.sources, base)}

    # --- tracked step ------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self._step

    def advance(self, n: int = 1) -> int:
        """Move the tracked step forward by ``n``; returns the new step."""
        self._step += _check_step(n, "n")
        return self._step

    # --- persistence -------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "start": dict(self._start_raw),
            "end": dict(self._end_raw),
            "start_step": self.start_step,
            "end_step": self.end_step,
            "kind": self.kind,
            "stages": self.stages,
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (config and current step)."""
        return {"config": self.config(), "step": self._step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step; the saved config must match (ValueError otherwise)."""
        if state["config"] != self.config():
            raise ValueError(f"state was saved with config {state['config']}, this schedule has {self.config()}")
        self._step = _check_step(state["step"])

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TaskMixSchedule:
        obj = cls(**state["config"])
        obj.load_state_dict(state)
        return obj

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TaskMixSchedule:
        return cls.from_state_dict(json.loads(Path(path).read_text(encoding="utf-8")))
