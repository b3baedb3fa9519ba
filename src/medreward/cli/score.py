"""``medreward score INPUT --spec NAME_OR_PATH [-o OUTPUT] [--workers N]``.

Specs with model backends (docs/contracts.md#model-backed-rewards) take ``--backend-url [NAME=]URL``,
``--cache PATH`` / ``--no-cache``; ``--stats-json PATH`` writes the run's statistics (with each
backend's calls and cache hits) for scripts and CI jobs.

The options, the read → score → write loop and the summary are shared with the commands that
write only some of the scored records (``medreward rerank``, ``medreward filter``): they pass a
:class:`Selector` to :func:`run_scoring`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from ..compose.spec import Spec
from ..errors import InputError, SpecError
from ..io import GuardedRecords, detect_format, read_records
from ..io.resume import check_resumable, find_resume_point, skip_scored
from ..records import ScoredRecord, Status
from ..compose.spec import load_spec
from ..runner import RunStats, Scorer
from ..runner.signals import sigterm_as_interrupt
from .console import err, fail, open_output, out, progress_bar, user_errors

log = logging.getLogger(__name__)

_SHOW_ERRORS = 5
_NAMED_URL = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)=(.+)$")


class Isolation(str, Enum):
    process = "process"
    thread = "thread"


def _count_records(path: Path) -> int | None:
    """Total for the progress bar: Parquet metadata, or newline count of a JSONL under 256 MB."""
    try:
        if not path.is_file():  # a named pipe (or /dev/stdin): counting would consume it
            return None
        if detect_format(path) == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if path.suffix != ".gz" and path.stat().st_size < 256 * 2**20:
            with open(path, "rb") as handle:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(2**20), b"")) or None
    except Exception:  # noqa: BLE001 - the total is cosmetic; the real read reports real errors
        return None
    return None


class Selector(Protocol):
    """Which scored records a command writes (``rerank``, ``filter``); ``score`` writes them all."""

    def select(self, scored: Iterable[ScoredRecord]) -> Iterator[ScoredRecord]:
        """The records to write, lazily, as the scored stream is consumed."""
        ...

    def summary_lines(self) -> list[str]:
        """Lines for the summary: what was kept and what was dropped, and why."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The same for ``--stats-json`` (under ``"selection"``)."""
        ...


# Options shared by every command that scores a file (score, rerank, filter).
INPUT_ARGUMENT = typer.Argument(..., help="Rollouts: .jsonl, .jsonl.gz or .parquet (rollout format: docs/contracts.md).")
SPEC_OPTION = typer.Option(..., "--spec", "-s", help="Preset name (see `medreward specs`) or path to a spec TOML.")
OUTPUT_OPTION = typer.Option(None, "--output", "-o", help="Write scored records here (.jsonl/.parquet; '-' = stdout).")
WORKERS_OPTION = typer.Option(0, "--workers", "-w", min=0, help="Worker processes (0: score in this process).")
TIME_LIMIT_OPTION = typer.Option(10.0, "--time-limit", min=0.001, help="Seconds one component may spend on one sample ('inf': no limit).")
ISOLATION_OPTION = typer.Option(
    None, "--isolation", case_sensitive=False,
    help="How time limits are enforced: 'process' kills a worker that overruns (stops anything); 'thread' abandons "
    "the call (cannot stop code that holds the GIL). Default: process when --workers > 1, else thread.",
)  # fmt: skip
CHUNK_SIZE_OPTION = typer.Option(256, "--chunk-size", min=1, help="Records per batch.")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress bar.")
BACKEND_URL_OPTION = typer.Option(
    [], "--backend-url", metavar="[NAME=]URL",
    help="Endpoint of the spec's model backend (NAME=URL for one of several; repeatable). "
    "Default: $MEDREWARD_<NAME>_BASE_URL, else the spec's base_url.",
)  # fmt: skip
CACHE_OPTION = typer.Option(
    None, "--cache", help="Response cache of the model backends (SQLite; default: $MEDREWARD_CACHE or the user cache folder).",
)
NO_CACHE_OPTION = typer.Option(False, "--no-cache", help="Make every model request a call (no cache read or write).")
STATS_JSON_OPTION = typer.Option(
    None, "--stats-json", help="Write the run's statistics as JSON (reward, statuses, components, backends' calls and cache hits).",
)


@user_errors
def score_command(
    input: Path = INPUT_ARGUMENT,
    spec: str = SPEC_OPTION,
    output: str | None = OUTPUT_OPTION,
    workers: int = WORKERS_OPTION,
    time_limit: float = TIME_LIMIT_OPTION,
    isolation: Isolation | None = ISOLATION_OPTION,
    chunk_size: int = CHUNK_SIZE_OPTION,
    quiet: bool = QUIET_OPTION,
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue a killed run: keep the complete records already in the -o JSONL file, score the rest. "
        "The result is the file an uninterrupted run writes.",
    ),
    backend_url: list[str] = BACKEND_URL_OPTION,
    cache: Path | None = CACHE_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
    stats_json: Path | None = STATS_JSON_OPTION,
    ray: bool = typer.Option(
        False, "--ray",
        help="Score on a Ray cluster with Ray Data (pip install 'medreward[ray]'; docs/distributed.md); "
        "--workers sets the scoring actors (0: one per CPU).",
    ),
    address: str | None = typer.Option(
        None, "--address", help="With --ray: the Ray cluster to join ('auto', ray://HOST:10001); default: $RAY_ADDRESS, else a local one.",
    ),
) -> None:
    """Score a file of rollouts with a spec and print a summary.

    A file that cannot be read to its end (a truncated .gz) is scored up to the damage, written,
    and then reported with exit code 2."""
    if ray or address is not None:  # the same options, scored on a Ray cluster
        from ..distributed.cli_ray import score_on_ray_command

        return score_on_ray_command(
            input, spec, output, workers=workers, time_limit=time_limit, isolation=isolation, chunk_size=chunk_size,
            quiet=quiet, resume=resume, backend_url=backend_url, cache=cache, no_cache=no_cache,
            stats_json=stats_json, ray=ray, address=address,
        )  # fmt: skip
    scorer = build_scorer(spec, workers, time_limit, isolation, chunk_size, backend_url, cache, no_cache, stats_json)
    try:
        run_scoring(scorer, input, output, quiet=quiet, resume=resume, stats_json=stats_json)
    finally:
        scorer.close()


def build_scorer(
    spec: str, workers: int, time_limit: float, isolation: Isolation | None, chunk_size: int,
    backend_url: list[str], cache: Path | None, no_cache: bool, stats_json: Path | None,
) -> Scorer:  # fmt: skip
    """The scorer the shared options describe, after the checks that must fail before any scoring."""
    if cache is not None and no_cache:
        raise InputError("--cache and --no-cache contradict each other: give one")
    if stats_json is not None:
        _check_writable(stats_json)
    loaded = load_spec(spec)
    return Scorer(
        loaded, workers=workers, time_limit=time_limit, chunk_size=chunk_size,
        isolation=isolation.value if isolation else None,
        cache=cache, use_cache=not no_cache, backend_urls=_backend_urls(backend_url, loaded),
    )  # fmt: skip


def run_scoring(
    scorer: Scorer,
    input: Path,
    output: str | None,
    *,
    quiet: bool,
    stats_json: Path | None,
    resume: bool = False,
    selector: Selector | None = None,
    command: str = "score",
) -> None:
    """Read ``input``, score it, write the records (all of them, or those ``selector`` keeps) to
    ``output``, print the summary and write ``--stats-json``."""
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
            scored = _noting_errors(scorer.iter_score(records, on_progress=advance), errors)
            for record in selector.select(scored) if selector is not None else scored:
                if writer is not None:
                    writer.write(record)
                written += 1
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep what was scored, say how much
        interrupted = True
    finally:
        if writer is not None:
            writer.close()
    _print_summary(console, scorer.spec.name, scorer.stats, errors, output, kept,
                   command=command, written=written if selector is not None else None)  # fmt: skip
    if selector is not None:
        for line in selector.summary_lines():
            console.print(line, highlight=False, soft_wrap=True)
    if stats_json is not None:
        _write_stats(stats_json, scorer, interrupted=interrupted, selection=selector.to_dict() if selector else None)
        console.print(f"wrote the run's statistics to {stats_json}")
    if interrupted:
        what = "scored and written" if selector is None else f"of the {scorer.stats.n} scored were written"
        console.print(f"[yellow]interrupted: {written} record(s) {what} before the stop[/]")
        raise typer.Exit(130)
    if records.error is not None:
        saved = f"written to {output}" if output and output != "-" else "in the summary above"
        raise fail(f"{records.error}; the {records.count} record(s) read before it were scored and {saved}")


def _noting_errors(scored: Iterable[ScoredRecord], errors: list[str]) -> Iterator[ScoredRecord]:
    """Pass the scored records through, keeping the first few error messages for the summary."""
    for record in scored:
        if record.status is Status.ERROR and len(errors) < _SHOW_ERRORS:
            where = f"line {record.record['line']}: " if "line" in record.record and "raw" in record.record else ""
            message = record.info.get("error", "")
            errors.append(message if message.startswith("line ") else where + message)
        yield record


def _backend_urls(values: list[str], spec: Spec) -> dict[str, str]:
    """``--backend-url`` values by backend name: ``NAME=URL``, or a bare URL for a spec's only backend."""
    declared = sorted(spec.backends)
    urls: dict[str, str] = {}
    for value in values:
        named = _NAMED_URL.match(value)
        if named and "://" not in named.group(1):
            name, url = named.groups()
        elif not declared:
            raise SpecError(f"--backend-url: spec {spec.name!r} declares no model backends ([backends.NAME])")
        elif len(declared) > 1:
            raise SpecError(
                f"--backend-url {value!r}: spec {spec.name!r} declares {len(declared)} backends ({', '.join(declared)}): "
                "say which, as NAME=URL"
            )
        else:
            name, url = declared[0], value
        if name not in spec.backends:
            raise SpecError(f"--backend-url: spec {spec.name!r} has no backend {name!r} (declared: {', '.join(declared) or 'none'})")
        if not re.match(r"^https?://[^/\s]+", url):
            raise SpecError(f"--backend-url {value!r}: not an http(s) URL such as http://127.0.0.1:8080/v1")
        if name in urls:
            raise SpecError(f"--backend-url: backend {name!r} is given twice")
        urls[name] = url
    return urls


def _check_writable(path: Path) -> None:
    """Fail before scoring (not after an hour of judge calls) when ``--stats-json`` cannot be written."""
    if path.is_dir():
        raise InputError(f"--stats-json {str(path)!r} is a directory: give a file name such as stats.json")
    if not path.parent.is_dir():
        raise InputError(f"--stats-json {str(path)!r}: folder {str(path.parent)!r} does not exist")


def _write_stats(path: Path, scorer: Scorer, *, interrupted: bool, selection: dict[str, Any] | None = None) -> None:
    data = {"spec": scorer.spec.name, **scorer.stats.to_dict(), "interrupted": interrupted}
    if selection is not None:
        data["selection"] = selection
    try:
        path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write --stats-json {str(path)!r}: {exc}") from None


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


def _backends_table(stats: RunStats) -> Table:
    table = Table(title="model backends")
    for column in ("backend", "calls", "cache hits", "retries", "failures", "tokens in", "tokens out", "p50 s", "p95 s"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for name, b in stats.backends.items():
        table.add_row(
            name, str(b.calls), str(b.cache_hits), str(b.retries), str(b.failures), str(b.prompt_tokens),
            str(b.completion_tokens), _fmt(b.percentile(50), 3), _fmt(b.percentile(95), 3),
        )  # fmt: skip
    return table


def _print_summary(
    console, spec_name: str, stats: RunStats, errors: list[str], output: str | None, resumed: int = 0,
    *, command: str = "score", written: int | None = None,
) -> None:  # fmt: skip
    """The run's table; ``written`` is set when a selector wrote only some of the scored records."""
    table = Table(title=f"medreward {command} · spec {spec_name} · {stats.n} records in {stats.seconds:.2f} s")
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
    for line in stats.batch_metric_lines():  # run-level metrics (e.g. forecast mAUC, BCA)
        console.print(line, highlight=False)
    if stats.backends:
        console.print(_backends_table(stats))
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
    elif output != "-" and written is not None:
        console.print(f"wrote {written} of the {stats.n} scored records to {output}")
    elif output != "-":
        console.print(f"wrote {stats.n} scored records to {output}")
