r"""Preference strength from a reward-model ensemble: trust a reward less where the ensemble disagrees.

A ``reward_model`` component with ``backends = [...]`` writes each sample's member rewards
(``info[name]["members"]``) and their population standard deviation ``σ``
(``info[name]["ensemble_std"]``). Two uses:

* :func:`disagreement_weights` / :func:`uncertainty_weighted_rewards` — per sample,
  :math:`w = \exp(-\sigma/\tau)` and :math:`r' = w\,r`: a sample the members agree on keeps its
  reward, an uncertain one is pulled towards 0. [UNVERIFIED: inferred] The idea — an ensemble's
  spread measures how trustworthy a preference or reward is — is Secrets of RLHF II's (Wang et al.,
  arXiv 2401.06080: ten RMs, preference strength = mean and std of the reward differences) and the
  uncertainty penalties of Coste et al. (ICLR 2024); the exponential form and ``τ`` are our choice
  (smooth, 1 at σ = 0, never negative, and one scale parameter in reward units). With normalised
  member rewards (``normalize``), ``τ = 1`` means one standard deviation of disagreement weighs
  ``1/e``. The weight multiplies the reward, so use it on rewards whose 0 is neutral (normalised RM
  scores, or advantages); for a reward that is all-positive, prefer the ensemble's own
  ``mean_minus_std``.
* :func:`pair_preference_strength` — for preference pairs (chosen, rejected) scored by M members: the
  mean :math:`\mu` and std :math:`\sigma` over members of :math:`d_m = r_m(\text{chosen}) -
  r_m(\text{rejected})` — Secrets of RLHF II's preference strength [PAPER, recalled], which it uses to
  find wrong (:math:`\mu < 0`) and ambiguous (:math:`|\mu|` small) preference labels.

:func:`ensemble_std` and :func:`ensemble_members` read those values from scored records (the
:class:`~medreward.records.ScoredRecord` objects or their JSON dicts). NaN means "no value"
(the record was not scored ok, or the component is not an ensemble) and stays NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from medreward.shape._common import ArrayLike, as_float_array, as_float_matrix, check_lengths, check_positive

__all__ = [
    "disagreement_weights",
    "ensemble_members",
    "ensemble_std",
    "pair_preference_strength",
    "uncertainty_weighted_rewards",
]


def disagreement_weights(std: ArrayLike, *, tau: float = 1.0) -> np.ndarray:
    """``w = exp(−σ/τ)`` per sample (see the module docstring); NaN/``None`` σ → NaN.

    >>> disagreement_weights([0.0, 1.0, None], tau=1.0).round(4).tolist()
    [1.0, 0.3679, nan]

    Raises:
        ValueError: ``tau`` is not a finite number > 0, or a σ is negative.
    """
    tau = check_positive(tau, "tau")
    sigma = as_float_array(std, "std")
    if np.any(sigma < 0):
        raise ValueError("std must be >= 0 (a standard deviation)")
    return np.exp(-sigma / tau)


def uncertainty_weighted_rewards(rewards: ArrayLike, std: ArrayLike, *, tau: float = 1.0) -> np.ndarray:
    """``r · exp(−σ/τ)`` per sample; NaN where the reward or σ is NaN/``None``.

    >>> uncertainty_weighted_rewards([2.0, 2.0, None], [0.0, 0.5, 0.0], tau=0.5).round(4).tolist()
    [2.0, 0.7358, nan]
    """
    r = as_float_array(rewards, "rewards")
    w = disagreement_weights(std, tau=tau)
    check_lengths(r.size, w.size, "rewards", "std")
    return r * w


def pair_preference_strength(chosen: ArrayLike, rejected: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over ensemble members of ``r_m(chosen) − r_m(rejected)``, per pair.

    ``chosen`` and ``rejected`` are pairs × members; NaN marks a member without a score, and a pair
    with no member scored on both sides gives NaN.

    >>> mu, sigma = pair_preference_strength([[2.0, 1.0], [0.0, None]], [[0.0, 1.0], [1.0, 1.0]])
    >>> mu.tolist(), sigma.tolist()
    ([1.0, -1.0], [1.0, 0.0])
    """
    c = as_float_matrix(chosen, "chosen")
    r = as_float_matrix(rejected, "rejected", n_rows=c.shape[0])
    if c.shape != r.shape:
        raise ValueError(f"chosen is {c.shape} but rejected is {r.shape} (pairs × members)")
    d = c - r
    count = np.sum(~np.isnan(d), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(d, axis=1) / count
        std = np.sqrt(np.nansum((d - mean[:, None]) ** 2, axis=1) / count)
    mean[count == 0] = np.nan
    std[count == 0] = np.nan
    return mean, std


def ensemble_std(records: Iterable[Any], component: str) -> np.ndarray:
    """``info[component]["ensemble_std"]`` of each scored record (NaN where absent).

    >>> ensemble_std([{"info": {"rm": {"ensemble_std": 0.5}}}, {"info": {"error": "timeout"}}], "rm").tolist()
    [0.5, nan]
    """
    return np.array([_number(_info(rec, component).get("ensemble_std")) for rec in records], dtype=np.float64)


def ensemble_members(records: Iterable[Any], component: str) -> tuple[list[str], np.ndarray]:
    """The member names and a records × members matrix of ``info[component]["members"]`` (NaN
    where a record has no value for a member), members in first-seen order.

    >>> names, values = ensemble_members([{"info": {"rm": {"members": {"a": 1.0, "b": 3.0}}}}, {"info": {}}], "rm")
    >>> names, values.tolist()
    (['a', 'b'], [[1.0, 3.0], [nan, nan]])
    """
    rows = [_info(rec, component).get("members") for rec in records]
    names: dict[str, None] = {}
    for row in rows:
        if isinstance(row, Mapping):
            names.update(dict.fromkeys(map(str, row)))
    columns = list(names)
    out = np.full((len(rows), len(columns)), np.nan)
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            for j, name in enumerate(columns):
                out[i, j] = _number(row.get(name))
    return columns, out


def _info(record: Any, component: str) -> Mapping[str, Any]:
    info = record.get("info") if isinstance(record, Mapping) else getattr(record, "info", None)
    found = info.get(component) if isinstance(info, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan
