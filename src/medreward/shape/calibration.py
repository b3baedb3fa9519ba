"""PPO-C confidence-calibrated reward (Leng et al., "Taming Overconfidence in LLMs").

Source: SeanLeng1/Reward-Calibration ``OpenRLHF/openrlhf/trainer/ppo_utils/
calibrated_experience_maker.py`` — docs/formulas.md#ppo-c-calibration [CODE]. The policy ends its answer with
``Confidence: c`` (0–10). The reward model scores the answer *without* that string; the score
is clamped to [−10, 10]; an EMA of batch-mean rewards ``r̄`` is updated (before use); then

* ``threshold`` (default): ``Δ = w·|r|·(ĉ − 0.5)``, ``r' = r + Δ`` if ``r ≥ r̄`` else ``r − Δ``;
* ``difference``: ``r' = r + w·(r − r̄)·(ĉ − 0.5)``;

with ``ĉ = c/10``, ``w = 0.5`` and EMA rate ``α = 0.1``. A confident good answer gains, a
confident bad one loses. (The repo's ``avg_type='std'`` variant is not implemented.)

Bad input: a NaN/``None`` reward stays NaN and is left out of the EMA; a batch with no valid
reward leaves the EMA unchanged; a NaN confidence counts as missing (5).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from medreward.shape._common import (
    ArrayLike,
    JsonState,
    as_float_array,
    check_choice,
    check_finite,
    check_lengths,
    check_positive,
    check_probability,
)

__all__ = [
    "CONFIDENCE_PATTERN",
    "CalibrationMode",
    "ConfidenceCalibrator",
    "calibrated_reward",
    "parse_confidence",
    "strip_confidence",
]

CalibrationMode = Literal["threshold", "difference"]

# Both patterns are the repo's. Neither nests quantifiers, so Python's backtracking engine stays
# linear on adversarial completions (each "Confidence:" start scans its own whitespace once).
CONFIDENCE_PATTERN = re.compile(r"Confidence:\s*(\d+(\.\d+)?)", re.IGNORECASE)
_STRIP_PATTERN = re.compile(r"Confidence:\s*\d+(?:\.\d+)?(?:/\d+)?\s*[,.!?]* *", re.IGNORECASE)
_DEFAULT_CONFIDENCE = 5.0


def parse_confidence(texts: Sequence[str], *, default: float = _DEFAULT_CONFIDENCE) -> np.ndarray:
    """Verbalised confidence ``c`` of each text: the first ``Confidence: <number>``, clamped to [0, 10].

    A text without one (or ``None``) gets ``default`` = 5, the neutral value of the repo.
    ``"7/10"`` reads as 7, as in the repo.

    >>> parse_confidence(["... Confidence: 8", "confidence:12.5", "no idea", "Confidence: 7/10"]).tolist()
    [8.0, 10.0, 5.0, 7.0]
    """
    default = check_finite(default, "default")
    out = np.full(len(texts), default, dtype=np.float64)
    for i, text in enumerate(texts):  # regex per text; there is no vectorised string search
        if not isinstance(text, str):
            continue
        match = CONFIDENCE_PATTERN.search(text)
        if match:
            out[i] = min(10.0, max(0.0, float(match.group(1))))
    return out


def strip_confidence(texts: Sequence[str]) -> list[str]:
    """Remove every ``Confidence: c`` statement (and trailing punctuation), then right-strip.

    The reward model must score the answer without the confidence string (repo behaviour;
    its EOS re-appending is tokenizer-specific and left to the caller). A text without one is
    returned unchanged.

    >>> strip_confidence(["The answer is B. Confidence: 9/10.", "No confidence here "])
    ['The answer is B.', 'No confidence here ']
    """
    out = []
    for text in texts:
        if isinstance(text, str) and CONFIDENCE_PATTERN.search(text):
            out.append(_STRIP_PATTERN.sub("", text).rstrip())
        else:
            out.append(text)
    return out


def calibrated_reward(
    rewards: ArrayLike,
    confidence: ArrayLike,
    *,
    reward_mean: float,
    w: float = 0.5,
    mode: CalibrationMode = "threshold",
    clip: float = 10.0,
) -> np.ndarray:
    """PPO-C adjustment of clamped rewards given the (already updated) running mean ``r̄``.

    ``confidence`` is ``c`` on the 0–10 scale (as :func:`parse_confidence` returns).

    >>> calibrated_reward([2.0, -1.0, 2.0], [10.0, 10.0, 0.0], reward_mean=0.0).tolist()
    [2.5, -1.25, 1.5]
    """
    check_choice(mode, "mode", ("threshold", "difference"))
    w = check_finite(w, "w")
    clip = check_positive(clip, "clip")
    reward_mean = check_finite(reward_mean, "reward_mean")
    r = np.clip(as_float_array(rewards, "rewards"), -clip, clip)
    c = as_float_array(confidence, "confidence")
    check_lengths(r.size, c.size, "rewards", "confidence")
    c_hat = np.clip(np.where(np.isnan(c), _DEFAULT_CONFIDENCE, c), 0.0, 10.0) / 10.0
    if mode == "threshold":
        delta = w * np.abs(r) * (c_hat - 0.5)
        return np.where(r >= reward_mean, r + delta, r - delta)  # NaN r: NaN either way
    return r + w * (r - reward_mean) * (c_hat - 0.5)


class ConfidenceCalibrator(JsonState):
    """Stateful PPO-C: keeps the EMA ``r̄`` across batches.

    ``initial_mean`` stands for the repo's ``reward_model.mean`` (the RM's saved mean score).

    >>> cal = ConfidenceCalibrator(initial_mean=0.0)
    >>> cal([2.0, -1.0], [10.0, 10.0]).tolist()
    [2.5, -1.25]
    >>> round(cal.reward_mean, 4)
    0.05
    """

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        w: float = 0.5,
        mode: CalibrationMode = "threshold",
        initial_mean: float = 0.0,
        clip: float = 10.0,
    ) -> None:
        self.alpha = check_probability(alpha, "alpha")
        self.w = check_finite(w, "w")
        self.mode: CalibrationMode = check_choice(mode, "mode", ("threshold", "difference"))  # type: ignore[assignment]
        self.clip = check_positive(clip, "clip")
        self.reward_mean = check_finite(initial_mean, "initial_mean")
        self.n_updates = 0

    def update(self, rewards: ArrayLike) -> float:
        """EMA update ``r̄ ← α·mean_batch(clamp(r)) + (1−α)·r̄``; returns the new ``r̄``."""
        r = np.clip(as_float_array(rewards, "rewards"), -self.clip, self.clip)
        valid = r[~np.isnan(r)]
        if valid.size:
            self.reward_mean = self.alpha * float(valid.mean()) + (1.0 - self.alpha) * self.reward_mean
            self.n_updates += 1
        return self.reward_mean

    def __call__(self, rewards: ArrayLike, confidence: ArrayLike) -> np.ndarray:
        """Update the EMA with this batch, then adjust it (the repo's order)."""
        r = as_float_array(rewards, "rewards")
        check_lengths(r.size, np.size(confidence), "rewards", "confidence")
        self.update(r)
        return calibrated_reward(r, confidence, reward_mean=self.reward_mean, w=self.w, mode=self.mode, clip=self.clip)

    def state_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "w": self.w,
            "mode": self.mode,
            "clip": self.clip,
            "reward_mean": self.reward_mean,
            "n_updates": self.n_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            alpha=state["alpha"],
            w=state["w"],
            mode=state["mode"],
            initial_mean=state["reward_mean"],
            clip=state["clip"],
        )
        self.n_updates = int(state["n_updates"])
