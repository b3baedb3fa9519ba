"""``medreward score INPUT --spec NAME_OR_PATH [-o OUTPUT] [--workers N]``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..io import detect_format, read_records
from ..records import Status
from ..runner import RunStats, Scorer
from .console import err, open_output, out, progress_bar, user_errors

_SHOW_ERRORS = 5


def _count_records(path: Path) -> int | None:
    """Total for the progress bar: Parquet metadata, or newline count of a JSONL under 256 MB."""
    try:
        if detect_format(path) == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if path.suffix != ".gz" and path.stat().st_size < 256 * 2**20:
            with open(path, "rb") as handle:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(2**20), b"")) or None
    except Exception:  # noqa: BLE001 - the total is cosmetic; the real read reports real errors
        return None
    return None


@user_errors
def score_command(
    input: Path = typer.Argument(..., help="Rollouts: .jsonl, .jsonl.gz or .parquet (rollout format: docs/contracts.md)."),
    spec: str = typer.Option(..., "--spec", "-s", help="Preset name (see `medreward specs`) or path to a spec TOML."),
    output: str | None = typer.Option(None, "--output", "-o", help="Write scored records here (.jsonl/.parquet; '-' = stdout)."),
    workers: int = typer.Option(0, "--workers", "-w", min=0, help="Worker processes (0: score in this process)."),
    time_limit: float = typer.Option(10.0, "--time-limit", min=0.001, help="Seconds one component may spend on one sample."),
    chunk_size: int = typer.Option(256, "--chunk-size", min=1, help="Records per batch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score a file of rollouts with a spec and print a summary."""
    scorer = Scorer(spec, workers=workers, time_limit=time_limit, chunk_size=chunk_size)
    records = read_records(input)
    console = err if output == "-" else out  # stdout carries the records then
    writer = open_output(output, input=input) if output else None
    errors: list[str] = []
    total = _count_records(input)
    progress = progress_bar("scoring", quiet=quiet)
    try:
        with progress:
            task = progress.add_task("score", total=total)
            for record in scorer.iter_score(records, on_progress=lambda n: progress.advance(task, n)):
                if record.status is Status.ERROR and len(errors) < _SHOW_ERRORS:
                    where = f"line {record.record['line']}: " if "line" in record.record and "raw" in record.record else ""
                    message = record.info.get("error", "")
                    errors.append(message if message.startswith("line ") else where + message)
                if writer is not None:
                    writer.write(record)
    finally:
        if writer is not None:
            writer.close()
    _print_summary(console, scorer.spec.name, scorer.stats, errors, output)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _print_summary(console, spec_name: str, stats: RunStats, errors: list[str], output: str | None) -> None:
    table = Table(title=f"medreward score · spec {spec_name} · {stats.n} records in {stats.seconds:.2f} s")
    table.add_column("")
    table.add_column("mean", justify="right")
    table.add_column("ok / n/a / error / timeout", justify="right")
    table.add_column("µs/sample", justify="right")
    counts = stats.statuses
    table.add_row(
        "[bold]reward[/]",
        f"{_fmt(stats.reward_mean)} ± {_fmt(stats.reward_std)}",
        " / ".join(str(counts[s.value]) for s in Status),
        "",
    )
    for comp in stats.components.values():
        table.add_row(
            comp.name, _fmt(comp.mean), " / ".join(str(comp.counts[s.value]) for s in Status),
            _fmt(comp.us_per_sample, 1),
        )
    console.print(table)
    slowest = stats.slowest_component
    if slowest is not None and slowest.seconds > 0:
        console.print(f"slowest component: [bold]{slowest.name}[/] ({slowest.seconds:.2f} s in all)")
    if stats.abandoned_threads:
        console.print(f"[yellow]{stats.abandoned_threads} scoring thread(s) were abandoned after a timeout[/]")
    if errors:
        console.print(f"[yellow]{counts[Status.ERROR.value]} record(s) with errors[/], e.g.:")
        for message in errors:
            console.print(f"  • {message}", highlight=False, soft_wrap=True)
    if output is None:
        console.print("[dim]scores were not saved: add -o FILE.jsonl to keep them[/]")
    elif output != "-":
        console.print(f"wrote {stats.n} scored records to {output}")
