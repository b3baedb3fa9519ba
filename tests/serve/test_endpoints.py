"""Every endpoint's contract against the real server (two specs: ``tox`` = toxicology, ``mcq``)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from serve_support import require

from medreward import Scorer
from medreward.integrations.openrlhf import make_reward_func

require("fastapi")
require("prometheus_client")

REPO = str(Path(__file__).resolve().parents[2])

TOX = {"task": "toxicology", "id": "t1", "completion": "<think>miosis</think><answer>opioids, ethanol</answer>",
       "reference": {"substances": ["opioids"]}, "extra": {"kept": [1, 2]}}  # fmt: skip
MCQ = {"task": "mcq", "id": "m1", "completion": "<think>x</think><answer>B</answer>", "reference": {"answer": "B"}}


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("--spec", "tox=toxicology", "--spec", "mcq")


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def in_process(spec: str, records: list[dict]) -> list[dict]:
    return [r.to_dict() for r in Scorer(spec).score(records)]


def assert_clean_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in response.text and REPO not in response.text and ".py" not in response.text
    return body["error"]


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "specs": ["tox", "mcq"], "backends": {}}


def test_score_routes_each_record_by_task_and_equals_the_in_process_scorer(client):
    tox_by_name = {**TOX, "task": "tox", "id": "t2"}
    bad = {"task": "mcq", "id": "m2", "reference": {"answer": "B"}}  # no completion: an error record, in place
    records = [TOX, MCQ, tox_by_name, bad]
    for body in (records, {"records": records}):
        response = client.post("/v1/score", json=body)
        assert response.status_code == 200, response.text
        out = response.json()["records"]
        assert [r["id"] for r in out] == ["t1", "m1", "t2", "m2"]
        assert out[0] == in_process("toxicology", [TOX])[0]
        assert out[1] == in_process("mcq", [MCQ])[0]
        assert out[2] == in_process("toxicology", [tox_by_name])[0]
        assert out[3]["status"] == "error" and out[3]["reward"] is None and "completion" in out[3]["info"]["error"]
        assert out[0]["extra"] == {"kept": [1, 2]}


def test_score_path_parameter_wins_over_the_records_task(client):
    record = {"task": "something-else", "completion": "<answer>B</answer>", "reference": {"answer": "B"}}
    out = client.post("/v1/score/mcq", json=[record, "not an object"]).json()["records"]
    assert out[0] == in_process("mcq", [record])[0]
    assert out[1]["status"] == "error"
    assert client.post("/v1/score/mcq", json=[]).json() == {"records": []}


def test_unknown_task_and_route_name_the_known_ones(client):
    error = assert_clean_error(client.post("/v1/score", json=[TOX, {**MCQ, "task": "radiology"}]), 422, "unknown_task")
    assert "radiology" in error["message"] and "record 1" in error["message"]
    assert error["routes"] == ["tox", "mcq"] and set(error["tasks"]) == {"tox", "toxicology", "mcq"}
    error = assert_clean_error(client.post("/v1/score", json=[{"completion": "x"}]), 422, "no_task")
    assert "/v1/score/{name}" in error["message"]
    error = assert_clean_error(client.post("/v1/score/radiology", json=[TOX]), 404, "unknown_route")
    assert "tox, mcq" in error["message"]
    assert_clean_error(client.post("/get_reward/radiology", json={"query": ["x"]}), 404, "unknown_route")


def test_get_reward_is_openrlhfs_schema_and_equals_the_adapter(client):
    payload = {
        "query": ["<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>a</think><answer>opioids</answer><|im_end|>",
                  "Q: which?\nA: <think>b</think><answer>C</answer>", "no prompt here <answer>B</answer>"],
        "prompts": ["<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", "Q: which?\nA: ", "unrelated prompt"],
        "labels": [json.dumps({"task": "tox", "substances": ["opioids"]}), json.dumps({"task": "mcq", "answer": "C"}),
                   json.dumps({"task": "nope", "answer": "B"})],
    }  # fmt: skip
    response = client.post("/get_reward", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = make_reward_func(tasks={"tox": "toxicology", "mcq": "mcq"}, as_tensors=False).score_lists(
        payload["query"], payload["prompts"], payload["labels"])  # fmt: skip
    assert body == expected
    assert set(body) == {"rewards", "scores", "extra_logs"} and body["rewards"][:2] == [1.0, 1.0]
    assert body["extra_logs"]["status_error"] == [0.0, 0.0, 1.0]  # a label naming no route: that sample only


def test_get_reward_with_a_route_and_plain_labels(client):
    body = client.post("/get_reward/mcq", json={"query": ["<think>x</think><answer>B</answer>"], "labels": ["B"]}).json()
    assert body["rewards"] == [1.0] and body["scores"] == [1.0] and body["extra_logs"]["choice"] == [1.0]
    # prompts and labels may be omitted; without labels nothing is applicable
    body = client.post("/get_reward/mcq", json={"query": ["<answer>B</answer>"]}).json()
    assert body["extra_logs"]["status_not_applicable"] == [1.0]


@pytest.mark.parametrize(
    ("path", "content", "status", "code"),
    [
        ("/v1/score", b"[{\"completion\": ", 400, "bad_json"),
        ("/v1/score", b"\xff\xfe not json", 400, "bad_json"),
        ("/v1/score", b"{\"rollouts\": []}", 422, "bad_schema"),
        ("/v1/score", b"42", 422, "bad_schema"),
        ("/get_reward", b"[1, 2]", 422, "bad_schema"),
        ("/get_reward", b"{\"queries\": [\"x\"]}", 422, "bad_schema"),
        ("/get_reward/mcq", b"{\"query\": [\"a\", \"b\"], \"labels\": [\"B\"]}", 422, "bad_schema"),
        ("/get_reward/mcq", b"{\"query\": \"just one string\"}", 422, "bad_schema"),
    ],
)
def test_malformed_bodies_get_a_json_error(client, path, content, status, code):
    assert_clean_error(client.post(path, content=content), status, code)


def test_a_lone_surrogate_escape_is_valid_json_and_scored(client):
    content = b'[{"task": "mcq", "completion": "<answer>B</answer> \\ud800", "reference": {"answer": "B"}}]'
    [record] = client.post("/v1/score", content=content).json()["records"]
    assert record["components"]["choice"] == 1.0


def test_unknown_paths_and_methods_are_json_errors_and_there_are_no_docs(client):
    for path in ("/docs", "/openapi.json", "/redoc", "/etc/passwd", "/v1/score/tox/extra"):
        assert_clean_error(client.get(path), 404, "not_found")
    for path in ("/v1/score/tox/extra", "/v1/score/", "/get_reward/mcq/x", "/v1/scores"):
        assert_clean_error(client.post(path, json=[TOX]), 404, "not_found")
    assert_clean_error(client.post("/v1/score/nope", json=[TOX]), 404, "unknown_route")
    for method, path in (("GET", "/v1/score"), ("PUT", "/get_reward"), ("DELETE", "/v1/evaluate/tox")):
        response = client.request(method, path)
        assert_clean_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"


def test_cors_is_off(client):
    preflight = client.options("/v1/score", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    response = client.post("/v1/score", json=[TOX], headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    assert "server" not in response.headers  # no version banner


def test_echo_false_returns_ids_and_scores_only(client):
    full = client.post("/v1/score", json=[TOX, MCQ]).json()["records"]
    lean = client.post("/v1/score?echo=false", json=[TOX, {k: v for k, v in MCQ.items() if k != "id"}]).json()["records"]
    keys = ("reward", "components", "status", "info")
    assert lean[0] == {"id": "t1", **{k: full[0][k] for k in keys}}
    assert lean[1] == {k: full[1][k] for k in keys}
    assert client.post("/v1/score/mcq?echo=false", json=[MCQ]).json()["records"][0]["id"] == "m1"
    assert client.post("/v1/score?echo=0", json=[TOX, MCQ]).json()["records"] == lean[:1] + [{"id": "m1", **lean[1]}]
    assert client.post("/v1/score?echo=yes&other=1", json=[TOX]).json()["records"] == full[:1]
    assert_clean_error(client.post("/v1/score?echo=maybe", json=[TOX]), 422, "bad_parameter")


def test_evaluate_is_reward_kits_evaluate_result(client, monkeypatch):
    import medreward.integrations.reward_kit as rk

    monkeypatch.setattr(rk, "RESULT_PACKAGE", "dict")
    messages = [{"role": "user", "content": "Which letter?"}, {"role": "assistant", "content": "<think>.</think><answer>B</answer>"}]
    single = client.post("/v1/evaluate", json={"task": "mcq", "messages": messages, "ground_truth": "B"})
    assert single.status_code == 200, single.text
    assert single.json() == rk.evaluate(messages, ground_truth="B", spec="mcq")
    assert single.json()["score"] == 1.0 and set(single.json()) == {"score", "is_score_valid", "reason", "metrics", "error"}
    tox = [{"role": "assistant", "content": [{"type": "text", "text": "<think>.</think><answer>opioids</answer>"}]}]
    batch = client.post("/v1/evaluate", json=[
        {"task": "toxicology", "messages": tox, "ground_truth": {"substances": ["opioids", "ethanol"]}},
        {"task": "mcq", "messages": [], "ground_truth": "B"},
        {"task": "mcq", "messages": messages, "ground_truth": {"answer": "Z", "options": ["x", "y"]}},
    ]).json()  # fmt: skip
    assert batch[0] == rk.evaluate(tox, ground_truth={"substances": ["opioids", "ethanol"]}, spec="toxicology")
    assert batch[1]["is_score_valid"] is False and "messages" in batch[1]["error"]
    assert batch[2]["is_score_valid"] is False and batch[2]["error"]
    routed = client.post("/v1/evaluate/mcq", json={"messages": messages, "ground_truth": "C"}).json()
    assert routed["score"] == 0.1 and routed["is_score_valid"] is True
    assert_clean_error(client.post("/v1/evaluate", json={"messages": messages}), 422, "no_task")
    assert_clean_error(client.post("/v1/evaluate", json="text"), 422, "bad_schema")
