"""The ``self_rubric`` component: one rubric request per distinct prompt, grading reuses it, a bad
rubric is retried once then errors, traceability in info."""

from __future__ import annotations

import json
import pickle

import pytest
from fake_backend import FakeBackend

from medreward.backends.base import BackendFailure
from medreward.records import Rollout, Status
from medreward.rewards.judge_prompts import BEGIN, RUBRIC_BATCHED_VERSION, SELF_RUBRIC_VERSION
from medreward.rewards.self_rubric import SelfRubric, read_generated_rubric

RUBRIC = {"criteria": [{"criterion": "Advises calling emergency services", "points": 5},
                       {"criterion": "Asks about the duration", "points": 3},
                       {"criterion": "Recommends waiting at home", "points": -4}]}  # fmt: skip
CHEST = [{"role": "user", "content": "I have crushing chest pain, what should I do?"}]
RASH = "I have an itchy rash on my arm."


def is_writing(request) -> bool:
    return request.template.startswith(SELF_RUBRIC_VERSION)


def judge(rubric=RUBRIC, met=(True, False, False)):
    """Writes ``rubric`` when asked for one; grades every completion with ``met`` per criterion."""

    def answer(request):
        if is_writing(request):
            return rubric if isinstance(rubric, (str, BackendFailure)) else json.dumps(rubric)
        ids = request.response_schema["properties"]["verdicts"]["items"]["properties"]["id"]["enum"]
        return json.dumps({"verdicts": [{"id": i, "explanation": "", "criteria_met": m} for i, m in zip(ids, met)]})

    return answer


def bound(answers, **params):
    backend = FakeBackend(answers)
    component = SelfRubric(**params)
    component.bind_backends({"judge": backend})
    return component, backend


def test_one_rubric_request_per_distinct_prompt_and_grading_reuses_it():
    component, backend = bound(judge())
    batch = [Rollout(prompt=CHEST, completion=f"answer {k}") for k in range(4)] + \
            [Rollout(prompt=RASH, completion=f"rash answer {k}") for k in range(2)]  # fmt: skip
    scores = component.score_batch(batch)
    assert [s.value for s in scores] == [0.625] * 6  # (5) / (5 + 3)
    writing = [r for r in backend.requests if is_writing(r)]
    assert len(writing) == 2  # two distinct prompts, six completions
    assert [len(c) for c in backend.calls] == [2, 6]  # one call writes the rubrics, one grades
    assert "crushing chest pain" in writing[0].messages[-1]["content"]
    assert "answer 0" not in writing[0].messages[-1]["content"]  # the rubric never sees a completion
    assert writing[0].temperature == 0 and writing[0].seed == 0 and writing[0].response_schema["required"] == ["criteria"]
    grading = backend.calls[1][0].messages[-1]["content"]
    assert "[5] Advises calling emergency services" in grading and "[-4] Recommends waiting at home" in grading
    assert grading.index(BEGIN) < grading.index("[5] Advises")
    info = scores[0].info
    assert info["template"] == RUBRIC_BATCHED_VERSION and info["rubric_template"] == SELF_RUBRIC_VERSION
    assert info["rubric_criteria"] == 3 and len(info["rubric_hash"]) == 16
    assert info["generated_rubric"][0] == {"criterion": "Advises calling emergency services", "points": 5.0}
    assert info["raw_score"] == 0.625


def test_the_rubric_request_is_identical_across_batches_so_the_cache_serves_it():
    component, backend = bound(judge())
    component.score_batch([Rollout(prompt=CHEST, completion="a")])
    component.score_batch([Rollout(prompt=CHEST, completion="b")])
    writing = [r for r in backend.requests if is_writing(r)]
    assert len(writing) == 2 and writing[0].cache_key("fake", "m") == writing[1].cache_key("fake", "m")


def test_record_rubric_false_keeps_hash_and_count_only():
    component, _ = bound(judge(), record_rubric=False)
    info = component.score_batch([Rollout(prompt=CHEST, completion="a")])[0].info
    assert "generated_rubric" not in info and info["rubric_criteria"] == 3


@pytest.mark.parametrize(
    ("bad", "problem"),
    [("I would grade on empathy.", "no JSON object"),
     ('{"criteria": []}', "no non-empty 'criteria'"),
     ('{"criteria": [{"criterion": "Is rude", "points": -3}]}', "no criterion with positive points"),
     ('{"criteria": [{"criterion": "", "points": 3}]}', "criterion must be non-empty"),
     ('{"criteria": [{"criterion": "x", "points": 50}]}', "outside [-10, 10]"),
     (json.dumps({"criteria": [{"criterion": f"c{k}", "points": 1} for k in range(11)]}), "more than the 10")],
)  # fmt: skip
def test_a_bad_rubric_is_retried_once_then_errors_every_sample_of_that_prompt(bad, problem):
    component, backend = bound(judge(rubric=bad))
    batch = [Rollout(prompt=CHEST, completion="a"), Rollout(prompt=CHEST, completion="b")]
    scores = component.score_batch(batch)
    assert [s.status for s in scores] == [Status.ERROR] * 2 and [s.value for s in scores] == [None, None]
    error = scores[0].info["error"]
    assert error.startswith("writing the rubric:") and problem in error and "retry" in error
    assert [len(c) for c in backend.calls] == [1, 1]  # the rubric, its retry; nothing graded
    assert backend.calls[1][0].seed == 1 and backend.calls[1][0].template == SELF_RUBRIC_VERSION + "+retry"
    assert backend.forgotten == [backend.calls[0][0], backend.calls[1][0]]


def test_a_retried_rubric_that_works_is_used_and_other_prompts_are_unaffected():
    answers = iter(["not json", json.dumps(RUBRIC), json.dumps(RUBRIC)])  # chest, rash (round 1); chest retry

    def answer(request):
        return next(answers) if is_writing(request) else judge()(request)

    component, _ = bound(answer)
    scores = component.score_batch([Rollout(prompt=CHEST, completion="a"), Rollout(prompt=RASH, completion="b")])
    assert [s.value for s in scores] == [0.625, 0.625]
    assert scores[0].info["rubric_retried"] is True and "rubric_retried" not in scores[1].info


def test_a_failed_rubric_call_errors_or_times_out_only_that_prompt():
    def answer(request):
        if is_writing(request) and "rash" in request.messages[-1]["content"]:
            return BackendFailure("timeout", "no answer after 60 s")
        return judge()(request)

    component, _ = bound(answer)
    scores = component.score_batch([Rollout(prompt=RASH, completion="a"), Rollout(prompt=CHEST, completion="b")])
    assert scores[0].status is Status.TIMEOUT and "no answer after 60 s" in scores[0].info["error"]
    assert scores[1].value == 0.625


def test_grading_failures_are_the_rubric_components_statuses():
    def answer(request):
        return judge()(request) if is_writing(request) else BackendFailure("http", "HTTP 500 after 3 retries")

    component, _ = bound(answer)
    score = component.score_batch([Rollout(prompt=CHEST, completion="a")])[0]
    assert score.status is Status.ERROR and "HTTP 500" in score.info["error"] and score.info["rubric_criteria"] == 3


def test_clip_and_empty_prompt():
    component, backend = bound(judge(met=(False, False, True)), clip="signed")
    scores = component.score_batch([Rollout(prompt=CHEST, completion="wait"), Rollout(prompt="", completion="x")])
    assert scores[0].value == -0.5 and component.output_range == (-1.0, 1.0)
    assert scores[1].status is Status.NOT_APPLICABLE and "prompt is empty" in scores[1].info["reason"]
    assert len([r for r in backend.requests if is_writing(r)]) == 1


def test_read_generated_rubric_accepts_near_json_and_drops_model_ids():
    items, problem = read_generated_rubric("```json\n{'criteria': [{'criterion': 'A', 'points': 2, 'id': 'x'},]}\n```", 5)
    assert problem is None and items == [{"criterion": "A", "points": 2.0}]


def test_pickles_and_rebinds():
    component = pickle.loads(pickle.dumps(SelfRubric(mode="per_criterion", max_criteria=4)))
    backend = FakeBackend(lambda r: json.dumps(RUBRIC) if is_writing(r) else '{"explanation": "", "criteria_met": true}')
    component.bind_backends({"judge": backend})
    score = component.score_batch([Rollout(prompt=CHEST, completion="a")])[0]
    assert score.value == 0.5  # every criterion met: (5 + 3 - 4) / 8
    assert len(backend.calls[1]) == 3  # per_criterion: one grading request per written criterion
