"""Faults: a hanging component (timeout statuses, the server keeps answering), SIGTERM with a
request in flight (it finishes), kill -9 under load (clients see connection errors; a restart
serves again, and a judge's response cache survives)."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from serve_support import FAULTY_SPEC, JUDGE_SPEC, launch, require, start_server, wait_ready

require("fastapi")

RECORDS = [{"id": "a", "completion": "please sleep"}, {"id": "b", "completion": "boom"}, {"id": "c", "completion": "fine"}]


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "faulty.toml"
    path.write_text(FAULTY_SPEC)
    return str(path)


def _post_in_thread(url: str, body, results: dict, timeout: float = 60) -> threading.Thread:
    def run() -> None:
        try:
            results["response"] = httpx.post(url, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            results["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_hanging_component_gives_timeout_statuses_and_the_server_keeps_answering(server_factory, spec_file):
    server = server_factory("--spec", spec_file, "--time-limit", "1.5", "--threads", "2")
    results: dict = {}
    thread = _post_in_thread(server.url + "/v1/score", RECORDS, results)
    time.sleep(0.3)
    started = time.monotonic()
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0  # answered while the component hangs
    thread.join(60)
    response = results["response"]
    assert response.status_code == 200
    a, b, c = response.json()["records"]
    assert a["status"] == "timeout" and "time limit" in a["info"]["error"] and a["components"]["raises"] == 1.0
    assert b["status"] == "error" and b["info"]["error"] == "raises: ValueError: kaboom"
    assert c["status"] == "ok" and c["reward"] == 1.5
    assert "Traceback" not in response.text
    # and the next request is served normally
    again = httpx.post(server.url + "/v1/score", json=[RECORDS[2]], timeout=30)
    assert again.json()["records"][0]["status"] == "ok"


def test_sigterm_lets_the_in_flight_request_finish(tmp_path, spec_file):
    server = start_server(tmp_path / "server.log", "--spec", spec_file, "--time-limit", "2")
    try:
        results: dict = {}
        thread = _post_in_thread(server.url + "/v1/score", [RECORDS[0]], results)
        time.sleep(0.5)  # the request is scoring (its component sleeps past the 2 s limit)
        server.proc.send_signal(signal.SIGTERM)
        thread.join(60)
        response = results.get("response")
        assert response is not None, results
        assert response.status_code == 200 and response.json()["records"][0]["status"] == "timeout"
        # uvicorn re-raises the signal once it has shut down cleanly: "terminated by SIGTERM"
        assert server.proc.wait(30) in (0, -signal.SIGTERM)
        log = server.output()
        assert "Shutting down" in log and "Finished server process" in log and "Traceback" not in log
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz", timeout=2)
    finally:
        server.stop(signal.SIGKILL)


def test_kill_9_under_load_then_a_restart_serves_again(tmp_path):
    server = start_server(tmp_path / "first.log", "--spec", "toxicology")
    record = {"completion": "<think>.</think><answer>opioids</answer>", "reference": {"substances": ["opioids"]}}
    outcomes: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and len(outcomes) < 100_000:
                try:
                    ok = client.post(server.url + "/v1/score", json=[record] * 16).status_code == 200
                    outcomes.append("ok" if ok else "bad status")
                except httpx.TransportError:
                    outcomes.append("connection error")
                    time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        server.proc.send_signal(signal.SIGKILL)
        assert server.proc.wait(10) == -signal.SIGKILL
        time.sleep(0.5)
        restarted = wait_ready(launch(tmp_path / "second.log", "--spec", "toxicology", port=server.port))
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert "ok" in outcomes and "connection error" in outcomes and "bad status" not in outcomes
        assert outcomes[-1] == "ok"  # served again after the restart
        assert httpx.post(restarted.url + "/v1/score", json=[record]).json()["records"][0]["reward"] == 1.0
    finally:
        stop.set()
        server.stop(signal.SIGKILL)
        if "restarted" in locals():
            restarted.stop()




def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            metric_labels, value = line[len(name) + 1:].rsplit("} ", 1)
            if ",".join(sorted(metric_labels.split(","))) == wanted:
                return float(value)
    return 0.0


def test_model_rewards_count_calls_and_cache_hits_and_the_cache_survives_kill_9(tmp_path):
    from keyword_judge import KeywordJudgeServer

    spec = tmp_path / "judged.toml"
    spec.write_text(JUDGE_SPEC)
    records = [{"prompt": "Anaphylaxis?", "completion": "Give epinephrine IM.", "reference": {"answer": "epinephrine"}},
               {"prompt": "Anaphylaxis?", "completion": "Give fluids.", "reference": {"answer": "epinephrine"}}]  # fmt: skip
    dead = start_server(tmp_path / "dead.log", "--spec", str(spec), env={"MEDREWARD_CACHE": str(tmp_path / "c.sqlite")})
    try:
        ready = httpx.get(dead.url + "/readyz")
        assert ready.status_code == 503 and ready.json()["backends"]["judged/judge"].startswith("unreachable")
    finally:
        dead.stop()
    with KeywordJudgeServer() as judge:
        env = {"MEDREWARD_JUDGE_BASE_URL": judge.url, "MEDREWARD_CACHE": str(tmp_path / "c.sqlite")}
        server = start_server(tmp_path / "first.log", "--spec", str(spec), env=env)
        try:
            assert httpx.get(server.url + "/readyz").json() == {"ready": True, "specs": ["judged"], "backends": {"judged/judge": "ok"}}
            out = httpx.post(server.url + "/v1/score", json=records, timeout=60).json()["records"]
            assert [r["reward"] for r in out] == [1.0, 0.0] and judge.requests == 2
            httpx.post(server.url + "/v1/score", json=records, timeout=60)
            metrics = httpx.get(server.url + "/metrics").text
            assert _metric(metrics, "medreward_backend_calls_total", spec="judged", backend="judge") == 2
            assert _metric(metrics, "medreward_backend_cache_hits_total", spec="judged", backend="judge") == 2
            assert _metric(metrics, "medreward_backend_prompt_tokens_total", spec="judged", backend="judge") == 20
        finally:
            server.stop(signal.SIGKILL)
        again = start_server(tmp_path / "second.log", "--spec", str(spec), env=env)
        try:
            out = httpx.post(again.url + "/v1/score", json=records, timeout=60).json()["records"]
            assert [r["reward"] for r in out] == [1.0, 0.0]
            assert judge.requests == 2  # answered from the cache the killed server wrote
            metrics = httpx.get(again.url + "/metrics").text
            assert _metric(metrics, "medreward_backend_cache_hits_total", spec="judged", backend="judge") == 2
        finally:
            again.stop()
