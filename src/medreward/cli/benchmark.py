"""``medreward benchmark SPEC (--cases FILE | --task T --n N | --preferences FILE) [--json]``.

How often a spec ranks the correct completion above wrong ones: RewardBench-1 pairwise accuracy,
RewardBench-2 best-of-4 accuracy and RewardMATH one-to-many accuracy (tie rules and sources:
:mod:`medreward.audit.benchmark`). The items come from cases (gold vs counterfactual corruptions,
:mod:`medreward.audit.corruptions`) or from a preference JSONL file. ``--json`` prints one JSON
object (the :class:`~medreward.audit.benchmark.BenchmarkReport`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..errors import InputError
from .console import err, open_output, out, user_errors


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


@user_errors
def benchmark_command(
    spec: str = typer.Argument(..., help="Preset name (see `medreward specs`) or path to a spec TOML."),
    cases: Path | None = typer.Option(None, "--cases", help="Cases (.jsonl/.parquet) with a reference or a 'gold' completion."),
    task: str | None = typer.Option(None, "--task", help="Generate cases of this task (see `medreward tasks list`)."),
    n: int = typer.Option(100, "--n", "-n", help="With --task: how many cases."),
    preferences: Path | None = typer.Option(
        None, "--preferences",
        help="Preference JSONL: {prompt, chosen, rejected} (RewardBench 1) or chosen/rejected lists (RewardBench 2).",
    ),  # fmt: skip
    n_rejected: int = typer.Option(3, "--n-rejected", help="Corruptions per case (3: RewardBench-2's best-of-4 layout)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated cases and of the corruptions."),
    limit: int | None = typer.Option(None, "--limit", help="Read at most this many cases / preference items."),
    save_preferences: str | None = typer.Option(
        None, "--save-preferences", help="Write the preference items built from cases as JSONL ('-' = stdout).",
    ),  # fmt: skip
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Benchmark a reward spec on preference items: gold answers against corrupted ones."""
    from ..audit.benchmark import build_preferences, read_preferences, run_benchmark
    from ..audit.cases import generate_cases, load_cases
    from ..runner import Scorer

    sources = [name for name, given in (("--cases", cases), ("--task", task), ("--preferences", preferences)) if given is not None]
    if len(sources) != 1:
        raise InputError("give exactly one of --cases FILE, --task NAME (with --n) or --preferences FILE"
                         + (f" (got {', '.join(sources)})" if sources else ""))  # fmt: skip
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be a positive number, got {limit}")
    if n < 1:
        raise InputError(f"--n must be a positive number of cases, got {n}")
    if n_rejected < 1:
        raise InputError(f"--n-rejected must be at least 1, got {n_rejected}")
    if save_preferences is not None and preferences is not None:
        raise InputError("--save-preferences writes items built from cases; with --preferences they are the file itself")
    if save_preferences == "-" and as_json:
        raise InputError("--save-preferences - and --json both write to stdout: give --save-preferences a file")
    writer = open_output(save_preferences) if save_preferences is not None else None  # a bad path fails before work
    scorer = Scorer(spec)  # a bad spec fails before the cases are read
    try:
        if preferences is not None:
            items = read_preferences(preferences, limit=limit)
            origin = str(preferences)
        else:
            if cases is not None:
                case_list = list(load_cases(cases, limit=limit))
                origin = str(cases)
            else:
                case_list = generate_cases(task, n if limit is None else min(n, limit), seed)  # type: ignore[arg-type]
                origin = f"{task} (n={len(case_list)}, seed {seed})"
            if not case_list:
                raise InputError(f"{origin}: no cases")
            items = build_preferences(case_list, n_rejected=n_rejected, seed=seed)
            if not items:
                raise InputError(
                    f"{origin}: no preference item could be built (the cases need a reference of a known task "
                    "or a 'gold' completion, and a corruption that applies)"
                )
        if not items:
            raise InputError(f"{origin}: no preference items")
        if writer is not None:
            for item in items:
                writer.write(item.to_dict())
        report = run_benchmark(scorer, items, progress=not quiet)
    finally:
        scorer.close()
        if writer is not None:
            writer.close()
    if as_json:
        typer.echo(json.dumps({"source": origin, **report.to_dict()}))
        return
    table = Table(title=f"reward benchmark: {report.spec} on {origin}")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("n", justify="right")
    table.add_column("rule")
    table.add_row("pairwise accuracy (RewardBench 1)", _fmt(report.pairwise_accuracy), str(report.n_pairs), "chosen > rejected; tie = 0")
    table.add_row("best-of-4 accuracy (RewardBench 2)", _fmt(report.best_of_4_accuracy), str(report.n_best_of_4), "1/#max if chosen is max")
    table.add_row("one-to-many accuracy (RewardMATH)", _fmt(report.one_to_many_accuracy), str(report.n_scored), "chosen > every rejected")
    table.add_row("  with ties counted as wins", _fmt(report.one_to_many_accuracy_with_ties), str(report.n_scored), ">=")
    table.add_row("  MRR of the chosen", _fmt(report.mrr), str(report.n_scored), "ties rank rejected first")
    table.add_row("mean reward chosen / rejected", f"{_fmt(report.mean_chosen)} / {_fmt(report.mean_rejected)}", "", "")
    out.print(table)
    per = Table(title="pairwise accuracy per corruption")
    per.add_column("rejected by", style="bold")
    per.add_column("pairs", justify="right")
    per.add_column("accuracy", justify="right")
    per.add_column("ties", justify="right")
    for name, row in report.per_corruption.items():
        per.add_row(name, str(row["n"]), _fmt(row["accuracy"]), str(row["ties"]))
    out.print(per)
    out.print(f"{report.n_items} items, {report.n_scored} used, {report.n_excluded} left out, {report.n_error} completion(s) not scored ok")
    for message in report.errors:
        err.print(f"  {message}", highlight=False, markup=False)
    if report.note:
        out.print(f"note: {report.note}", highlight=False, markup=False)
