"""Shaping: group/batch transforms over scores (advantages, PAR, PRM clip/delta, normalisation,
calibration, noise, difficulty, diagnostics). See docs/shaping.md.

Pure functions share one signature, ``fn(rewards, groups, *, option=...) -> np.ndarray``;
``None``/NaN rewards are "not applicable" and never produce a NaN advantage.
"""

from medreward.shape.advantages import (
    TRL_EPS,
    VERL_EPS,
    Convention,
    Scale,
    dr_grpo_advantages,
    gdpo_advantages,
    grpo_advantages,
    rloo_advantages,
)
from medreward.shape.calibration import (
    CONFIDENCE_PATTERN,
    CalibrationMode,
    ConfidenceCalibrator,
    calibrated_reward,
    parse_confidence,
    strip_confidence,
)
from medreward.shape.dataset_norm import (
    NormMethod,
    NormStats,
    ReferenceFrozenNormalizer,
    RunningMedianNormalizer,
    median_logistic,
    robust_stats,
)
from medreward.shape.diagnostics import ZeroVarianceReport, zero_variance_groups
from medreward.shape.difficulty import (
    dense_pass_reward,
    difficulty_weights,
    group_pass_rate,
    hard_sample_mask,
    verpo_reward,
)
from medreward.shape.noise import SeedLike, flip_rewards, group_flip_mask
from medreward.shape.par import lsc_reward, par_reward
from medreward.shape.preference_strength import (
    disagreement_weights,
    ensemble_members,
    ensemble_std,
    pair_preference_strength,
    uncertainty_weighted_rewards,
)
from medreward.shape.process import (
    RaggedSteps,
    add_final_reward,
    prm_clip,
    prm_clip_delta,
    prm_delta,
)

__all__ = [
    # PPO-C calibration
    "CONFIDENCE_PATTERN",
    "TRL_EPS",
    "VERL_EPS",
    "CalibrationMode",
    "ConfidenceCalibrator",
    "Convention",
    "NormMethod",
    # per-dataset normalisation
    "NormStats",
    # process rewards
    "RaggedSteps",
    "ReferenceFrozenNormalizer",
    "RunningMedianNormalizer",
    "Scale",
    # noise
    "SeedLike",
    # diagnostics
    "ZeroVarianceReport",
    "add_final_reward",
    "calibrated_reward",
    "dense_pass_reward",
    "disagreement_weights",
    "difficulty_weights",
    "dr_grpo_advantages",
    "ensemble_members",
    "ensemble_std",
    "flip_rewards",
    "gdpo_advantages",
    "group_flip_mask",
    # difficulty
    "group_pass_rate",
    # advantages
    "grpo_advantages",
    "hard_sample_mask",
    "lsc_reward",
    "median_logistic",
    "pair_preference_strength",
    # PAR / LSC
    "par_reward",
    "parse_confidence",
    "prm_clip",
    "prm_clip_delta",
    "prm_delta",
    "rloo_advantages",
    "robust_stats",
    "strip_confidence",
    "uncertainty_weighted_rewards",
    "verpo_reward",
    "zero_variance_groups",
]
