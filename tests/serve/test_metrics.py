"""``GET /metrics`` changes as requests are served: requests by endpoint and code, the latency
histogram, rollouts by record status and component statuses per route (both scoring paths)."""

from __future__ import annotations

import json

import httpx
import pytest
from serve_support import require

require("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("--spec", "tox=toxicology", "--spec", "mcq")


def scrape(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(server.url + "/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_rollouts_statuses_and_latency(server):
    before = scrape(server)
    records = [
        {"task": "tox", "completion": "<think>.</think><answer>opioids</answer>", "reference": {"substances": ["opioids"]}},
        {"task": "tox", "completion": "<answer>opioids</answer>", "reference": {}},  # not_applicable
        {"task": "tox", "reference": {"substances": ["opioids"]}},  # error: no completion
        {"task": "mcq", "completion": "<answer>B</answer>", "reference": {"answer": "B"}},
    ]
    assert httpx.post(server.url + "/v1/score", json=records).status_code == 200
    assert httpx.post(server.url + "/v1/score", json=[{"task": "nope", "completion": "x"}]).status_code == 422
    payload = {"query": ["<answer>ethanol</answer>"], "labels": [json.dumps({"task": "tox", "substances": ["ethanol"]})]}
    assert httpx.post(server.url + "/get_reward", json=payload).status_code == 200
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("medreward_requests_total", endpoint="/v1/score", code="200") == 1
    assert delta("medreward_requests_total", endpoint="/v1/score", code="422") == 1
    assert delta("medreward_requests_total", endpoint="/get_reward", code="200") == 1
    assert delta("medreward_request_seconds_count", endpoint="/v1/score") == 2
    assert delta("medreward_request_seconds_bucket", endpoint="/v1/score", le="+Inf") == 2
    assert delta("medreward_request_seconds_sum", endpoint="/v1/score") > 0
    assert delta("medreward_rollouts_total", spec="tox", status="ok") == 2  # one by /v1/score, one by /get_reward
    assert delta("medreward_rollouts_total", spec="tox", status="not_applicable") == 1
    assert delta("medreward_rollouts_total", spec="tox", status="error") == 1
    assert delta("medreward_rollouts_total", spec="mcq", status="ok") == 1
    assert delta("medreward_component_statuses_total", spec="tox", component="substances", status="ok") == 2
    assert delta("medreward_component_statuses_total", spec="tox", component="substances", status="not_applicable") == 1
    assert delta("medreward_component_statuses_total", spec="mcq", component="choice", status="ok") == 1
    # the scrape itself is counted by the next one
    assert delta("medreward_requests_total", endpoint="/metrics", code="200") == 1
