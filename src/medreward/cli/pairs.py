"""``medreward pairs IN --spec S -o OUT``: DPO preference pairs from scored groups of rollouts
(:mod:`medreward.training.pairs`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..errors import InputError
from .console import open_output, out, progress_bar, user_errors


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


@user_errors
def pairs_command(
    input: Path = typer.Argument(..., help="Rollouts (.jsonl/.parquet), several per prompt (GRPO groups)."),
    spec: str = typer.Option(..., "--spec", "-s", help="Spec (preset name or TOML) that scores the rollouts."),
    output: str = typer.Option(..., "--output", "-o", help="Write the pairs here (.jsonl or .jsonl.gz; '-' = stdout)."),
    min_margin: float = typer.Option(0.0, "--min-margin", help="Least reward difference chosen − rejected (> 0 always)."),
    length_control: bool = typer.Option(
        True, "--length-control/--no-length-control", help="Prefer pairs whose chosen is not longer than the rejected."
    ),
    group_key: str = typer.Option("group", "--group-key", help="Field that groups rollouts (default 'group'; else the prompt)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no summary."),
) -> None:
    """Build DPO pairs (TRL's conversational preference format): per group, best vs worst reward with a
    margin, length-controlled."""
    from ..io import read_records
    from ..runner import Scorer
    from ..training.pairs import build_pairs

    if not (min_margin >= 0 and min_margin != float("inf")):
        raise InputError(f"--min-margin must be a finite number >= 0, got {min_margin}")
    if output != "-" and not output.endswith((".jsonl", ".jsonl.gz")):
        raise InputError(f"pairs are written as JSONL: give -o a .jsonl or .jsonl.gz name, got {output!r}")
    scorer = Scorer(spec)
    records = read_records(input)  # a missing input fails here, before -o is touched
    writer = open_output(output, input=input)
    progress = progress_bar("scoring", quiet=quiet or output == "-")
    try:
        with progress:
            bar = progress.add_task("score", total=None)
            scored = list(scorer.iter_score(records, on_progress=lambda k: progress.advance(bar, k)))
        pairs, report = build_pairs(scored, min_margin=min_margin, length_control=length_control, group_key=group_key)
        for pair in pairs:
            writer.write(pair)
    finally:
        writer.close()
        scorer.close()
    if report.records == 0:
        raise InputError(f"no records in {str(input)!r}")
    if quiet or output == "-":
        return
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
        return
    table = Table(title=f"medreward pairs · spec {scorer.spec.name}", caption=f"wrote {report.pairs} pairs to {output}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_row("records read", str(report.records))
    for status, count in sorted(report.excluded.items()):
        table.add_row(f"excluded ({status})", str(count))
    table.add_row("groups", str(report.groups))
    table.add_row("skipped: one usable record", str(report.singleton_groups))
    table.add_row(f"skipped: no pair with margin >= {min_margin:g}", str(report.below_margin_groups))
    if report.mixed_prompt_groups:
        table.add_row("skipped: different prompts in one group", str(report.mixed_prompt_groups))
    table.add_row("pairs", str(report.pairs))
    table.add_row("mean margin", _fmt(report.mean_margin))
    table.add_row("chosen longer than rejected", _fmt(report.fraction_chosen_longer, ".1%"))
    table.add_row("mean length chosen / rejected (chars)", f"{_fmt(report.mean_chosen_chars, '.1f')} / {_fmt(report.mean_rejected_chars, '.1f')}")
    table.add_row("mean length difference (chars)", _fmt(report.mean_length_difference, "+.1f"))
    out.print(table)
