"""Terminal output shared by the CLI commands: one rich console each for stdout and stderr,
the rule that a user mistake prints a message, never a traceback, the progress bar, and
opening ``-o`` outputs."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ..errors import InputError, MedrewardError
from ..io import RecordWriter, open_writer
from ..io.writers import _JsonlStream

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    # escaped: messages name TOML tables such as [backends.judge], which rich would take for markup
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn medreward's user-facing errors into a message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MedrewardError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )


def progress_bar(label: str, *, quiet: bool = False) -> Progress:
    """A rich progress bar on stderr, shown on a terminal (or with MEDREWARD_PROGRESS=1)."""
    return Progress(
        SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=quiet or not err.is_terminal and os.environ.get("MEDREWARD_PROGRESS") != "1",
        transient=True,
    )  # fmt: skip


def open_output(
    output: str, *, input: Path | None = None, components: Sequence[str] | None = None, append: bool = False
) -> RecordWriter:
    """A record writer for ``-o``: ``-`` is stdout; a missing folder, a directory or an
    unwritable path is an :class:`InputError` (a message, exit code 2). ``components`` fixes
    the score columns of a Parquet output; ``append`` continues a JSONL file (``--resume``)."""
    if output == "-":
        return _JsonlStream(sys.stdout)
    if Path(output).is_dir():
        raise InputError(f"output path {output!r} is a directory: give a file name such as {output.rstrip('/')}/cases.jsonl")
    if input is not None and Path(output).resolve() == input.resolve():
        raise InputError("output path is the input file: choose another -o")
    return open_writer(output, components=components, append=append)
