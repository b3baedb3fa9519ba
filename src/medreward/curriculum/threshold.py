"""Performance-aware threshold curriculum (MedLoc-R1, arXiv 2603.28120, CVPR 2026).

MedLoc-R1 tightens the IoU threshold of a binary localisation reward ``1[IoU ≥ τ]`` as the
policy improves, so early training gets dense signal and late training strict signal. The
paper's abstract names a sliding-window performance tracker and a multi-condition update rule;
its window size, conditions and schedule are [NOT PUBLIC] (README-only repo). This module
implements an [UNVERIFIED: inferred] stand-in (docs/formulas.md#threshold-curriculum):

Move ``τ_k → τ_{k+1}`` along ``ladder`` only when **all** hold —

1. the window of the last ``window`` observations is full;
2. window-mean success rate ``≥ min_success`` (s_min);
3. window std of success (population std) ``≤ max_std`` (ε, stability);
4. window-mean metric ``≥ τ_{k+1} − delta`` (for ``higher_is_better=False``, e.g. a numeric
   tolerance judged by an error metric: ``≤ τ_{k+1} + delta``);
5. at least ``cooldown`` observations since the last change (or since the start).

Choices where the reference is silent: τ never loosens; after a change the window is cleared
(``reset_window_on_change=True``), because success rates measured at the old τ say nothing
about the new one; every change is recorded as a :class:`ThresholdChange` and logged.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MetricWindow", "ThresholdChange", "ThresholdCurriculum"]

logger = logging.getLogger(__name__)

DEFAULT_LADDER = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class ThresholdChange:
    """One tightening step: at observation ``step``, ``old`` → ``new``, and the evidence for it."""

    step: int
    old: float
    new: float
    window_mean_success: float
    window_std_success: float
    window_mean_metric: float


class MetricWindow:
    """Sliding window of the last ``size`` (success, metric) observations.

    >>> w = MetricWindow(2)
    >>> for s in (0.2, 0.6, 0.8):
    ...     w.push(s, 0.5)
    >>> w.full, w.mean_success, round(w.std_success, 3)
    (True, 0.7, 0.1)
    """

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"window must be a positive integer, got {size!r}")
        self.size = size
        self._success: deque[float] = deque(maxlen=size)
        self._metric: deque[float] = deque(maxlen=size)

    def push(self, success: float, metric: float) -> None:
        self._success.append(float(success))
        self._metric.append(float(metric))

    def clear(self) -> None:
        self._success.clear()
        self._metric.clear()

    def __len__(self) -> int:
        return len(self._success)

    @property
    def full(self) -> bool:
        return len(self._success) == self.size

    @property
    def mean_success(self) -> float:
        return float(np.mean(self._success)) if self._success else math.nan

    @property
    def std_success(self) -> float:
        return float(np.std(self._success)) if self._success else math.nan

    @property
    def mean_metric(self) -> float:
        return float(np.mean(self._metric)) if self._metric else math.nan

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "success": list(self._success), "metric": list(self._metric)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(int(state["size"]))  # type: ignore[misc]
        for s, m in zip(state["success"], state["metric"]):
            self.push(s, m)


class ThresholdCurriculum:
    """Tighten a reward parameter along a ladder when the policy is reliably good at the current one.

    Call :meth:`observe` once per training step with that step's success rate (at the current
    threshold) and mean metric; it returns the threshold to use next.

    >>> cur = ThresholdCurriculum([0.1, 0.3, 0.5], window=2, min_success=0.6, max_std=0.1, delta=0.05)
    >>> [cur.observe(success=0.8, metric=0.5) for _ in range(5)]
    [0.1, 0.3, 0.3, 0.5, 0.5]
    >>> [(c.step, c.old, c.new) for c in cur.changes]
    [(2, 0.1, 0.3), (4, 0.3, 0.5)]
    """

    def __init__(
        self,
        ladder: Sequence[float] = DEFAULT_LADDER,
        *,
        window: int = 10,
        min_success: float = 0.6,
        max_std: float = 0.1,
        delta: float = 0.05,
        cooldown: int = 0,
        higher_is_better: bool = True,
        reset_window_on_change: bool = True,
    ) -> None:
        ladder = [float(x) for x in ladder]
        if not ladder or not all(math.isfinite(x) for x in ladder):
            raise ValueError("ladder must be a non-empty sequence of finite numbers")
        steps = np.diff(ladder)
        if higher_is_better and np.any(steps <= 0):
            raise ValueError(f"ladder must be strictly increasing when higher_is_better=True, got {ladder}")
        if not higher_is_better and np.any(steps >= 0):
            raise ValueError(f"ladder must be strictly decreasing when higher_is_better=False, got {ladder}")
        if not 0.0 <= float(min_success) <= 1.0:
            raise ValueError(f"min_success must be in [0, 1], got {min_success}")
        if not float(max_std) >= 0.0:
            raise ValueError(f"max_std must be >= 0, got {max_std}")
        if not (float(delta) >= 0.0 and math.isfinite(float(delta))):
            raise ValueError(f"delta must be a finite number >= 0, got {delta}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f"cooldown must be an integer >= 0, got {cooldown!r}")
        self.ladder = tuple(ladder)
        self.min_success = float(min_success)
        self.max_std = float(max_std)
        self.delta = float(delta)
        self.cooldown = cooldown
        self.higher_is_better = bool(higher_is_better)
        self.reset_window_on_change = bool(reset_window_on_change)
        self._window = MetricWindow(window)
        self._level = 0
        self._step = 0
        self._last_change_step = 0
        self._changes: list[ThresholdChange] = []

    # --- read-only state -------------------------------------------------------------------
    @property
    def value(self) -> float:
        """The current threshold."""
        return self.ladder[self._level]

    @property
    def level(self) -> int:
        """Index of the current threshold in the ladder."""
        return self._level

    @property
    def step(self) -> int:
        """Number of observations so far."""
        return self._step

    @property
    def at_last_rung(self) -> bool:
        return self._level == len(self.ladder) - 1

    @property
    def changes(self) -> tuple[ThresholdChange, ...]:
        return tuple(self._changes)

    @property
    def window(self) -> MetricWindow:
        return self._window

    # --- update rule -----------------------------------------------------------------------
    def ready(self) -> bool:
        """Do all the conditions for the next tightening hold now?"""
        if self.at_last_rung or not self._window.full:
            return False
        if self._step - self._last_change_step < self.cooldown:
            return False
        nxt = self.ladder[self._level + 1]
        metric = self._window.mean_metric
        metric_ok = metric >= nxt - self.delta if self.higher_is_better else metric <= nxt + self.delta
        return self._window.mean_success >= self.min_success and self._window.std_success <= self.max_std and metric_ok

    def observe(self, success: float, metric: float) -> float:
        """Record one step's success rate (in [0, 1]) and mean metric; return the threshold to use next."""
        success = float(success)
        metric = float(metric)
        if not 0.0 <= success <= 1.0:
            raise ValueError(f"success must be a rate in [0, 1], got {success}")
        if not math.isfinite(metric):
            raise ValueError(f"metric must be finite, got {metric}")
        self._step += 1
        self._window.push(success, metric)
        if self.ready():
            change = ThresholdChange(
                step=self._step,
                old=self.value,
                new=self.ladder[self._level + 1],
                window_mean_success=self._window.mean_success,
                window_std_success=self._window.std_success,
                window_mean_metric=self._window.mean_metric,
            )
            self._level += 1
            self._last_change_step = self._step
            self._changes.append(change)
            if self.reset_window_on_change:
                self._window.clear()
            logger.info("threshold curriculum: %g -> %g at step %d", change.old, change.new, change.step)
        return self.value

    # --- persistence -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "ladder": list(self.ladder),
            "window": self._window.size,
            "min_success": self.min_success,
            "max_std": self.max_std,
            "delta": self.delta,
            "cooldown": self.cooldown,
            "higher_is_better": self.higher_is_better,
            "reset_window_on_change": self.reset_window_on_change,
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: config plus everything a resumed run needs to continue identically."""
        return {
            "config": self.config(),
            "level": self._level,
            "step": self._step,
            "last_change_step": self._last_change_step,
            "window": self._window.state_dict(),
            "changes": [asdict(c) for c in self._changes],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state; its config must match this object's (ValueError otherwise)."""
        if state["config"] != self.config():
            raise ValueError(f"state was saved with config {state['config']}, this curriculum has {self.config()}")
        level = int(state["level"])
        if not 0 <= level < len(self.ladder):
            raise ValueError(f"level {level} is outside the ladder of {len(self.ladder)} rungs")
        self._level = level
        self._step = int(state["step"])
        self._last_change_step = int(state["last_change_step"])
        self._window.load_state_dict(state["window"])
        self._changes = [ThresholdChange(**c) for c in state["changes"]]

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ThresholdCurriculum:
        obj = cls(**state["config"])
        obj.load_state_dict(state)
        return obj

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ThresholdCurriculum:
        return cls.from_state_dict(json.loads(Path(path).read_text(encoding="utf-8")))
