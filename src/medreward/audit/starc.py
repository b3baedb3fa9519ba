"""STARC distance between two rewards on the same rollouts (one-step, per prompt).

Source: Skalse, Farnik, Motwani, Jenner, Gleave, Abate, "STARC: A General Framework For
Quantifying Differences Between Reward Functions", ICLR 2024. A STARC metric is
``d(R1, R2) = m(s(R1), s(R2))`` with the standardised reward ``s(R) = c(R) / n(c(R))``: ``c`` a
canonicalisation that removes what does not change the optimal policies (potential shaping,
S'-redistribution), ``n`` a norm, ``m`` a metric. With ``m`` the L2 distance ``d`` lies in
[0, 2]; we halve it so that it lies in [0, 1] (opposite rewards → 1); a constant factor keeps it
a STARC metric, with the paper's regret bounds scaled by it.

The one-step (bandit) case used here, for LLM rollouts (prompt ``x``, completion ``y``):

- **Canonicalisation.** With one step and a terminal next state (its value 0), potential
  shaping is a per-prompt offset ``R(x, y) − Φ(x)`` and S'-redistribution is trivial, so the
  paper's value-adjusted levelling (VAL, its generalisation of EPIC's canonicalisation) becomes
  ``c(R)(x, y) = R(x, y) − E_{y~π(·|x)} R(x, y)``. We take π uniform over the completions
  observed for the prompt: ``c(R)(x, y_i) = R(x, y_i) − mean_j R(x, y_j)`` (per-prompt centring).
  EPIC's own canonicalisation, specialised the same way (a reward of the prompt and completion
  only, zero reward after the terminal state), subtracts the same per-prompt mean plus one
  constant common to all prompts (``γ·E[R]``); we follow VAL, which has no such term.
- **Normalisation.** The L2 norm over the prompt's rollouts: ``r̂ = c(R) / ‖c(R)‖₂``.
- **Distance.** ``d(x) = ‖r̂₁ − r̂₂‖₂ / 2`` per prompt, averaged over prompts (each prompt counts
  once). Equivalently ``d(x) = sqrt((1 − ρ_x) / 2)`` with ``ρ_x`` the Pearson correlation of the
  two rewards over the prompt's rollouts.

Because each prompt is normalised on its own, the distance is 0 exactly when the two rewards
differ by a positive affine map *per prompt* (``R2 = a(x)·R1 + b(x)``, ``a(x) > 0``), i.e. when they
give the same GRPO group advantages ``(r − mean) / std``; the paper's MDP version, which
normalises over all states at once, is invariant to one global positive scale only.

**Skipped prompts.** ``d(x)`` is undefined where a canonical reward is all zero (a reward that is
constant over the prompt's rollouts: the paper then sets ``s(R) = 0``, which would give an
arbitrary 0.5, or 0 when both are constant) and for a prompt with one rollout (its centred
reward is always 0). Such prompts are left out of the mean and counted by reason in
``StarcResult.skipped``; with no prompt left the distance is ``None``, never 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["StarcResult", "starc_distance", "standardise"]

#: a centred reward whose L2 norm is at most this times ``sqrt(n)·max(1, max|r|)`` counts as
#: constant (float noise: the mean of three 0.1s minus 0.1 is not exactly 0)
_CONSTANT_TOL = 1e-9


@dataclass(frozen=True)
class StarcResult:
    """The STARC distance of two rewards over the prompts where it is defined.

    ``distance`` is the mean of the per-prompt distances (None when no prompt was usable);
    ``ci_low``/``ci_high`` a percentile bootstrap interval over prompts (None without
    ``n_boot`` or with fewer than 2 usable prompts); ``skipped`` counts the left-out prompts by
    reason: ``single_rollout``, ``constant_a``, ``constant_b``, ``constant_both``."""

    distance: float | None
    n_groups: int
    n_groups_used: int
    n_groups_skipped: int
    skipped: dict[str, int] = field(default_factory=dict)
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "distance": self.distance, "ci_low": self.ci_low, "ci_high": self.ci_high, "n_groups": self.n_groups,
            "n_groups_used": self.n_groups_used, "n_groups_skipped": self.n_groups_skipped,
            "skipped": dict(self.skipped), "note": self.note,
        }  # fmt: skip


def standardise(rewards: Sequence[float]) -> np.ndarray | None:
    """One prompt's standardised reward: centred on its mean, divided by its L2 norm; None when
    the reward is constant over the rollouts (then there is nothing to standardise).

    >>> standardise([1.0, 0.0, 0.0]).round(4).tolist()
    [0.8165, -0.4082, -0.4082]
    >>> standardise([0.1, 0.1, 0.1]) is None
    True
    """
    r = np.asarray(rewards, dtype=float)
    centred = r - r.mean()
    norm = float(np.linalg.norm(centred))
    scale = np.sqrt(r.size) * max(1.0, float(np.abs(r).max(initial=0.0)))
    if r.size < 2 or norm <= _CONSTANT_TOL * scale:
        return None
    return centred / norm


def starc_distance(
    rewards_a: Sequence[float],
    rewards_b: Sequence[float],
    groups: Sequence[Hashable],
    *,
    n_boot: int = 0,
    seed: int = 0,
) -> StarcResult:
    """STARC distance (one-step, per-prompt centring, L2 normalisation, halved L2 distance) of
    two rewards of the same rollouts; ``groups[i]`` is the prompt (GRPO group) of rollout ``i``.

    Rewards must be finite numbers (drop the records that failed to score first). ``n_boot`` > 0
    adds a percentile bootstrap 95% interval over the usable prompts (seeded).

    >>> groups = ["p1"] * 3 + ["p2"] * 2
    >>> starc_distance([1, 0, 0, 0, 1], [2, 0, 0, 1, 5], groups).distance  # positive affine per prompt
    0.0
    >>> starc_distance([1, 0, 0, 0, 1], [-1, 0, 0, 0, -1], groups).distance  # negation
    1.0
    >>> r = starc_distance([1, 0, 0, 3, 3], [0, 1, 0, 1, 2], groups)
    >>> round(r.distance, 4), r.n_groups_used, r.skipped
    (0.866, 1, {'constant_a': 1})
    """
    a = _finite(rewards_a, "rewards_a")
    b = _finite(rewards_b, "rewards_b")
    if not (len(a) == len(b) == len(groups)):
        raise ValueError(f"rewards_a, rewards_b and groups must have the same length, not {len(a)}, {len(b)}, {len(groups)}")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    skipped: dict[str, int] = {}
    per_group: list[float] = []
    for idx in members.values():
        if len(idx) < 2:
            skipped["single_rollout"] = skipped.get("single_rollout", 0) + 1
            continue
        sa, sb = standardise(a[idx]), standardise(b[idx])
        if sa is None or sb is None:
            reason = "constant_both" if sa is None and sb is None else "constant_a" if sa is None else "constant_b"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        # clip: float noise can put the norm of a difference of unit vectors a hair above 2
        per_group.append(min(1.0, float(np.linalg.norm(sa - sb)) / 2.0))
    n_skipped = sum(skipped.values())
    notes = []
    if n_skipped:
        notes.append(f"{n_skipped} of {len(members)} prompt(s) skipped (distance undefined there): "
                     + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())))  # fmt: skip
    if not per_group:
        notes.append("no prompt with at least 2 rollouts and a non-constant reward under both: distance undefined")
        return StarcResult(None, len(members), 0, n_skipped, skipped, note="; ".join(notes))
    d = np.asarray(per_group)
    low = high = None
    if n_boot > 0 and d.size >= 2:
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
        low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    elif n_boot > 0:
        notes.append("one usable prompt: no bootstrap interval")
    return StarcResult(float(d.mean()), len(members), d.size, n_skipped, skipped, low, high, "; ".join(notes))


def _finite(values: Sequence[float], name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: every reward must be a number (leave out records without a reward)") from None
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of rewards")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: rewards must be finite (leave out records without a reward: NaN/None/inf found)")
    return array
