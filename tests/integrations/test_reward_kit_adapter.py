"""reward-kit / eval-protocol adapter: EvaluateResult dicts and models, pointwise evaluate().

The dict tests need nothing; the model tests run where reward-kit (0.4.1, with ``mcp<2``) or
eval-protocol (0.3.x) imports, validating our output with their own pydantic models and
serving ``evaluate`` through reward-kit's ``@reward_function`` decorator.
"""

from __future__ import annotations

import importlib

import pytest

import medreward.integrations.reward_kit as rk
from medreward import Scorer
from medreward.integrations.reward_kit import (
    evaluate,
    to_evaluate_result,
    to_evaluate_result_model,
)

FIELDS = {"score", "is_score_valid", "reason", "metrics", "error"}
GOOD = "<think>miosis</think><answer>opioids</answer>"
HALF = "<think>miosis</think><answer>opioids, ethanol</answer>"


def scored(*records, spec="toxicology", **options):
    return Scorer(spec, **options).score(list(records))


def out_of_range_spec():
    return {"name": "wide", "components": [
        {"name": "format", "kind": "format.tags", "weight": 1.0},
        {"name": "range", "kind": "faulty_components:OutOfRange", "weight": 0.0},
    ]}


def test_ok_record_maps_to_a_valid_result():
    [rec] = scored({"completion": HALF, "reference": {"substances": ["opioids"]}})
    res = to_evaluate_result(rec)
    assert set(res) == FIELDS
    assert res["score"] == rec.reward and res["is_score_valid"] is True and res["error"] is None
    assert set(res["metrics"]) == {"format", "substances"}
    sub = res["metrics"]["substances"]
    assert set(sub) == {"score", "is_score_valid", "reason"}
    assert sub["score"] == pytest.approx(2 / 3) and sub["is_score_valid"] is True
    assert "hallucinated" in sub["reason"] and "ethanol" in sub["reason"]
    assert res["reason"].startswith("ok: reward 0.7")


def test_error_timeout_and_not_applicable_are_invalid_scores():
    spec = {"name": "faulty", "components": [
        {"name": "format", "kind": "format.tags", "weight": 1.0},
        {"name": "raises", "kind": "faulty_components:Raises", "weight": 1.0},
        {"name": "sleeps", "kind": "faulty_components:Sleeps", "weight": 1.0}]}
    boom, sleep = scored({"completion": "boom"}, {"completion": "sleep"}, spec=spec, time_limit=0.3)
    for rec, status in ((boom, "error"), (sleep, "timeout")):
        res = to_evaluate_result(rec)
        assert res["score"] == 0.0 and res["is_score_valid"] is False
        assert res["error"] and res["reason"].startswith(status)
    assert "kaboom" in to_evaluate_result(boom)["error"]
    metric = to_evaluate_result(boom)["metrics"]["raises"]
    assert metric["score"] == 0.0 and metric["is_score_valid"] is False
    assert metric["reason"].startswith("raises: no value (sample error)") and "kaboom" in metric["reason"]
    assert to_evaluate_result(boom)["metrics"]["format"]["is_score_valid"] is True  # the others still report
    [na] = scored({"completion": GOOD}, spec={"name": "answer_only", "components": [
        {"name": "substances", "kind": "multilabel", "params": {"vocabulary": "toxicology", "field": "substances"}}]})
    res = to_evaluate_result(na)
    assert res["is_score_valid"] is False and res["error"] is None
    assert "reference has no 'substances'" in res["reason"]


def test_component_values_outside_0_1_are_clipped_and_flagged():
    [rec] = scored({"completion": GOOD}, spec=out_of_range_spec())
    # the Scorer rejects a value outside the declared range; declare a wide range to see clipping
    assert rec.status.value == "error"
    from faulty_components import OutOfRange

    old = OutOfRange.range
    OutOfRange.range = (0.0, 10.0)
    try:
        [rec] = scored({"completion": GOOD}, spec=out_of_range_spec())
    finally:
        OutOfRange.range = old
    res = to_evaluate_result(rec)
    assert res["score"] == 1.0  # the reward itself is not clipped (weight 0 here)
    assert res["metrics"]["range"]["score"] == 1.0
    assert "clipped from 7" in res["metrics"]["range"]["reason"]


def test_evaluate_pointwise(monkeypatch):
    monkeypatch.setattr(rk, "RESULT_PACKAGE", "dict")
    messages = [{"role": "user", "content": "Pupils?"}, {"role": "assistant", "content": HALF}]
    res = evaluate(messages, ground_truth='{"substances": ["opioids"]}', spec="toxicology")
    assert set(res) == FIELDS and res["score"] == pytest.approx(0.1 + 0.6)
    assert evaluate(messages, ground_truth="opioids", spec="toxicology") == res
    assert evaluate(messages, ground_truth={"substances": ["opioids"]}, spec="toxicology") == res
    # reward-kit's server defaults ground_truth to messages[:-1]: that is no reference
    res = evaluate(messages, ground_truth=messages[:-1], spec="toxicology")
    assert res["score"] == 0.0 and res["is_score_valid"] is False and res["reason"].startswith("not_applicable")
    # no response at all
    res = evaluate([], ground_truth="opioids", spec="toxicology")
    assert res["is_score_valid"] is False and "no response" in res["error"]
    res = evaluate(messages, ground_truth='{"substances": [', spec="toxicology")
    assert res["is_score_valid"] is False and "does not parse" in res["error"]


def test_evaluate_takes_the_spec_from_the_environment(monkeypatch):
    monkeypatch.setattr(rk, "RESULT_PACKAGE", "dict")
    monkeypatch.setenv("MEDREWARD_SPEC", "mcq")
    res = evaluate([{"role": "assistant", "content": "<think>.</think><answer>C</answer>"}], ground_truth="C")
    assert res["score"] == 1.0 and set(res["metrics"]) == {"format", "choice"}


# -- the real packages ---------------------------------------------------------------------------
def _models(package):
    try:
        return importlib.import_module(f"{package}.models")
    except Exception as exc:  # noqa: BLE001 - reward-kit 0.4.1 fails to import with mcp>=2
        pytest.skip(f"{package} is not importable: {exc}")


@pytest.mark.parametrize("package", ["reward_kit", "eval_protocol"])
def test_real_evaluate_result_validates_our_output(package):
    models = _models(package)
    records = scored(
        {"completion": HALF, "reference": {"substances": ["opioids"]}},
        {"completion": None, "reference": {"substances": ["opioids"]}},
        {"completion": GOOD},
    )
    for rec in records:
        model = to_evaluate_result_model(rec, package=package)
        assert isinstance(model, models.EvaluateResult)
        again = models.EvaluateResult.model_validate(to_evaluate_result(rec))
        assert again.score == model.score == (rec.reward if rec.reward is not None else 0.0)
        assert set(model.metrics) == {"format", "substances"}
        assert all(isinstance(m, models.MetricResult) for m in model.metrics.values())


@pytest.mark.parametrize("package", ["reward_kit", "eval_protocol"])
def test_reward_function_decorator_serves_evaluate(package, monkeypatch):
    models = _models(package)
    decorator = importlib.import_module(package).reward_function
    monkeypatch.setattr(rk, "RESULT_PACKAGE", package)
    served = decorator(evaluate)
    messages = [{"role": "user", "content": "Pupils?"}, {"role": "assistant", "content": GOOD}]
    result = served(messages=messages, ground_truth="opioids", spec="toxicology")
    assert isinstance(result, models.EvaluateResult) and result.score == 1.0 and result.is_score_valid
    # typed messages (the decorator's Message objects) work as well
    typed = [models.Message(**m) for m in messages]
    assert evaluate(typed, ground_truth="opioids", spec="toxicology").score == 1.0
