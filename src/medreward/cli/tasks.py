"""``medreward tasks list`` and ``medreward tasks generate NAME --n N --seed S -o FILE``."""

from __future__ import annotations

import typer
from rich.table import Table

from ..errors import InputError
from ..tasks import get_task, list_tasks
from .console import open_output, out, progress_bar, user_errors

tasks_app = typer.Typer(help="Clinical task generators: list them, generate cases (JSONL).", no_args_is_help=True)


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
