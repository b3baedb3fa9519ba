"""Scoring on Ray vs the in-process Scorer: N toxicology rollouts (~2 KB completions) in a JSONL
file, scored with the `toxicology` preset and written to JSONL, end to end (read, score, write),
the way `medreward score` and `medreward score --ray` run it.

Rows, side by side in one run: the in-process Scorer (one process, then 2 worker processes), and
Ray Data on a local cluster (`ray.init(num_cpus=2)`) with 1 and 2 scoring actors. Ray's cluster
start is timed apart (a long-lived cluster pays it once); actor start is inside each Ray row.
Every output file is checked to be byte-identical to the in-process one.

    python benchmarks/bench_ray.py [--n 1000000] [--workers 1,2] [--batch-size 1024] [--dir /tmp/bench_ray]

The issue's target: Ray at most 25% slower than the in-process Scorer on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench_scoring import make_rollouts
from medreward import Scorer
from medreward.distributed import score_dataset
from medreward.io import open_writer, read_records

CHUNK = 10_000  # rollouts generated (and held) at a time while writing the input


def write_input(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, n, CHUNK):
            for record in make_rollouts(min(CHUNK, n - start), seed=start):
                handle.write(json.dumps(record) + "\n")


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def in_process(source: Path, output: Path, workers: int, batch_size: int) -> float:
    started = time.perf_counter()
    scorer = Scorer("toxicology", workers=workers, chunk_size=batch_size)
    with open_writer(output, components=scorer.spec.component_names) as writer:
        for record in scorer.iter_score(read_records(source)):
            writer.write(record)
    return time.perf_counter() - started


def on_ray(source: Path, output: Path, workers: int, batch_size: int) -> float:
    started = time.perf_counter()
    score_dataset(source, "toxicology", output, num_workers=workers, batch_size=batch_size)
    return time.perf_counter() - started


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="rollouts (default 1M, as the issue asks)")
    parser.add_argument("--workers", default="1,2", help="Ray actor counts to run, comma-separated")
    parser.add_argument("--batch-size", type=int, default=1024, help="records per batch (both sides)")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    console = Console(width=120)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench_ray_"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "rollouts.jsonl"
    console.print(f"before: {load()}")
    t0 = time.perf_counter()
    write_input(source, args.n)
    console.print(f"wrote {args.n} rollouts ({source.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")

    rows: list[tuple[str, int, float, bool]] = []
    reference = folder / "in_process.jsonl"
    base = in_process(source, reference, 0, args.batch_size)
    want = digest(reference)
    rows.append(("in-process Scorer", 1, base, True))
    out = folder / "in_process_w2.jsonl"
    rows.append(("in-process Scorer, worker processes", 2, in_process(source, out, 2, args.batch_size), digest(out) == want))

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cluster_start = time.perf_counter() - t0
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            out = folder / f"ray_{workers}.jsonl"
            rows.append(("Ray Data (actors)", workers, on_ray(source, out, workers, args.batch_size), digest(out) == want))
    finally:
        ray.shutdown()

    table = Table(title=f"{args.n} toxicology rollouts, JSONL in → JSONL out, batch {args.batch_size}")
    for column in ("how", "workers", "seconds", "rollouts/s", "vs in-process", "same output"):
        table.add_column(column, justify="left" if column == "how" else "right")
    for how, workers, seconds, same in rows:
        table.add_row(how, str(workers), f"{seconds:.1f}", f"{args.n / seconds:,.0f}", f"{seconds / base - 1:+.0%}", "yes" if same else "NO")
    console.print(table)
    console.print(f"Ray cluster start (once, not in the rows): {cluster_start:.1f} s")
    console.print(f"after: {load()}")
    if args.dir is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
