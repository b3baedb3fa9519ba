"""OpenRLHF's own remote reward-model client (``openrlhf.utils.agent.SingleTurnAgentExecutor``,
aiohttp) against ``POST /get_reward`` of the real server, with the API key on: the key travels as
URL credentials (``http://medreward:<key>@host:port/get_reward``), which aiohttp sends as HTTP
Basic, so ``--reward.remote_url`` needs no change in OpenRLHF."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from openrlhf_harness import StubEngine, chatml_tokenizer, executor_cls
from serve_support import KEY, require

require("fastapi")
require("aiohttp")

PROMPT = "<|im_start|>user\nPinpoint pupils, RR 6.<|im_end|>\n<|im_start|>assistant\n"
RESPONSE = "<think>miosis, apnea</think><answer>opioids</answer><|im_end|>"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("--spec", "toxicology", env={"MEDREWARD_API_KEY": KEY})


def _url(server, credentials: str | None = f"medreward:{KEY}") -> str:
    host = f"{credentials}@127.0.0.1" if credentials else "127.0.0.1"
    return f"http://{host}:{server.port}/get_reward"


def test_openrlhf_rollout_gets_its_reward_from_the_server(server):
    executor = executor_cls()(remote_rm_url=[_url(server)])  # what --reward.remote_url URL becomes
    tokenizer = chatml_tokenizer()
    params = SimpleNamespace(max_tokens=64, logprobs=None)
    out = asyncio.run(executor.execute(PROMPT, '{"substances": ["opioids"]}', params, 4096, tokenizer,
                                       StubEngine(tokenizer, RESPONSE)))  # fmt: skip
    assert out["reward"] == [1.0], "OpenRLHF got no reward from the server"
    assert out["scores"] == [1.0]
    assert out["extra_logs"]["substances"] == [1.0] and out["extra_logs"]["status_ok"] == [1.0]


def test_openrlhf_shards_a_batch_over_endpoints(server):
    executor = executor_cls()(remote_rm_url=[_url(server), _url(server)])
    queries = [PROMPT + RESPONSE, PROMPT + "<answer>ethanol</answer>", PROMPT + "no tags at all"]
    labels = [json.dumps({"substances": ["opioids"]})] * 3
    results = asyncio.run(executor._fetch_rewards_via_http(queries, [PROMPT] * 3, labels))
    assert len(results) == 2  # two shards: 2 + 1 queries
    rewards = results[0]["rewards"] + results[1]["rewards"]
    assert rewards[0] == 1.0 and rewards[1] < 1.0 and len(rewards) == 3
    assert all(len(v) == 2 for v in results[0]["extra_logs"].values())


def test_openrlhf_without_the_key_gets_no_reward(server, caplog):
    executor = executor_cls()(remote_rm_url=[_url(server, credentials=None)])
    tokenizer = chatml_tokenizer()
    params = SimpleNamespace(max_tokens=64, logprobs=None)
    # OpenRLHF retries a refused request 5 times, 1 s apart, then logs and leaves the reward empty
    out = asyncio.run(executor.execute(PROMPT, '{"substances": ["opioids"]}', params, 4096, tokenizer,
                                       StubEngine(tokenizer, RESPONSE)))  # fmt: skip
    assert out["reward"] is None
    assert KEY not in server.output()
