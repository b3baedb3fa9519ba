"""The ``medreward score`` process under signals: no orphaned workers after SIGTERM or kill -9,
Ctrl-C keeps what was scored, ``--time-limit inf`` (issue 9, items 10, 11, 13)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

SUPPORT = str(Path(__file__).parents[1] / "support")
ENV = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", "MEDREWARD_PROGRESS": "0",
       "PYTHONPATH": os.pathsep.join(filter(None, [SUPPORT, os.environ.get("PYTHONPATH")]))}
GOOD = "<think>reasoning</think><answer>opioids</answer>"
SLOW_SPEC = """name = "slow"
[[components]]
name = "format"
kind = "format.tags"
weight = 1.0
[[components]]
name = "slow"
kind = "faulty_components:Slow"
weight = 1.0
"""


@pytest.fixture
def slow_run(tmp_path):
    """Start ``medreward score`` on 20,000 records at 2 ms each (40 s of work); kill it at the end."""
    (tmp_path / "slow.toml").write_text(SLOW_SPEC)
    with open(tmp_path / "in.jsonl", "w") as handle:
        for i in range(20_000):
            handle.write(json.dumps({"id": str(i), "completion": GOOD}) + "\n")
    procs = []

    def start(*options: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "medreward.cli.app", "score", "in.jsonl", "--spec", "slow.toml",
                   "-o", "out.jsonl", "--chunk-size", "20", *options]
        proc = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def wait_for_output(path: Path, proc: subprocess.Popen, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"no output appeared (exit code {proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}")


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def survivors(processes: list[psutil.Process], within: float) -> list[int]:
    deadline = time.monotonic() + within
    while True:
        alive = [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_the_main_process(slow_run, tmp_path, how):
    proc = slow_run("--workers", "2")
    wait_for_output(tmp_path / "out.jsonl", proc)
    children = descendants(proc.pid)
    workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2, [p.cmdline() for p in children]
    os.kill(proc.pid, how)
    proc.wait(timeout=30)
    # the workers and multiprocessing's resource tracker all go (at once, normally; the bound is
    # generous for a loaded machine, and polling returns as soon as they are gone)
    assert survivors(children, within=30.0) == []
    if how == signal.SIGTERM:  # handled like Ctrl-C: the records so far are written, and counted
        _, stderr_or_out = proc.communicate(timeout=5)
        assert proc.returncode == 130


@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_stops_the_run_and_keeps_the_records_so_far(slow_run, tmp_path, workers):
    proc = slow_run("--workers", workers, "--time-limit", "inf")
    wait_for_output(tmp_path / "out.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert 0 < len(lines) < 20_000
    assert [json.loads(line)["id"] for line in lines] == [str(i) for i in range(len(lines))]
    assert f"interrupted: {len(lines)} record(s) scored and written" in stdout + stderr


def test_time_limit_inf_is_no_limit(tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps({"completion": GOOD, "reference": {"substances": ["opioids"]}}) + "\n")
    command = [sys.executable, "-m", "medreward.cli.app", "score", "in.jsonl", "--spec", "toxicology",
               "--time-limit", "inf", "-o", "out.jsonl"]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text())["reward"] == 1.0
