"""Preference-strength shaping from a reward-model ensemble's disagreement: the weights and weighted
rewards by hand, Secrets-of-RLHF-II pair statistics against numpy, and reading the disagreement
from records scored by an ensemble ``reward_model``."""

from __future__ import annotations

import doctest
import importlib
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

from medreward import shape
from medreward.records import Rollout, ScoredRecord, Status
from medreward.rewards.reward_model import RewardModel

sys.path.insert(0, str(Path(__file__).parents[1] / "rewards"))
from fake_backend import FakeScoringBackend  # noqa: E402

module = importlib.import_module("medreward.shape.preference_strength")


def test_examples_run():
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_weights_are_exp_of_minus_std_over_tau():
    std = [0.0, 0.25, 1.0, 3.0]
    for tau in (0.5, 1.0, 2.0):
        assert shape.disagreement_weights(std, tau=tau).tolist() == pytest.approx([math.exp(-s / tau) for s in std])
    w = shape.disagreement_weights(np.linspace(0, 10, 50), tau=1.5)
    assert np.all(np.diff(w) < 0) and w[0] == 1.0 and np.all(w > 0)  # more disagreement, less weight


def test_weighted_rewards_keep_agreed_rewards_and_nan_stays_nan():
    out = shape.uncertainty_weighted_rewards([1.5, -2.0, None, 4.0], [0.0, 1.0, 0.0, None], tau=2.0)
    assert out[0] == 1.5 and out[1] == pytest.approx(-2.0 * math.exp(-0.5))
    assert math.isnan(out[2]) and math.isnan(out[3])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: shape.disagreement_weights([0.1], tau=0.0), "tau"),
        (lambda: shape.disagreement_weights([0.1], tau=float("inf")), "tau"),
        (lambda: shape.disagreement_weights([-0.1]), ">= 0"),
        (lambda: shape.uncertainty_weighted_rewards([1.0, 2.0], [0.1]), "length"),
        (lambda: shape.pair_preference_strength([[1.0, 2.0]], [[1.0]]), "pairs × members"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_preference_strength_matches_numpy_per_pair():
    rng = np.random.default_rng(7)
    chosen, rejected = rng.normal(size=(20, 5)), rng.normal(size=(20, 5))
    chosen[3, 1] = np.nan  # a member without a score on one side drops out of that pair
    rejected[4, :] = np.nan  # no member on both sides: NaN
    mean, std = shape.pair_preference_strength(chosen, rejected)
    d = chosen - rejected
    for i in range(20):
        row = d[i][~np.isnan(d[i])]
        if row.size == 0:
            assert math.isnan(mean[i]) and math.isnan(std[i])
        else:
            assert mean[i] == pytest.approx(row.mean()) and std[i] == pytest.approx(row.std(ddof=0))


def _ensemble_records():
    values = {"a": {"x": 1.0, "y": 4.0}, "b": {"x": 3.0, "y": 4.0}}
    component = RewardModel(name="rm", backends=["a", "b"])
    component.bind_backends({n: FakeScoringBackend(name=n, scorer=lambda r, v=v: (v[r.completion],)) for n, v in values.items()})
    scores = component.score_batch([Rollout(completion="x"), Rollout(completion="y")])
    records = [ScoredRecord({}, s.value, {"rm": s.value}, s.status, {"rm": s.info}) for s in scores]
    records.append(ScoredRecord({}, None, {"rm": None}, Status.ERROR, {"error": "rm: a: timeout"}))
    return records


def test_disagreement_is_read_from_scored_records_and_their_json():
    records = _ensemble_records()
    for form in (records, [r.to_dict() for r in records]):
        std = shape.ensemble_std(form, "rm")
        assert std[:2].tolist() == [statistics.pstdev([1.0, 3.0]), 0.0] and math.isnan(std[2])
        names, members = shape.ensemble_members(form, "rm")
        assert names == ["a", "b"] and members[:2].tolist() == [[1.0, 3.0], [4.0, 4.0]] and np.isnan(members[2]).all()
    rewards = [r.reward for r in records]
    shaped = shape.uncertainty_weighted_rewards(rewards, shape.ensemble_std(records, "rm"), tau=1.0)
    assert shaped[0] == pytest.approx(2.0 * math.exp(-1.0)) and shaped[1] == 4.0 and math.isnan(shaped[2])
