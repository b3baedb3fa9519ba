"""``medreward cache``: show or clear the persistent response cache of the model backends."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from ..backends.cache import CacheError, SQLiteCache, default_cache_path, remove_cache_files
from ..errors import InputError
from .console import err, fail, out, user_errors

cache_app = typer.Typer(help="Show or clear the persistent cache of judge / model responses.", no_args_is_help=True)

CACHE_OPTION = typer.Option(
    None, "--cache", help="Cache file (default: $MEDREWARD_CACHE or ~/.cache/medreward/responses.sqlite)."
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit s, m, h, d or w (``30d``, ``12h``)."""
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"--older-than {text!r}: give a number with a unit s, m, h, d or w, e.g. 30d or 12h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _resolve(cache: Path | None) -> Path:
    return (cache or default_cache_path()).expanduser()


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


@cache_app.command("stats")
@user_errors
def cache_stats(cache: Path | None = CACHE_OPTION) -> None:
    """Entries, size on disk, entries per backend kind and model, oldest and newest entry."""
    path = _resolve(cache)
    if not path.exists():
        out.print(f"no response cache at {path} (it is created on the first model call)", highlight=False)
        return
    with SQLiteCache(path) as store:
        stats = store.stats()
    summary = Table(title=f"response cache {path}", show_header=False, title_justify="left")
    summary.add_column("field", style="bold")
    summary.add_column("value")
    summary.add_row("entries", str(stats.entries))
    summary.add_row("size", _size(stats.size_bytes))
    summary.add_row("oldest", _when(stats.oldest))
    summary.add_row("newest", _when(stats.newest))
    out.print(summary)
    if stats.by_backend:
        table = Table(title="entries per backend")
        table.add_column("kind")
        table.add_column("model", overflow="fold")
        table.add_column("entries", justify="right")
        for (kind, model), count in stats.by_backend.items():
            table.add_row(kind or "-", model or "-", str(count))
        out.print(table)


@cache_app.command("clear")
@user_errors
def cache_clear(
    cache: Path | None = CACHE_OPTION,
    older_than: str | None = typer.Option(
        None, "--older-than", help="Only entries older than this (30d, 12h, 90m, 45s)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete the cached responses (all, or those older than --older-than). A corrupt cache file is
    deleted whole."""
    path = _resolve(cache)
    age = parse_duration(older_than) if older_than is not None else None
    if not path.exists():
        out.print(f"no response cache at {path}: nothing to clear", highlight=False)
        return
    try:
        store = SQLiteCache(path)
    except CacheError as exc:
        # unreadable: the only remedy is removing the file (with its -wal/-shm)
        err.print(f"[yellow]warning:[/] {exc}", highlight=False, soft_wrap=True)
        _confirm(f"Delete the unreadable cache file {path}?", yes)
        removed = remove_cache_files(path)
        out.print(f"removed {', '.join(str(p) for p in removed)}", highlight=False)
        return
    with store:
        count = len(store)
        what = f"{count} cached responses" if age is None else f"cached responses older than {older_than}"
        _confirm(f"Delete {what} from {path}?", yes)
        deleted = store.clear(older_than=age)
    out.print(f"deleted {deleted} cached responses from {path}", highlight=False)


def _confirm(question: str, yes: bool) -> None:
    """Ask ``question`` on a terminal; without one (and without --yes) stop with exit code 2."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise fail(f"{question[:-1]}: not a terminal, so cannot ask; add --yes to confirm")
    if not typer.confirm(question, default=False, err=True):
        err.print("nothing deleted")
        raise typer.Exit(1)
