"""``medreward score`` with a spec that declares a model backend: the real OpenAI-compatible backend
against loopback fake servers (tests/backends/fake_openai_server.py), so the flags are tested end
to end: --backend-url / MEDREWARD_<NAME>_BASE_URL pick the server, --cache / --no-cache decide
what is called, --stats-json reports it, and mistakes exit 2 with a message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_runner import run_all

pytest.importorskip("aiohttp")
sys.path.insert(0, str(Path(__file__).parents[1] / "backends"))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

SUPPORT = str(Path(__file__).parents[1] / "support")
SPEC = """
name = "judged"

[backends.judge]
kind = "openai"
base_url = "{url}"
model = "fake-judge"
max_retries = 0

[[components]]
name = "yes"
kind = "model_backed:YesJudge"
"""
TWO = SPEC + """
[backends.second]
kind = "openai"
base_url = "{url}"
model = "fake-judge"
"""


@pytest.fixture
def servers():
    with FakeOpenAIServer() as spec_server, FakeOpenAIServer() as flag_server, FakeOpenAIServer() as env_server:
        yield spec_server, flag_server, env_server


def _setup(tmp_path: Path, url: str, spec: str = SPEC) -> None:
    (tmp_path / "judged.toml").write_text(spec.format(url=url), encoding="utf-8")
    lines = [{"completion": f"answer {i}"} for i in range(5)] + [{"completion": "@500 broken"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")


def test_endpoint_overrides_cache_and_stats_json(tmp_path, servers):
    spec_server, flag_server, env_server = servers
    _setup(tmp_path, spec_server.url)
    base = ("score", "in.jsonl", "-s", "judged.toml", "-q")
    env = {"PYTHONPATH": SUPPORT, "MEDREWARD_CACHE": str(tmp_path / "default.sqlite")}
    runs = run_all(
        {"flag": (*base, "--backend-url", flag_server.url, "--cache", "flag.sqlite", "--stats-json", "flag.json"),
         "named": (*base, "--backend-url", f"judge={flag_server.url}", "--no-cache", "--stats-json", "named.json")},
        tmp_path, env=env,
    )  # fmt: skip
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr)
    assert spec_server.requests == 0 and env_server.requests == 0
    assert flag_server.requests == 2 * 6
    stats = json.loads((tmp_path / "flag.json").read_text())
    assert stats["spec"] == "judged" and stats["n"] == 6
    assert stats["statuses"] == {"ok": 5, "not_applicable": 0, "error": 1, "timeout": 0}
    assert stats["components"]["yes"]["statuses"]["error"] == 1
    judge = stats["backends"]["judge"]
    assert (judge["calls"], judge["cache_hits"], judge["failures"]) == (6, 0, 1)
    assert judge["prompt_tokens"] > 0 and judge["latency_p50_s"] is not None
    assert (tmp_path / "flag.sqlite").exists() and not (tmp_path / "default.sqlite").exists()

    # the environment variable; the same cache again: the 5 answers are hits, the failure is called again
    again = run_all(
        {"env": (*base, "--cache", "flag.sqlite", "--stats-json", "env.json", "-o", "out.jsonl", "-w", "2")},
        tmp_path, env={**env, "MEDREWARD_JUDGE_BASE_URL": env_server.url},
    )["env"]  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert env_server.requests == 1 and spec_server.requests == 0
    judge = json.loads((tmp_path / "env.json").read_text())["backends"]["judge"]
    assert (judge["calls"], judge["cache_hits"]) == (1, 5)  # counted in worker processes, sent back
    assert "model backends" in again.stdout and "cache hits" in again.stdout


def test_summary_of_a_rule_only_spec_has_no_backends_section(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"completion": "<think>x</think><answer>A</answer>"}\n', encoding="utf-8")
    run = run_all({"r": ("score", "in.jsonl", "-s", "mcq", "-q", "--stats-json", "s.json")}, tmp_path)["r"]
    assert run.returncode == 0, run.stderr
    assert "model backends" not in run.stdout
    assert json.loads((tmp_path / "s.json").read_text())["backends"] == {}


def test_user_mistakes_exit_2_with_a_message(tmp_path, servers):
    spec_server = servers[0]
    _setup(tmp_path, spec_server.url)
    (tmp_path / "two.toml").write_text(TWO.format(url=spec_server.url), encoding="utf-8")
    base = ("score", "in.jsonl", "-q")
    runs = run_all(
        {
            "no_backends": (*base, "-s", "mcq", "--backend-url", "http://127.0.0.1:1/v1"),
            "ambiguous": (*base, "-s", "two.toml", "--backend-url", "http://127.0.0.1:1/v1"),
            "unknown": (*base, "-s", "judged.toml", "--backend-url", "grader=http://127.0.0.1:1/v1"),
            "not_url": (*base, "-s", "judged.toml", "--backend-url", "localhost:8080"),
            "twice": (*base, "-s", "two.toml", "--backend-url", "judge=http://a/v1", "--backend-url", "judge=http://b/v1"),
            "both_cache": (*base, "-s", "judged.toml", "--cache", "c.sqlite", "--no-cache"),
            "stats_dir": (*base, "-s", "judged.toml", "--stats-json", "."),
            "stats_folder": (*base, "-s", "judged.toml", "--stats-json", "missing/s.json"),
            "bad_cache": (*base, "-s", "judged.toml", "--cache", "in.jsonl"),
        },
        tmp_path, env={"PYTHONPATH": SUPPORT},
    )  # fmt: skip
    expected = {
        "no_backends": "declares no model backends ([backends.NAME])",
        "ambiguous": "declares 2 backends (judge, second): say which, as NAME=URL",
        "unknown": "has no backend 'grader' (declared: judge)",
        "not_url": "not an http(s) URL",
        "twice": "backend 'judge' is given twice",
        "both_cache": "--cache and --no-cache",
        "stats_dir": "is a directory",
        "stats_folder": "does not exist",
        "bad_cache": "in.jsonl",
    }
    for name, text in expected.items():
        run = runs[name]
        assert run.returncode == 2, (name, run.stdout, run.stderr)
        assert text in " ".join(run.stderr.split()), (name, run.stderr)
        assert "Traceback" not in run.stderr, name
    assert spec_server.requests == 0  # every mistake stops before a call
