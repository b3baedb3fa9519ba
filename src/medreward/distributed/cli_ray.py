"""``medreward score IN --spec S --ray [--address ADDR]``: the score command's run on Ray.

The options, the summary and ``--stats-json`` are those of ``medreward score`` (``cli/score.py``);
only the read → score → write loop runs on the cluster (:func:`.ray_scoring.score_on_ray`).
``--workers N`` is the number of scoring actors (0: one per CPU of the cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import InputError
from .ray_scoring import score_on_ray

_SHOW_ERRORS = 5


def score_on_ray_command(
    input: Path, spec: str, output: str | None, *, workers: int, time_limit: float, isolation: Any,
    chunk_size: int, quiet: bool, resume: bool, backend_url: list[str], cache: Path | None, no_cache: bool,
    stats_json: Path | None, ray: bool, address: str | None,
) -> None:  # fmt: skip
    """Check the option combination, score on Ray, print the summary, write ``--stats-json``."""
    from ..cli.console import open_output, out, progress_bar
    from ..cli.score import _count_records, _print_summary, _write_stats, build_scorer

    if not ray:
        raise InputError("--address needs --ray")
    if resume:
        raise InputError("--resume is not available with --ray: score without --resume, or without --ray")
    if isolation is not None and getattr(isolation, "value", isolation) == "process":
        raise InputError("--isolation process is not available with --ray (each Ray actor scores with thread isolation)")
    if output == "-":
        raise InputError("-o - (stdout) is not available with --ray: give an output file")
    scorer = build_scorer(spec, 0, time_limit, None, chunk_size, backend_url, cache, no_cache, stats_json)
    console = out
    errors: list[str] = []
    counts: list[int] = [0]

    def note_error(message: str) -> None:
        if len(errors) < _SHOW_ERRORS:
            errors.append(message)

    try:
        writer = open_output(output, input=input, components=scorer.spec.component_names) if output else None
        progress = progress_bar("scoring on Ray", quiet=quiet)
        try:
            with progress:
                task = progress.add_task("score", total=_count_records(input))

                def advance(n: int) -> None:
                    counts[0] += n
                    progress.advance(task, n)

                score_on_ray(
                    scorer, input, writer, address=address, num_workers=workers or None,
                    on_progress=advance, on_error=note_error,
                )  # fmt: skip
        finally:
            if writer is not None:
                writer.close()
        _print_summary(console, scorer.spec.name, scorer.stats, errors, output)
        console.print(f"scored on Ray ({'cluster ' + address if address else 'local cluster'})", highlight=False)
        if stats_json is not None:
            _write_stats(stats_json, scorer, interrupted=False)
            console.print(f"wrote the run's statistics to {stats_json}")
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted: {counts[0]} record(s) written before the stop[/]")
        raise typer.Exit(130) from None
    finally:
        scorer.close()
