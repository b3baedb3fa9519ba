"""Slices (medreward.audit.slices): per-slice tables by nested field paths with a "(missing)" slice,
the length–reward correlation (against scipy), and the fraction of GRPO groups with zero reward
variance, including groups derived from prompts and records without a reward."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from medreward import Scorer
from medreward.audit.slices import (
    MISSING, completion_length, field_value, group_keys, length_reward_correlation, slice_records, slice_table,
    zero_variance_group_fraction, zero_variance_groups,
)  # fmt: skip


RECORDS = [
    {"task": "mcq", "case": {"patient": {"sex": "F", "age": 71}}},
    {"task": "mcq", "case": {"patient": {"sex": "M", "age": 30}}},
    {"task": "icd_coding", "case": {"patient": {"sex": "F"}}},
    {"task": "icd_coding", "case": {"patient": {}}},
    {"task": "icd_coding"},
    {"task": "mcq", "case": {"patient": {"sex": None}}},
    {"case": "not an object", "task": "toxicology"},
]
REWARDS = [1.0, 0.0, 0.5, 0.25, None, 0.75, 0.4]


def test_slices_by_a_nested_field_with_a_missing_slice():
    rows = {r.key: r for r in slice_records(RECORDS, REWARDS, "case.patient.sex")}
    assert list(rows) == ["F", "M", MISSING]  # sorted, missing last
    assert rows["F"].n == 2 and rows["F"].mean == pytest.approx(0.75) and rows["F"].std == pytest.approx(0.25)
    assert rows["M"].n == 1 and rows["M"].mean == 0.0 and rows["M"].std == 0.0
    # no "sex" key, no "patient", a null, and a "case" that is not an object: all missing; one has no reward
    missing = rows[MISSING]
    assert missing.n == 3 and missing.n_error == 1
    assert missing.mean == pytest.approx((0.25 + 0.75 + 0.4) / 3)
    overall = np.mean([r for r in REWARDS if r is not None])
    assert missing.gap == pytest.approx(missing.mean - overall)
    assert sum(r.n + r.n_error for r in rows.values()) == len(RECORDS)
    assert json.loads(json.dumps([r.to_dict() for r in rows.values()], allow_nan=False))[0]["key"] == "F"


def test_slices_by_task_and_numeric_fields():
    by_task = {r.key: r for r in slice_records(RECORDS, REWARDS, "task")}
    assert set(by_task) == {"mcq", "icd_coding", "toxicology"}
    assert by_task["icd_coding"].n == 2 and by_task["icd_coding"].n_error == 1
    assert by_task["mcq"].mean == pytest.approx((1.0 + 0.0 + 0.75) / 3)
    assert by_task["mcq"].std == pytest.approx(float(np.std([1.0, 0.0, 0.75])))
    ages = [r.key for r in slice_records(RECORDS, REWARDS, "case.patient.age")]
    assert ages == ["30", "71", MISSING]


def test_field_paths():
    record = {"a.b": 1, "a": {"b": 2, "list": [{"x": "first"}, {"x": "second"}]}, "zero": 0, "empty": ""}
    assert field_value(record, "a.b") == 1  # a key holding a dot wins over the path
    assert field_value(record, "a.list.1.x") == "second"
    assert field_value(record, "a.list.-1.x") == "second"
    assert field_value(record, "a.list.5.x") == MISSING
    assert field_value(record, "a.list.x") == MISSING
    assert field_value(record, "zero") == 0 and field_value(record, "empty") == ""  # falsy values are not missing


def test_slice_table_without_any_reward_in_a_slice():
    rows = slice_table([None, None, 2.0], ["x", "x", "y"])
    assert rows[0].key == "x" and rows[0].n == 0 and rows[0].mean is None and rows[0].n_error == 2
    assert rows[1].gap == 0.0
    assert [r.to_dict() for r in slice_table([], [])] == []
    with pytest.raises(ValueError, match="same length"):
        slice_table([1.0], [])


def test_length_reward_correlation_equals_scipy():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 400, size=120)
    rewards = np.clip(lengths / 400 + rng.normal(scale=0.3, size=120), 0, 1).round(1)  # ties
    rewards_with_errors = [None if i % 10 == 0 else float(r) for i, r in enumerate(rewards)]
    result = length_reward_correlation(lengths.tolist(), rewards_with_errors, n_boot=200)
    keep = [i for i in range(120) if i % 10]
    assert result.n == len(keep) and "12 record(s) without a reward" in result.note
    assert result.spearman.value == pytest.approx(spearmanr(lengths[keep], rewards[keep]).statistic, abs=1e-12)
    assert result.pearson.value == pytest.approx(pearsonr(lengths[keep], rewards[keep]).statistic, abs=1e-12)
    assert result.spearman.ci_low < result.spearman.value < result.spearman.ci_high
    flat = length_reward_correlation([10, 20, 30], [1.0, 1.0, 1.0], n_boot=0)
    assert flat.spearman.value is None and "the ratings are constant" not in flat.spearman.note
    assert "undefined: the rewards are constant" == flat.pearson.note == flat.spearman.note
    same_length = length_reward_correlation([10, 10, 10], [0.0, 1.0, 0.5], n_boot=0)
    assert same_length.spearman.value is None and same_length.spearman.note == "undefined: the lengths are constant"


def test_completion_length():
    assert completion_length({"completion": "one two  three\nfour"}) == 4
    assert completion_length({"completion": "one two"}, unit="chars") == 7
    conversation = [{"role": "user", "content": "ignored words here"}, {"role": "assistant", "content": "a b"}]
    assert completion_length({"completion": conversation}) == 2
    assert completion_length({}) == 0 and completion_length({"completion": None}) == 0
    with pytest.raises(ValueError, match="unit"):
        completion_length({"completion": "x"}, unit="tokens")


def test_zero_variance_groups_by_hand():
    rewards = [1.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.5, None, 0.3, None, 0.7, 0.7 + 1e-15]
    groups = ["a", "a", "a", "b", "b", "c", "c", "c", "d", "e", "f", "f"]
    # a: flat; b: varies; c: flat (None left out); d: one reward; e: none; f: flat within float noise
    result = zero_variance_groups(rewards, groups)
    assert (result.n_groups, result.n_zero_variance, result.n_too_small) == (4, 3, 2)
    assert result.fraction == pytest.approx(3 / 4) == zero_variance_group_fraction(rewards, groups)
    assert "2 group(s) with fewer than 2" in result.note
    none = zero_variance_groups([1.0, None], ["a", "b"])
    assert none.fraction is None and "undefined" in none.note
    assert zero_variance_group_fraction([0.0, 1.0, 0.0, 1.0], ["a", "a", "b", "b"]) == 0.0


def test_group_keys_follow_the_rollout_contract_and_a_chosen_field():
    records = [
        {"prompt": "case 1", "completion": "x"},
        {"prompt": "case 1", "completion": "y"},
        {"prompt": [{"role": "user", "content": "case 2"}], "completion": "z"},
        {"prompt": "case 3", "group": "G7", "completion": "w"},
        {"prompt": "case 3", "group": 12, "completion": "w"},
    ]
    keys = group_keys(records)
    assert keys[0] == keys[1] and len(set(keys)) == 4 and keys[3] == "G7" and keys[4] == "12"
    # the same key the scorer's rollouts get
    scored = Scorer("toxicology").score([{**records[0], "reference": {"substances": []}}])
    from medreward.records import Rollout

    assert keys[0] == Rollout.from_dict(scored[0].record).group_key
    assert group_keys([{"meta": {"qid": 3}}, {}], field="meta.qid") == ["3", MISSING]
