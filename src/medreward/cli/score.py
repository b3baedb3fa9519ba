"""``medreward score INPUT --spec NAME_OR_PATH [-o OUTPUT] [--workers N]``."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from ..errors import InputError
from ..io import GuardedRecords, detect_format, read_records
from ..io.resume import check_resumable, find_resume_point, skip_scored
from ..records import Status
from ..runner import RunStats, Scorer
from ..runner.signals import sigterm_as_interrupt
from .console import err, fail, open_output, out, progress_bar, user_errors

log = logging.getLogger(__name__)

_SHOW_ERRORS = 5


class Isolation(str, Enum):
    process = "process"
    thread = "thread"


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
    time_limit: float = typer.Option(10.0, "--time-limit", min=0.001, help="Seconds one component may spend on one sample ('inf': no limit)."),
    isolation: Isolation | None = typer.Option(
        None, "--isolation", case_sensitive=False,
        help="How time limits are enforced: 'process' kills a worker that overruns (stops anything); 'thread' abandons "
        "the call (cannot stop code that holds the GIL). Default: process when --workers > 1, else thread.",
    ),
    chunk_size: int = typer.Option(256, "--chunk-size", min=1, help="Records per batch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue a killed run: keep the complete records already in the -o JSONL file, score the rest. "
        "The result is the file an uninterrupted run writes.",
    ),
) -> None:
    """Score a file of rollouts with a spec and print a summary.

    A file that cannot be read to its end (a truncated .gz) is scored up to the damage, written,
    and then reported with exit code 2."""
    scorer = Scorer(spec, workers=workers, time_limit=time_limit, chunk_size=chunk_size, isolation=isolation.value if isolation else None)
    records = GuardedRecords(read_records(input))
    console = err if output == "-" else out  # stdout carries the records then
    kept = _resume(records, input, output, scorer) if resume else 0
    components = scorer.spec.component_names
    writer = open_output(output, input=input, components=components, append=resume) if output else None
    errors: list[str] = []
    total = _count_records(input)
    progress = progress_bar("scoring", quiet=quiet)
    written, interrupted = 0, False
    try:
        with progress, sigterm_as_interrupt():
            task = progress.add_task("score", total=total, completed=kept)
            advance = _progress_updater(progress, task, records, estimate=total is None)
            for record in scorer.iter_score(records, on_progress=advance):
                if record.status is Status.ERROR and len(errors) < _SHOW_ERRORS:
                    where = f"line {record.record['line']}: " if "line" in record.record and "raw" in record.record else ""
                    message = record.info.get("error", "")
                    errors.append(message if message.startswith("line ") else where + message)
                if writer is not None:
                    writer.write(record)
                written += 1
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what was scored, say how much
        interrupted = True
    finally:
        if writer is not None:
            writer.close()
    _print_summary(console, scorer.spec.name, scorer.stats, errors, output, kept)
    if interrupted:
        console.print(f"[yellow]interrupted: {written} record(s) scored and written before the stop[/]")
        raise typer.Exit(130)
    if records.error is not None:
        saved = f"written to {output}" if output and output != "-" else "in the summary above"
        raise fail(f"{records.error}; the {records.count} record(s) read before it were scored and {saved}")


def _resume(records: GuardedRecords, input: Path, output: str | None, scorer: Scorer) -> int:
    """Skip the input records whose scores the output already holds (see :mod:`medreward.io.resume`)."""
    path = check_resumable(output, aggregate=scorer.spec.aggregate)
    if path.resolve() == input.resolve():
        raise InputError("output path is the input file: choose another -o")
    point = find_resume_point(path, scorer.spec.component_names)
    kept = skip_scored(records, point, input_name=str(input))
    if records.error is not None:  # the input broke before the records the output already holds
        raise records.error
    point.truncate()
    if point.torn_bytes:
        log.info("dropped a torn last line (%d bytes) from %s", point.torn_bytes, output)
    return kept


def _progress_updater(progress: Progress, task: TaskID, records: GuardedRecords, *, estimate: bool):
    """Advance the bar by scored records; without a known total (a large or compressed file),
    estimate it from the records read so far over the fraction of the file's bytes read."""

    def advance(n: int) -> None:
        if estimate:
            fraction = records.fraction_read()
            if fraction:
                progress.update(task, total=max(round(records.count / fraction), records.count))
        progress.advance(task, n)

    return advance


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _print_summary(
    console, spec_name: str, stats: RunStats, errors: list[str], output: str | None, resumed: int = 0
) -> None:
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
    elif resumed:
        console.print(f"resumed after the {resumed} records already in {output}; wrote {stats.n} more scored records")
    elif output != "-":
        console.print(f"wrote {stats.n} scored records to {output}")
