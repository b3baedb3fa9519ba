"""Load test of ``medreward serve`` on loopback: the toxicology preset, 16 rollouts per request
(~2 KB completions, as in bench_scoring.py), 1 / 16 / 64 concurrent clients, each a keep-alive
connection sending requests back to back for a bounded time. Prints rollouts/s, p50/p99 request
latency and errors per level, next to the in-process Scorer's rollouts/s on the same rollouts.

The client is a minimal asyncio HTTP/1.1 client (pre-encoded requests, Content-Length framing), so
that it takes as little of the machine's CPU from the server as possible; it runs in this process,
the server in another. Every response is checked: status 200 and one record per rollout.

    python benchmarks/bench_serve.py [--seconds 10] [--clients 1,16,64] [--batch 16] [--workers 1] [--threads 8] [--no-echo]
        [--time-limit 10] [--no-coalesce]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench_scoring import make_rollouts
from rich.console import Console
from rich.table import Table

from medreward import Scorer

console = Console(width=max(140, Console().width))  # whole numbers in the table, even in a pipe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children (uvicorn's worker processes), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def start_server(port: int, workers: int, threads: int, extra: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "medreward.cli.app", "serve", "--spec", "toxicology", "--port", str(port),
         "--workers", str(workers), "--threads", str(threads), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


async def client(port: int, requests: list[bytes], batch: int, until: float, latencies: list[float], errors: list[str]) -> None:
    """One keep-alive connection sending ``requests`` round-robin until ``until``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    expected = b'"status":'
    try:
        while time.perf_counter() < until:
            request = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(f"HTTP {status}")
            elif body.count(expected) < batch:  # one record per rollout (each has a "status")
                errors.append("missing records")
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()


async def run_level(port: int, pid: int, requests: list[bytes], batch: int, clients: int, seconds: float) -> dict:
    # warm-up: every connection and scoring thread once
    warm_lat: list[float] = []
    warm_err: list[str] = []
    await asyncio.gather(*(client(port, requests, batch, time.perf_counter() + 1.0, warm_lat, warm_err) for _ in range(clients)))
    latencies: list[float] = []
    errors: list[str] = []
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(client(port, requests, batch, started + seconds, latencies, errors) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "rollouts_per_s": len(latencies) * batch / elapsed,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan"),
        "errors": len(errors) + len(warm_err),
        "cpu_us_per_rollout": 1e6 * cpu / max(1, len(latencies) * batch),
    }


def encode_requests(rollouts: list[dict], batch: int, echo: bool = True) -> list[bytes]:
    out = []
    line = b"POST /v1/score HTTP/1.1\r\n" if echo else b"POST /v1/score?echo=false HTTP/1.1\r\n"
    for start in range(0, len(rollouts) - batch + 1, batch):
        body = json.dumps(rollouts[start:start + batch]).encode()
        out.append(line + b"Host: bench\r\nContent-Type: application/json\r\n"
                   + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
    return out


def in_process(rollouts: list[dict], batch: int, seconds: float) -> dict[str, float]:
    """The in-process Scorer on the same rollouts: rollouts/s and CPU µs per rollout, for one call
    over all of them (chunks of 256) and for one call per ``batch``."""
    scorer = Scorer("toxicology")
    scorer.score(rollouts[:512])  # warm
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        done += len(scorer.score(rollouts))
    out = {"whole": done / (time.perf_counter() - started), "whole_cpu_us": 1e6 * (time.process_time() - cpu) / done}
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for i in range(0, len(rollouts), batch):
            done += len(scorer.score(rollouts[i:i + batch]))
    out.update(per_batch=done / (time.perf_counter() - started), per_batch_cpu_us=1e6 * (time.process_time() - cpu) / done)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--clients", default="1,16,64", help="concurrency levels")
    parser.add_argument("--batch", type=int, default=16, help="rollouts per request")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--threads", type=int, default=8, help="scoring threads per server process")
    parser.add_argument("--n", type=int, default=4096, help="distinct rollouts cycled through")
    parser.add_argument("--no-echo", action="store_true", help="POST /v1/score?echo=false (ids and scores only)")
    parser.add_argument("--time-limit", default="10", help="the server's --time-limit ('inf': no watchdog thread)")
    parser.add_argument("--no-coalesce", action="store_true", help="the server scores each request in its own call")
    args = parser.parse_args()
    rollouts = make_rollouts(args.n)
    requests = encode_requests(rollouts, args.batch, echo=not args.no_echo)
    base = in_process(rollouts, args.batch, min(args.seconds, 5.0))
    port = free_port()
    server = start_server(port, args.workers, args.threads,
                          ["--time-limit", args.time_limit, *(["--no-coalesce"] if args.no_coalesce else [])])
    try:
        levels = [asyncio.run(run_level(port, server.pid, requests, args.batch, int(c), args.seconds))
                  for c in args.clients.split(",")]  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    after = in_process(rollouts, args.batch, min(args.seconds, 5.0))  # the machine's load drifts: measure twice
    whole = (base["whole"] + after["whole"]) / 2
    whole_cpu = (base["whole_cpu_us"] + after["whole_cpu_us"]) / 2
    table = Table(title=f"medreward serve, toxicology, {args.batch} rollouts/request, workers={args.workers}, threads={args.threads}"
                  + (", echo=false" if args.no_echo else "") + (", no coalescing" if args.no_coalesce else ""))
    for column in ("clients", "requests", "rollouts/s", "p50 ms", "p99 ms", "errors", "vs in-process", "server CPU µs/rollout",
                   "CPU efficiency"):  # fmt: skip
        table.add_column(column, justify="right")
    for level in levels:
        table.add_row(str(level["clients"]), str(level["requests"]), f"{level['rollouts_per_s']:,.0f}", f"{level['p50_ms']:.1f}",
                      f"{level['p99_ms']:.1f}", str(level["errors"]), f"{level['rollouts_per_s'] / whole:.2f}x",
                      f"{level['cpu_us_per_rollout']:.1f}", f"{whole_cpu / level['cpu_us_per_rollout']:.2f}x")  # fmt: skip
    console.print(table)
    console.print(f"in-process Scorer: {base['whole']:,.0f} / {after['whole']:,.0f} rollouts/s (before / after) in one call "
                  f"({whole_cpu:.1f} CPU µs/rollout); {base['per_batch']:,.0f} / {after['per_batch']:,.0f} rollouts/s "
                  f"called per {args.batch} ({(base['per_batch_cpu_us'] + after['per_batch_cpu_us']) / 2:.1f} CPU µs/rollout)")
    console.print("CPU efficiency = the in-process Scorer's CPU per rollout / the server's: the throughput ratio on an idle "
                  "machine with as many cores for each (the load of other jobs does not change it much)")
    console.print(f"machine: {os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")


if __name__ == "__main__":
    main()
