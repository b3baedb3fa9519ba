"""``medreward tasks list`` and ``medreward tasks generate NAME --n N --seed S -o FILE``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..errors import InputError
from ..io import RecordWriter, open_writer
from ..io.writers import _JsonlStream
from ..tasks import get_task, list_tasks
from .console import err, out, user_errors

tasks_app = typer.Typer(help="Clinical task generators: list them, generate cases (JSONL).", no_args_is_help=True)


def progress_bar(label: str, *, quiet: bool = False) -> Progress:
    """A rich progress bar on stderr, shown on a terminal (or with MEDREWARD_PROGRESS=1)."""
    return Progress(
        SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=quiet or not err.is_terminal and os.environ.get("MEDREWARD_PROGRESS") != "1",
        transient=True,
    )  # fmt: skip


def open_output(output: str, *, input: Path | None = None) -> RecordWriter:
    """A record writer for ``-o``: ``-`` is stdout; a missing folder, a directory or an
    unwritable path is an :class:`InputError` (a message, exit code 2)."""
    if output == "-":
        return _JsonlStream(sys.stdout)
    if Path(output).is_dir():
        raise InputError(f"output path {output!r} is a directory: give a file name such as {output.rstrip('/')}/cases.jsonl")
    if input is not None and Path(output).resolve() == input.resolve():
        raise InputError("output path is the input file: choose another -o")
    return open_writer(output)


def check_n(n: int) -> None:
    if n <= 0:
        raise InputError(f"--n must be a positive number of cases, got {n}")


@tasks_app.command("list")
@user_errors
def tasks_list() -> None:
    """List the task generators."""
    table = Table(title="medreward tasks")
    table.add_column("name", style="bold")
    table.add_column("preset")
    table.add_column("description", overflow="fold", max_width=80)
    for info in list_tasks().values():
        table.add_row(info.name, info.preset, info.description)
    out.print(table)


@tasks_app.command("generate")
@user_errors
def tasks_generate(
    name: str = typer.Argument(..., help="Task name (see `medreward tasks list`)."),
    n: int = typer.Option(100, "--n", "-n", help="Number of cases."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives byte-identical output."),
    output: str = typer.Option(..., "--output", "-o", help="Write cases here (.jsonl, .jsonl.gz or .parquet; '-' = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no summary."),
) -> None:
    """Generate N cases of a task with a seed (rollout records without a completion)."""
    info = get_task(name)
    check_n(n)
    writer = open_output(output)  # fail on a bad path before any work
    progress = progress_bar(f"generating {name}", quiet=quiet)
    try:
        with progress:
            bar = progress.add_task("generate", total=None)
            cases = info.generate(n, seed)
            progress.update(bar, total=len(cases), description="writing")
            for case in cases:
                writer.write(case)
                progress.advance(bar)
    finally:
        writer.close()
    if not quiet and output != "-":
        out.print(f"wrote {len(cases)} {name} cases (seed {seed}) to {output}")
