"""The persistent response cache (SQLite, WAL): hits and misses, what the key covers, concurrent
writers from processes and threads, a writer killed with SIGKILL mid-loop, corrupt and foreign
files, pickling, the default location."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from medreward.backends.base import ChatRequest, ChatResponse, ResponseCache, TokenLogprob
from medreward.backends.cache import (
    CacheError,
    SQLiteCache,
    default_cache_path,
    open_cache,
    remove_cache_files,
)
from medreward.errors import MedrewardError

SRC = str(Path(__file__).resolve().parents[2] / "src")


def request(content: str = "Is aspirin an NSAID?", **kwargs) -> ChatRequest:
    return ChatRequest(messages=({"role": "system", "content": "judge"}, {"role": "user", "content": content}), **kwargs)


def response(text: str = '{"verdict": "YES"}', model: str = "smollm2", **kwargs) -> ChatResponse:
    return ChatResponse(text=text, model=model, finish_reason="stop", prompt_tokens=12, completion_tokens=3, **kwargs)


@pytest.fixture
def cache(tmp_path: Path):
    store = SQLiteCache(tmp_path / "responses.sqlite")
    yield store
    store.close()


def test_is_a_response_cache(cache: SQLiteCache) -> None:
    assert isinstance(cache, ResponseCache)


def test_miss_then_hit_round_trips_every_field(cache: SQLiteCache) -> None:
    key = request().cache_key("openai", "smollm2")
    assert cache.get(key) is None
    logprobs = ((TokenLogprob("YES", -0.1), TokenLogprob("NO", -2.4)),)
    stored = response(logprobs=logprobs, latency_s=0.25, truncated_input=True)
    cache.put(key, stored, kind="openai")
    hit = cache.get(key)
    assert hit is not None and hit.cached
    assert hit == ChatResponse(**{**stored.to_json(), "logprobs": logprobs, "cached": True})
    # the flag is not stored: an entry put with cached=True reads back the same
    row = sqlite3.connect(cache.path).execute("SELECT value FROM responses").fetchone()[0]
    assert "cached" not in json.loads(row)


def test_put_replaces(cache: SQLiteCache) -> None:
    key = request().cache_key("openai", "m")
    cache.put(key, response("first"))
    cache.put(key, response("second"))
    assert len(cache) == 1
    assert cache.get(key).text == "second"


def test_delete_drops_one_entry_and_ignores_unknown_keys(cache: SQLiteCache) -> None:
    keep, drop = request().cache_key("openai", "m"), request(seed=1).cache_key("openai", "m")
    cache.put(keep, response("kept"))
    cache.put(drop, response("unusable verdict"))
    cache.delete(drop)
    cache.delete("no-such-key")
    assert cache.get(drop) is None and cache.get(keep).text == "kept" and len(cache) == 1


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(lambda: request(template="rubric.batched/2").cache_key("openai", "m"), id="template"),
        pytest.param(lambda: request(temperature=0.7).cache_key("openai", "m"), id="temperature"),
        pytest.param(lambda: request(max_tokens=64).cache_key("openai", "m"), id="max_tokens"),
        pytest.param(lambda: request(seed=1).cache_key("openai", "m"), id="seed"),
        pytest.param(lambda: request(top_logprobs=5).cache_key("openai", "m"), id="top_logprobs"),
        pytest.param(lambda: request(stop=("\n",)).cache_key("openai", "m"), id="stop"),
        pytest.param(lambda: request(response_schema={"type": "object"}).cache_key("openai", "m"), id="schema"),
        pytest.param(lambda: request("Is ibuprofen an NSAID?").cache_key("openai", "m"), id="messages"),
        pytest.param(lambda: request().cache_key("openai", "other-model"), id="model"),
        pytest.param(lambda: request().cache_key("transformers", "m"), id="kind"),
    ],
)
def test_key_changes_miss(cache: SQLiteCache, changed) -> None:
    base = request(template="rubric.batched/1").cache_key("openai", "m")
    cache.put(base, response())
    other = changed()
    assert other != base
    assert cache.get(other) is None
    assert cache.get(base) is not None


def test_same_request_same_key_across_instances(tmp_path: Path) -> None:
    """The key is canonical: an equal request built afresh (another run) hits."""
    path = tmp_path / "c.sqlite"
    with SQLiteCache(path) as first:
        first.put(request(template="t/1", response_schema={"b": 1, "a": [1, 2]}).cache_key("openai", "m"), response())
    with SQLiteCache(path) as second:
        assert second.get(request(template="t/1", response_schema={"a": [1, 2], "b": 1}).cache_key("openai", "m"))


def test_non_utf8_surrogates_and_unicode_round_trip(cache: SQLiteCache) -> None:
    key = request("bad \udcff bytes").cache_key("openai", "m")
    cache.put(key, response("déjà vu — ✓ 中文"))
    assert cache.get(key).text == "déjà vu — ✓ 中文"


def test_unreadable_row_is_a_logged_miss(cache: SQLiteCache, caplog) -> None:
    key = request().cache_key("openai", "m")
    cache.put(key, response())
    with sqlite3.connect(cache.path) as conn:
        conn.execute("UPDATE responses SET value = ?", ('{"text": "x", "unknown_field": 1}',))
    assert cache.get(key) is None
    assert "unreadable" in caplog.text


def test_stats_and_clear(cache: SQLiteCache) -> None:
    for i in range(3):
        cache.put(request(str(i)).cache_key("openai", "judge-a"), response(model="judge-a"), kind="openai")
    cache.put(request("x").cache_key("transformers", "smollm2"), response(model="smollm2"), kind="transformers")
    stats = cache.stats()
    assert stats.entries == 4
    assert stats.by_backend == {("openai", "judge-a"): 3, ("transformers", "smollm2"): 1}
    assert stats.size_bytes >= cache.path.stat().st_size > 0
    assert stats.oldest <= stats.newest <= time.time()
    # age two entries by an hour: clear(older_than=...) removes exactly those
    with sqlite3.connect(cache.path) as conn:
        conn.execute("UPDATE responses SET created = created - 3600 WHERE model = 'judge-a' AND rowid <= 2")
    assert cache.clear(older_than=1800) == 2
    assert len(cache) == 2
    assert cache.clear() == 2
    empty = cache.stats()
    assert (empty.entries, empty.by_backend, empty.oldest, empty.newest) == (0, {}, None, None)


def test_pickles_by_path_and_reopens(cache: SQLiteCache) -> None:
    key = request().cache_key("openai", "m")
    cache.put(key, response())
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.path == cache.path and clone is not cache
    assert clone.get(key).cached
    clone.close()


def test_close_then_reuse(cache: SQLiteCache) -> None:
    key = request().cache_key("openai", "m")
    cache.put(key, response())
    cache.close()
    assert cache.get(key) is not None


def test_wal_mode_and_busy_timeout(cache: SQLiteCache) -> None:
    conn = sqlite3.connect(cache.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    own = cache._connection()
    assert own.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert own.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000


# -- defaults ----------------------------------------------------------------------------------


def test_default_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEDREWARD_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_path() == Path.home() / ".cache" / "medreward" / "responses.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "medreward" / "responses.sqlite"
    monkeypatch.setenv("MEDREWARD_CACHE", str(tmp_path / "env" / "c.sqlite"))
    assert default_cache_path() == tmp_path / "env" / "c.sqlite"


def test_open_cache(monkeypatch, tmp_path: Path) -> None:
    assert open_cache(tmp_path / "never.sqlite", enabled=False) is None
    assert not (tmp_path / "never.sqlite").exists()
    monkeypatch.setenv("MEDREWARD_CACHE", str(tmp_path / "deep" / "er" / "c.sqlite"))
    store = open_cache(None)
    assert isinstance(store, SQLiteCache) and store.path == tmp_path / "deep" / "er" / "c.sqlite"
    assert store.path.exists()  # parent folders created
    store.close()
    explicit = open_cache(tmp_path / "explicit.sqlite", enabled=True)
    assert explicit.path == tmp_path / "explicit.sqlite"
    explicit.close()


# -- bad files ---------------------------------------------------------------------------------


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(CacheError) as info:
        SQLiteCache(path)
    assert isinstance(info.value, MedrewardError)
    assert str(path) in str(info.value) and "medreward cache clear" in str(info.value)
    assert remove_cache_files(path) == [path]
    with SQLiteCache(path) as fresh:  # a fresh cache after removing it
        assert len(fresh) == 0


def test_damaged_pages_are_a_clear_error(tmp_path: Path) -> None:
    """A real cache whose pages are overwritten: every operation raises CacheError, never a bare
    sqlite3 error."""
    path = tmp_path / "responses.sqlite"
    with SQLiteCache(path) as store:
        for i in range(300):
            store.put(request(str(i)).cache_key("openai", "m"), response("x" * 500))
    data = bytearray(path.read_bytes())
    assert len(data) > 40_000
    data[8192:] = b"\xa5" * (len(data) - 8192)  # keep the header and first pages, wreck the rest
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=str(path)):
        with SQLiteCache(path) as store:
            store.stats()
            [store.get(request(str(i)).cache_key("openai", "m")) for i in range(300)]


def test_directory_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="is a directory"):
        SQLiteCache(tmp_path)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(CacheError, match="not a medreward response cache"):
        SQLiteCache(path)
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    SQLiteCache(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(CacheError, match="newer medreward"):
        SQLiteCache(path)


# -- concurrency -------------------------------------------------------------------------------


def _write_entries(path: str, tag: str, count: int) -> None:
    """A spawned worker: its own SQLiteCache on the shared file."""
    store = SQLiteCache(path)
    for i in range(count):
        store.put(request(f"{tag}-{i}").cache_key("openai", "m"), response(f"{tag}:{i}"), kind="openai")
    store.close()


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_entries, args=(path, tag, 500)) for tag in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    with SQLiteCache(path) as store:
        assert len(store) == 1000
        for tag in ("a", "b"):
            for i in range(500):
                hit = store.get(request(f"{tag}-{i}").cache_key("openai", "m"))
                assert hit is not None and hit.text == f"{tag}:{i}"
        assert store.integrity_check() == "ok"


def test_threads_share_one_cache(cache: SQLiteCache) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(100):
                key = request(f"{t}-{i}").cache_key("openai", "m")
                cache.put(key, response(f"{t}:{i}"))
                assert cache.get(key).text == f"{t}:{i}"
                cache.get(request(f"{(t + 1) % 8}-{i}").cache_key("openai", "m"))  # read others' rows
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 800
    assert len(cache._connections) == 9  # one per worker thread (+ the opener's)


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {src!r})
    from medreward.backends.base import ChatResponse
    from medreward.backends.cache import SQLiteCache
    store = SQLiteCache(sys.argv[1])
    i = 0
    while True:
        # large values span many pages, so the kill lands inside a multi-page write
        store.put(f"key-{{i}}", ChatResponse(text=str(i) * 20000, model="m"), kind="openai")
        i += 1
    """
)


@pytest.mark.parametrize("round_", range(3))
def test_kill_9_during_writes_leaves_a_readable_cache(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "killed.sqlite"
    SQLiteCache(path).close()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER.format(src=SRC), str(path)])
    try:
        probe = sqlite3.connect(path, timeout=30)
        deadline = time.monotonic() + 60
        target = 50 + 40 * round_  # kill at a different point each round
        while probe.execute("SELECT COUNT(*) FROM responses").fetchone()[0] < target:
            assert proc.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.01)
        probe.close()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with SQLiteCache(path) as store:
        assert store.integrity_check() == "ok"
        keys = [row[0] for row in store._connection().execute("SELECT key FROM responses")]
        assert len(keys) >= target
        for key in keys:
            hit = store.get(key)
            i = key.removeprefix("key-")
            assert hit is not None and hit.text == i * 20000  # whole, never torn
        # the entries are the consecutive prefix 0..n-1: only the in-flight one can be missing
        assert sorted(int(k.removeprefix("key-")) for k in keys) == list(range(len(keys)))
        store.put("after", response())  # and it stays writable
        assert store.get("after") is not None
