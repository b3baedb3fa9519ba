"""The Scorer builds a spec's backends once per process, binds them to the components (in worker
processes too), resolves their endpoints, accounts their calls in RunStats, and closes them."""

from __future__ import annotations

import json
import os
import threading

import pytest
from model_backed import DictCache, RecordingBackend, build_recording_backend

from medreward.backends import BackendConfig
from medreward.errors import SpecError
from medreward.runner import RunStats, Scorer
from medreward.runner.backend_set import BackendSet

SPEC = {
    "name": "judged",
    "backends": {"judge": {"kind": "openai", "model": "m", "base_url": "http://spec.invalid/v1"}},
    "components": [
        {"name": "format", "kind": "format.tags", "weight": 0.0},
        {"name": "yes", "kind": "model_backed:YesJudge"},
    ],
}
RECORDS = [{"completion": text} for text in ["yes", "no", "yes please", "fail", "nope", "yes"]]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    RecordingBackend.built.clear()
    monkeypatch.delenv("MEDREWARD_JUDGE_BASE_URL", raising=False)


def score(records=RECORDS, **options):
    with Scorer(SPEC, backend_factory=build_recording_backend, use_cache=False, **options) as scorer:
        return scorer.score(records), scorer.stats


def test_backends_are_bound_in_process_and_accounted():
    records, stats = score()
    assert [r.components["yes"] for r in records] == [1.0, 0.0, 1.0, None, 0.0, 1.0]
    assert records[3].status.value == "error" and "HTTP 500" in records[3].info["error"]
    assert {r.info["yes"]["pid"] for r in records if r.status.value == "ok"} == {os.getpid()}
    [backend] = RecordingBackend.built  # built once
    assert backend.closed  # the context manager closed it
    judge = stats.backends["judge"]
    assert (judge.calls, judge.cache_hits, judge.failures, judge.retries) == (6, 0, 1, 2)
    assert judge.completion_tokens == 5 and len(judge.latencies) == 5
    assert stats.to_dict()["backends"]["judge"]["calls"] == 6


def test_backends_built_once_across_chunks_and_stats_merge_per_chunk():
    records, stats = score(chunk_size=2)
    assert len(RecordingBackend.built) == 1
    assert stats.backends["judge"].calls == len(RECORDS)
    assert len(RecordingBackend.built[0].requests) == len(RECORDS)


def test_nothing_is_built_before_the_first_batch_and_close_is_idempotent():
    scorer = Scorer(SPEC, backend_factory=build_recording_backend, use_cache=False)
    assert RecordingBackend.built == []
    assert scorer.stats.backends["judge"].calls == 0  # declared backends are listed from the start
    scorer.close()
    scorer.close()


def test_worker_processes_bind_their_own_backends_and_send_stats_back():
    records, stats = score(workers=2, chunk_size=2, time_limit=30)
    assert [r.components["yes"] for r in records] == [1.0, 0.0, 1.0, None, 0.0, 1.0]
    pids = {r.info["yes"]["pid"] for r in records if r.status.value == "ok"}
    assert os.getpid() not in pids
    assert RecordingBackend.built == []  # the parent built none: workers did the scoring
    judge = stats.backends["judge"]
    assert (judge.calls, judge.failures, judge.retries) == (6, 1, 2)
    assert len(judge.latencies) == 5


def test_worker_processes_also_under_thread_isolation():
    records, stats = score(workers=2, chunk_size=3, isolation="thread")
    assert stats.backends["judge"].calls == 6
    assert all(r.info["yes"]["pid"] != os.getpid() for r in records if r.status.value == "ok")


def test_backend_url_override_reaches_the_backend(monkeypatch):
    records, _ = score(backend_urls={"judge": "http://flag.invalid/v1"})
    assert records[0].info["yes"]["model"] == "m@http://flag.invalid/v1"
    monkeypatch.setenv("MEDREWARD_JUDGE_BASE_URL", "http://env.invalid/v1")
    records, _ = score()
    assert records[0].info["yes"]["model"] == "m@http://env.invalid/v1"
    records, _ = score(backend_urls={"judge": "http://flag.invalid/v1"})  # the flag beats the environment
    assert records[0].info["yes"]["model"] == "m@http://flag.invalid/v1"
    RecordingBackend.built.clear()
    records, _ = score()
    assert RecordingBackend.built[0].config.base_url == "http://env.invalid/v1"


def test_endpoint_resolved_in_the_parent_reaches_worker_processes(monkeypatch):
    monkeypatch.setenv("MEDREWARD_JUDGE_BASE_URL", "http://env.invalid/v1")
    records, _ = score(workers=2, chunk_size=3, time_limit=30)
    assert {r.info["yes"]["model"] for r in records if r.status.value == "ok"} == {"m@http://env.invalid/v1"}
    records, _ = score(workers=2, chunk_size=3, time_limit=30, backend_urls={"judge": "http://flag.invalid/v1"})
    assert {r.info["yes"]["model"] for r in records if r.status.value == "ok"} == {"m@http://flag.invalid/v1"}


def test_url_for_an_undeclared_backend_is_a_spec_error():
    with pytest.raises(SpecError, match=r"backend 'grader'.*declared: judge"):
        Scorer(SPEC, backend_urls={"grader": "http://x/v1"})
    with pytest.raises(SpecError, match="declared: none"):
        Scorer("toxicology", backend_urls={"judge": "http://x/v1"})


def test_real_cache_hits_make_no_calls_and_are_counted(tmp_path):
    path = tmp_path / "responses.sqlite"
    # "yes" comes twice: its second request hits; the failure is never cached
    for expected_calls, expected_hits in [(5, 1), (1, 5)]:
        RecordingBackend.built.clear()
        with Scorer(SPEC, backend_factory=build_recording_backend, cache=path) as scorer:
            records = scorer.score(RECORDS)
        judge = scorer.stats.backends["judge"]
        assert (judge.calls, judge.cache_hits) == (expected_calls, expected_hits)
        assert [r.components["yes"] for r in records] == [1.0, 0.0, 1.0, None, 0.0, 1.0]
    assert path.exists()
    RecordingBackend.built.clear()
    records, stats = score()  # use_cache=False: every request is a call again
    assert (stats.backends["judge"].calls, stats.backends["judge"].cache_hits) == (6, 0)


def test_siblings_share_the_backends_and_their_totals_add_up():
    with Scorer(SPEC, backend_factory=build_recording_backend, use_cache=False) as scorer:
        siblings = [scorer.sibling() for _ in range(4)]
        results: list[RunStats] = []

        def run(s: Scorer) -> None:
            s.score_chunk(RECORDS * 5)
            results.append(s.stats)

        threads = [threading.Thread(target=run, args=(s,)) for s in siblings]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        siblings[0].close()  # a sibling does not own the backends
        assert not RecordingBackend.built[0].closed
    assert len(RecordingBackend.built) == 1 and RecordingBackend.built[0].closed
    total = RunStats.empty(("format", "yes"))
    for stats in results:
        total.merge(stats)
    assert total.backends["judge"].calls == 4 * 5 * len(RECORDS)
    assert len(total.backends["judge"].latencies) == 4 * 5 * 5


def test_spec_without_backends_has_no_backend_set_and_empty_stats():
    scorer = Scorer("toxicology")
    assert scorer._backends is None
    scorer.score([{"completion": "<think>x</think><answer>opioids</answer>", "reference": {"substances": ["opioids"]}}])
    assert scorer.stats.backends == {}
    assert json.loads(json.dumps(scorer.stats.to_dict()))["backends"] == {}


def test_take_stats_gives_increments_and_notices_replaced_stats():
    configs = {"judge": BackendConfig(kind="openai", model="m")}
    cache = DictCache()
    backends = BackendSet(configs, use_cache=False, factory=lambda n, c, cache: RecordingBackend(n, c, cache=cache))
    assert backends.take_stats() == {}  # nothing built
    [judge] = backends.get().values()
    judge.cache = cache
    from medreward.backends import ChatRequest

    request = ChatRequest(messages=({"role": "user", "content": "yes"},))
    judge.complete([request, request])
    first = backends.take_stats()["judge"]
    assert (first.calls, first.cache_hits, len(first.latencies)) == (1, 1, 1)
    judge.complete([request])
    second = backends.take_stats()["judge"]
    assert (second.calls, second.cache_hits, len(second.latencies)) == (0, 1, 0)
    judge.stats = type(judge.stats)()  # a backend that starts its accounting afresh
    judge.complete([request])
    assert backends.take_stats()["judge"].cache_hits == 1
    backends.close()
    with pytest.raises(RuntimeError, match="closed"):
        backends.get()


def test_components_prepare_their_models_outside_the_first_batch_time_limit():
    """A local model that loads slower than the batch time limit: loaded in prepare(), before the
    components run under their deadlines, so the first batch is scored, not timed out."""
    import time

    from medreward.records import ComponentScore
    from medreward.rewards.base import RewardComponent

    class SlowToLoad(RewardComponent):
        kind = "test.slow_to_load"
        loaded = False

        def backend_names(self):
            return ("judge",)

        def bind_backends(self, backends):
            self._backend = backends["judge"]

        def prepare(self):
            time.sleep(1.5)  # longer than the 1 s batch limit below
            self.loaded = True

        def score_batch(self, rollouts):
            return [ComponentScore.ok(1.0 if self.loaded else 0.0) for _ in rollouts]

    component = SlowToLoad(name="yes")
    with Scorer(SPEC, backend_factory=build_recording_backend, use_cache=False, time_limit=1.0,
                batch_time_limit=1.0) as scorer:  # fmt: skip
        scorer.components = [scorer.components[0], component]
        records = scorer.score([{"completion": "x"}, {"completion": "y"}])
    assert [r.status.value for r in records] == ["ok", "ok"]
    assert [r.components["yes"] for r in records] == [1.0, 1.0]


def test_a_failing_prepare_is_logged_and_the_samples_still_get_their_status(caplog):
    from medreward.records import ComponentScore
    from medreward.rewards.base import RewardComponent

    class BrokenModel(RewardComponent):
        kind = "test.broken_model"

        def backend_names(self):
            return ("judge",)

        def bind_backends(self, backends):
            pass

        def prepare(self):
            raise RuntimeError("cannot load model 'x': no such file")

        def score_batch(self, rollouts):
            return [ComponentScore.error("cannot load model 'x': no such file") for _ in rollouts]

    with Scorer(SPEC, backend_factory=build_recording_backend, use_cache=False) as scorer:
        scorer.components = [scorer.components[0], BrokenModel(name="yes")]
        [record] = scorer.score([{"completion": "x"}])
    assert record.status.value == "error" and "no such file" in record.info["error"]
    assert "preparing its model failed" in caplog.text


def test_latencies_are_handed_over_not_kept_by_a_long_lived_backend():
    from medreward.backends.base import MAX_LATENCIES, BackendStats

    records, stats = score(chunk_size=2)
    [backend] = RecordingBackend.built
    assert len(stats.backends["judge"].latencies) == 5 and backend.stats.latencies == []  # taken by the run
    assert backend.stats.calls == 6  # the counters stay (increments are computed against them)
    total = BackendStats()
    for _ in range(3):
        total.merge(BackendStats(latencies=[0.1] * (MAX_LATENCIES // 2 + 1)))
    assert len(total.latencies) == MAX_LATENCIES
