"""Requests that queue while the scoring threads are busy are scored together, one scorer call per
spec, and each still gets exactly the response it would get alone (medreward.serve.coalesce)."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_support import require

require("fastapi")

from medreward.integrations.scorers import SharedScorer  # noqa: E402
from medreward.serve.app import _reward_work, _score_work, _trim  # noqa: E402
from medreward.serve.coalesce import Coalescer, run_batch  # noqa: E402
from medreward.serve.responses import ApiError  # noqa: E402
from medreward.serve.routing import Router  # noqa: E402

TOX = {"task": "tox", "completion": "<think>miosis</think><answer>opioids, ethanol</answer>", "reference": {"substances": ["opioids"]}}
MCQ = {"task": "mcq", "completion": "<think>x</think><answer>B</answer>", "reference": {"answer": "B"}}


@pytest.fixture(scope="module")
def router():
    return Router({"tox": "toxicology", "mcq": "mcq"}, time_limit=5.0)


@pytest.fixture
def calls(monkeypatch):
    """Every SharedScorer.score call's spec and size."""
    seen: list[tuple[str, int]] = []
    original = SharedScorer.score

    def counted(self, items):
        seen.append((self.spec.name, len(items)))
        return original(self, items)

    monkeypatch.setattr(SharedScorer, "score", counted)
    return seen


def alone(prepare):
    """The response (or error) of one request scored by itself."""
    [outcome] = run_batch([prepare], _trim)
    return outcome


def body(records) -> bytes:
    return json.dumps(records).encode()


def requests(router):
    """Four requests: two routed by task, one by route name with echo off, and one bad body."""
    tox2 = {**TOX, "id": "x", "completion": "<answer>ethanol</answer>"}
    return [
        lambda: _score_work(router, None, 64, True, body([TOX, MCQ])),
        lambda: _score_work(router, router.route("tox"), 64, False, body([tox2, {**TOX, "id": "y"}])),
        lambda: _score_work(router, None, 64, True, b"{not json"),
        lambda: _score_work(router, None, 64, True, body([MCQ, {"task": "mcq", "reference": {"answer": "B"}}])),
    ]


def test_run_batch_scores_each_spec_once_and_answers_each_request_as_alone(router, calls):
    expected = [alone(p) for p in requests(router)]
    calls.clear()
    outcomes = run_batch(requests(router), _trim)
    assert sorted(calls) == [("mcq", 3), ("toxicology", 3)]  # 3 + 3 items from three requests, two calls
    for got, want in zip(outcomes, expected, strict=True):
        if isinstance(want, ApiError):  # the bad body fails its own request only
            assert isinstance(got, ApiError) and (got.status, got.code) == (want.status, want.code) == (400, "bad_json")
        else:
            assert got.status_code == 200 and json.loads(got.body) == json.loads(want.body)


def test_get_reward_requests_share_a_call_and_keep_their_own_results(router, calls):
    from medreward.integrations.openrlhf import OpenRLHFReward

    reward = OpenRLHFReward("toxicology", time_limit=5.0, as_tensors=False)
    chat = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    payloads = [
        {"query": [chat + TOX["completion"]], "prompts": [chat], "labels": [{"substances": ["opioids"]}]},
        {"query": [chat + "<answer>none</answer>", chat + TOX["completion"]], "prompts": [chat, chat],
         "labels": [{"substances": ["opioids"]}, {"substances": ["ethanol"]}]},
        {"query": [chat], "prompts": [chat, chat]},  # lists that do not line up: 422 for this request
    ]  # fmt: skip
    prepares = [lambda p=p: _reward_work(reward, 64, body(p)) for p in payloads]
    expected = [alone(p) for p in prepares]
    calls.clear()
    outcomes = run_batch(prepares, _trim)
    assert calls == [("toxicology", 3)]
    assert json.loads(outcomes[0].body) == json.loads(expected[0].body)
    assert json.loads(outcomes[1].body) == json.loads(expected[1].body)
    assert isinstance(outcomes[2], ApiError) and outcomes[2].status == 422


def run_queued(router, coalescer: Coalescer, n_queued: int, gate: threading.Event):
    """Occupy the only scoring thread until ``n_queued`` requests queue behind it, then let all run."""

    async def main():
        def blocked():
            gate.wait(10)
            return _score_work(router, None, 64, True, body([TOX]))

        first = asyncio.ensure_future(coalescer.run(blocked, 10))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(coalescer.run(p, 10)) for p in requests(router)[:n_queued]]
        for _ in range(100):
            await asyncio.sleep(0)
        assert coalescer.queued == n_queued  # all of them wait: the one thread is busy
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    return asyncio.run(main())


def test_requests_queued_behind_a_busy_thread_go_together(router, calls):
    groups: list[int] = []
    with ThreadPoolExecutor(1) as executor:
        coalescer = Coalescer(executor, slots=1, max_bytes=10**6, trim=_trim, on_group=groups.append)
        outcomes = run_queued(router, coalescer, 4, threading.Event())
    assert groups == [1, 4]  # the first request alone, then the four that queued behind it
    assert calls[0] == ("toxicology", 1) and sorted(calls[1:]) == [("mcq", 3), ("toxicology", 3)]
    assert [getattr(o, "status_code", None) for o in outcomes] == [200, 200, 200, None, 200]
    assert isinstance(outcomes[3], ApiError) and outcomes[3].code == "bad_json"
    assert [r["status"] for r in json.loads(outcomes[4].body)["records"]] == ["ok", "error"]


@pytest.mark.parametrize(("max_bytes", "enabled"), [(15, True), (10**6, False)])
def test_the_byte_bound_and_switching_off_score_each_request_alone(router, calls, max_bytes, enabled):
    groups: list[int] = []
    with ThreadPoolExecutor(1) as executor:
        coalescer = Coalescer(executor, slots=1, max_bytes=max_bytes, trim=_trim, enabled=enabled, on_group=groups.append)
        run_queued(router, coalescer, 3, threading.Event())
    assert groups == [1, 1, 1, 1]  # each request is 10 bytes: two are over the bound of 15


def test_a_request_cancelled_while_queued_is_not_scored(router, calls):
    async def main():
        gate = threading.Event()
        with ThreadPoolExecutor(1) as executor:
            coalescer = Coalescer(executor, slots=1, max_bytes=10**6, trim=_trim)

            def blocked():
                gate.wait(10)
                return _score_work(router, None, 64, True, body([TOX]))

            first = asyncio.ensure_future(coalescer.run(blocked, 10))
            await asyncio.sleep(0)
            prepares = requests(router)
            gone = asyncio.ensure_future(coalescer.run(prepares[3], 10))  # mcq only
            kept = asyncio.ensure_future(coalescer.run(prepares[1], 10))  # tox only
            await asyncio.sleep(0)
            gone.cancel()
            gate.set()
            return await asyncio.gather(first, kept)

    first, kept = asyncio.run(main())
    assert first.status_code == kept.status_code == 200
    assert [name for name, _ in calls] == ["toxicology", "toxicology"]  # the cancelled mcq request was never scored


def test_a_shut_down_executor_fails_requests_instead_of_hanging(router):
    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    coalescer = Coalescer(executor, slots=1, max_bytes=10**6)
    with pytest.raises(RuntimeError):  # not a hang: wait_for would raise TimeoutError instead
        asyncio.run(asyncio.wait_for(coalescer.run(requests(router)[0], 10), 5))


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("--spec", "tox=toxicology", "--spec", "mcq", "--threads", "1")


def test_the_server_coalesces_concurrent_requests_and_answers_each_correctly(server):
    """32 clients at once against one scoring thread: every response is the one its request gets
    alone, and /metrics shows fewer scoring calls than requests."""
    bodies = [[{**TOX, "id": f"t{i}", "completion": f"<think>{i}</think><answer>{'opioids' if i % 2 else 'none'}</answer>"},
               {**MCQ, "id": f"m{i}", "completion": f"<answer>{'AB'[i % 2]}</answer>"}] for i in range(32)]  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as c:
        expected = [c.post("/v1/score", json=b).json() for b in bodies]

    async def all_at_once():
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=32)) as c:
            return await asyncio.gather(*(c.post("/v1/score", json=b) for b in bodies))

    def histogram() -> tuple[float, float]:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(server.url + "/metrics").text
        samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels.get("le")}
        return samples["medreward_coalesced_requests_count"], samples["medreward_coalesced_requests_sum"]

    calls_before, requests_before = histogram()
    for _ in range(3):
        responses = asyncio.run(all_at_once())
        assert [r.json() for r in responses] == expected
    calls, served = histogram()
    assert "workers: 1 × 1 scoring threads" in server.output()
    assert served - requests_before == 96
    assert calls - calls_before < 96  # some requests shared a call
