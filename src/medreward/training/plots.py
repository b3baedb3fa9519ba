"""The end-of-run plot: reward, task metric, completion length and hedge ratio per step (PNG).

Read from the Trainer's ``log_history`` (what TRL logged each step): ``reward``, the spec's main
component (``medreward/<spec>/<component>/mean``), ``completions/mean_length`` and
``medreward/labels/hedge_ratio``; held-out evaluations (``heldout/...``) are drawn as markers on
the reward and metric panels. matplotlib is imported lazily with the Agg backend (no display);
without it the plot is skipped with a warning (``pip install 'medreward[audit]'`` has it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_training", "series"]

log = logging.getLogger(__name__)


def series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of one logged key (entries without it, or with a non-finite value, skipped).

    >>> series([{"step": 1, "reward": 0.5}, {"step": 2}, {"step": 3, "reward": 0.7}], "reward")
    ([1, 3], [0.5, 0.7])
    """
    steps, values = [], []
    for entry in history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            steps.append(int(entry.get("step", len(steps))))
            values.append(float(value))
    return steps, values


def plot_training(history: Sequence[Mapping[str, Any]], path: str | Path, *, metric_key: str,
                  heldout_prefix: str | None = None, title: str = "") -> Path | None:
    """Write the 4-panel PNG to ``path``; ``None`` (and a warning) when matplotlib is missing or
    nothing was logged."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no plot: matplotlib is not installed (pip install 'medreward[train]')")
        return None
    panels = [
        ("reward", "reward (train)", f"{heldout_prefix}/mean_reward" if heldout_prefix else None),
        (metric_key, metric_key.removeprefix("medreward/"), f"{heldout_prefix}/{_heldout_metric(history, heldout_prefix)}"
         if heldout_prefix else None),
        ("completions/mean_length", "completion length (tokens)", None),
        ("medreward/labels/hedge_ratio", "hedge ratio (predicted / reference labels)", None),
    ]
    if not any(series(history, key)[0] for key, _, _ in panels):
        log.warning("no plot: the log history holds none of %s", [key for key, _, _ in panels])
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, (key, label, held) in zip(axes.flat, panels):
        steps, values = series(history, key)
        if steps:
            ax.plot(steps, values, marker="." if len(steps) < 30 else None, label="train")
        if held:
            h_steps, h_values = series(history, held)
            if h_steps:
                ax.plot(h_steps, h_values, "o--", label="held-out")
                ax.legend(fontsize=8)
        if not steps and not held:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _heldout_metric(history: Sequence[Mapping[str, Any]], prefix: str | None) -> str:
    """The held-out task metric logged under ``prefix`` (micro_f1, accuracy, ...), else pass_at_1."""
    skip = {"mean_reward", "pass_at_1", "pass_at_k", "maj_at_k", "format_rate", "mean_length_tokens", "hedge_ratio"}
    for entry in history:
        for key in entry:
            if prefix and key.startswith(prefix + "/") and key.split("/")[-1] not in skip:
                return key.split("/")[-1]
    return "pass_at_1"
