"""The run-level metrics hook: RewardComponent.batch_metrics sees the info of every ok sample
of the run, in input order, across chunks and calls; components without it cost nothing; a
failing metric is logged and left out without touching the scores."""

from __future__ import annotations

import logging

from medreward import Scorer
from medreward.records import ComponentScore
from medreward.rewards.base import RewardComponent


class Counting(RewardComponent):
    """Scores the completion's length parity; not applicable to empty completions."""

    kind = "test.counting"

    def score_one(self, rollout):
        text = rollout.completion_text
        if not text:
            return ComponentScore.not_applicable("empty")
        return ComponentScore.ok(float(len(text) % 2), length=len(text))

    def batch_metrics(self, infos):
        return {"n": float(len(infos)), "first": float(infos[0]["length"]) if infos else None,
                "lengths": float(sum(i["length"] for i in infos))}  # fmt: skip


class Failing(Counting):
    kind = "test.failing"

    def batch_metrics(self, infos):
        raise ZeroDivisionError("boom")


def _spec(kind: str) -> dict:
    return {"name": "t", "components": [{"name": "c", "kind": f"{__name__}:{kind}"}, {"name": "f", "kind": "format.tags"}]}


def test_infos_of_ok_samples_across_chunks_and_calls():
    records = [{"completion": c} for c in ["ab", "", "abc", "a"]]
    with Scorer(_spec("Counting"), chunk_size=1) as scorer:
        scorer.score(records)
        assert scorer.stats.batch_metrics == {"c": {"n": 3.0, "first": 2.0, "lengths": 6.0}}
        scorer.score([{"completion": "abcd"}])  # the statistics cover every call
        assert scorer.stats.batch_metrics["c"] == {"n": 4.0, "first": 2.0, "lengths": 10.0}
    assert list(scorer.stats.observations) == ["c"]  # format.tags defines none: nothing kept
    assert scorer.stats.to_dict()["batch_metrics"] == {"c": {"n": 4.0, "first": 2.0, "lengths": 10.0}}


def test_a_failing_metric_is_logged_and_left_out(caplog):
    with caplog.at_level(logging.WARNING), Scorer(_spec("Failing")) as scorer:
        scored = scorer.score([{"completion": "ab"}])
    assert scored[0].components["c"] == 0.0 and scored[0].status.value == "ok"
    assert scorer.stats.batch_metrics == {} and scorer.stats.batch_metric_lines() == []
    assert "component 'c': run-level metrics failed: boom" in caplog.text


def test_summary_lines():
    with Scorer(_spec("Counting")) as scorer:
        scorer.score([{"completion": "abc"}])
    assert scorer.stats.batch_metric_lines() == ["c over the run: n 1, first 3, lengths 3"]
