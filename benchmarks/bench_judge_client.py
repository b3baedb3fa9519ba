"""Judge-client throughput against a loopback OpenAI-compatible server that answers after a fixed delay.

The fake server (tests/backends/fake_openai_server.py) runs in its own process, one thread per
connection (unlimited parallelism), and answers every chat completion after ``--delay`` seconds.
Measured in one run:

- medreward's ``OpenAIBackend`` at ``--concurrency`` (default 64) over ``--requests`` requests:
  requests/s, the fraction of the ideal ``concurrency / delay``, and the client's CPU time per
  request (this process's CPU time over the run: what the client takes from a trainer it runs in);
- a sequential loop with the official ``openai`` client (or, if it is not installed, a sequential
  ``httpx`` loop — the table says which) over the first ``--sequential-requests`` of the same requests
  (a sequential loop over all of them would take ``requests × delay``).

    python benchmarks/bench_judge_client.py [--delay 0.2] [--concurrency 64] [--requests 640]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from medreward.backends.base import ChatRequest, ChatResponse
from medreward.backends.config import BackendConfig
from medreward.backends.openai import OpenAIBackend

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "backends" / "fake_openai_server.py"


def start_server(delay: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(SERVER), "--delay", str(delay)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def make_requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=(
                {"role": "system", "content": "You grade clinical answers against a rubric. Answer in JSON."},
                {"role": "user", "content": f"Rollout {i}: the patient should take amoxicillin 500 mg three times daily."},
            ),
            template="bench/1",
            max_tokens=64,
        )
        for i in range(n)
    ]


def run_medreward(url: str, requests: list[ChatRequest], concurrency: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for all ``requests``."""
    config = BackendConfig(kind="openai", model="fake-judge", base_url=url, max_concurrency=concurrency, timeout_s=30)
    backend = OpenAIBackend("bench", config)
    try:
        backend.complete(requests[:concurrency])  # warm: loop thread, connection pool
        cpu = time.process_time()
        started = time.perf_counter()
        results = backend.complete(requests)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        backend.close()
    failed = sum(not isinstance(r, ChatResponse) for r in results)
    if failed:
        raise RuntimeError(f"{failed} requests failed")
    return elapsed, cpu


def run_sequential(url: str, requests: list[ChatRequest]) -> tuple[str, float, float]:
    """(label, wall seconds, CPU seconds of this process) for ``requests`` one after another."""
    try:
        import openai
    except ImportError:
        openai = None  # type: ignore[assignment]
    if openai is not None:
        client = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
        label = f"sequential openai client {openai.__version__}"

        def call(r: ChatRequest) -> None:
            client.chat.completions.create(
                model="fake-judge", messages=[dict(m) for m in r.messages], max_tokens=r.max_tokens, temperature=0, seed=0
            )
    else:
        import httpx

        http = httpx.Client()
        label = "sequential httpx loop (openai not installed)"

        def call(r: ChatRequest) -> None:
            http.post(url + "/chat/completions", json={"model": "fake-judge", "messages": [dict(m) for m in r.messages]}).raise_for_status()

    call(requests[0])  # warm
    cpu = time.process_time()
    started = time.perf_counter()
    for r in requests:
        call(r)
    return label, time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2, help="server answer delay in seconds (default 0.2)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--sequential-requests", type=int, default=32)
    args = parser.parse_args(argv)
    proc, url = start_server(args.delay)
    try:
        requests = make_requests(args.requests)
        elapsed, cpu = run_medreward(url, requests, args.concurrency)
        label, seq_elapsed, seq_cpu = run_sequential(url, requests[: args.sequential_requests])
    finally:
        proc.kill()
        proc.wait()
    ideal = args.concurrency / args.delay
    ours = args.requests / elapsed
    seq = args.sequential_requests / seq_elapsed
    rows = [
        ("client", "requests", "wall s", "req/s", "of ideal", "speed-up", "CPU ms/request"),
        (f"medreward OpenAIBackend, concurrency {args.concurrency}", str(args.requests), f"{elapsed:.2f}", f"{ours:.1f}",
         f"{ours / ideal:.1%}", f"{ours / seq:.1f}x", f"{1000 * cpu / args.requests:.2f}"),
        (label, str(args.sequential_requests), f"{seq_elapsed:.2f}", f"{seq:.2f}", f"{seq / ideal:.1%}", "1.0x",
         f"{1000 * seq_cpu / args.sequential_requests:.2f}"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"fake server delay {args.delay:g} s, ideal at concurrency {args.concurrency}: {ideal:.0f} req/s")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
