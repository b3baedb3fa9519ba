"""In-process pieces of the server: the configuration hand-over to worker processes, the trimming
of per-sample state a long-running server must not keep, and the command's start-up checks."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from serve_support import KEY, SUPPORT, free_port, require

require("fastapi")

from medreward.serve.app import _score_work, _trim  # noqa: E402
from medreward.serve.coalesce import run_batch  # noqa: E402
from medreward.serve.config import API_KEY_ENV, CONFIG_ENV, ServeConfig  # noqa: E402
from medreward.serve.routing import Router  # noqa: E402

def test_the_config_reaches_workers_without_the_key_in_it():
    config = ServeConfig(specs={"tox": "toxicology", "m": "mcq"}, api_key=KEY, max_rollouts=5, time_limit=2.0, threads=3)
    text = config.to_env()
    assert KEY not in text and KEY not in repr(config)
    back = ServeConfig.from_env({CONFIG_ENV: text, API_KEY_ENV: KEY})
    assert back == config and list(back.specs) == ["tox", "m"]
    assert ServeConfig.from_env({CONFIG_ENV: text}).api_key is None
    with pytest.raises(RuntimeError, match="medreward serve"):
        ServeConfig.from_env({})


def test_a_long_running_server_keeps_no_per_sample_state(tmp_path, monkeypatch):
    from keyword_judge import KeywordJudgeServer
    import tomllib

    from serve_support import JUDGE_SPEC

    records = [{"prompt": "Q", "completion": f"answer {i} epinephrine", "reference": {"answer": "epinephrine"}} for i in range(4)]
    with KeywordJudgeServer() as judge:
        monkeypatch.setenv("MEDREWARD_JUDGE_BASE_URL", judge.url)
        monkeypatch.setenv("MEDREWARD_CACHE", str(tmp_path / "cache.sqlite"))
        router = Router({"judged": tomllib.loads(JUDGE_SPEC)}, time_limit=5.0)
        route = router.routes["judged"]
        shared = route.scorer
        shared.score(records[:2])  # what the in-process adapters do: the totals keep each call's latency
        assert len(shared.total.backends["judge"].latencies) == 2
        [response] = run_batch([lambda: _score_work(router, route, 16, True, json.dumps(records[2:]).encode())], _trim)
    assert [r["reward"] for r in json.loads(response.body)["records"]] == [1.0, 1.0]
    assert shared.total.backends["judge"].latencies == []  # dropped after each request
    assert shared.total.backends["judge"].calls == 4 and shared.total.statuses["ok"] == 4  # what /metrics reads stays
    shared.scorer.close()


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environment = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    environment.update({"PYTHONPATH": SUPPORT, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "medreward.cli.app", "serve", "--port", str(free_port()), *args],
                          capture_output=True, text=True, env=environment, timeout=60)  # fmt: skip


def test_start_up_mistakes_are_messages():
    run = _serve("--spec", "no_such_preset")
    assert run.returncode == 2 and "toxicology" in run.stderr and "Traceback" not in run.stderr
    run = _serve("--spec", "tox=no_such_preset", "--workers", "2")  # checked before any worker starts
    assert run.returncode == 2 and "no_such_preset" in run.stderr and "Traceback" not in run.stderr
    run = _serve("--spec", "toxicology", "--spec", "toxicology")
    assert run.returncode == 2 and "two specs are served as 'toxicology'" in run.stderr


def test_several_worker_processes_share_the_key(server_factory, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    server = server_factory("--spec", "mcq", "--workers", "2", "--api-key-file", str(key_file))
    record = {"completion": "<think>.</think><answer>B</answer>", "reference": {"answer": "B"}}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        for _ in range(6):  # connections land on either worker
            assert client.post("/v1/score", json=[record]).json()["records"][0]["reward"] == 1.0
    assert httpx.post(server.url + "/v1/score", json=[record]).status_code == 401
    assert KEY not in server.output()


def test_default_threads_are_few_for_rule_based_specs_and_more_for_model_backends():
    import tomllib

    from serve_support import JUDGE_SPEC

    from medreward.integrations.registry import load_spec_like
    from medreward.serve.config import default_threads

    rule_based = [load_spec_like("toxicology"), load_spec_like("mcq")]
    assert default_threads(rule_based) == 2
    assert default_threads([*rule_based, load_spec_like(tomllib.loads(JUDGE_SPEC))]) == 8
