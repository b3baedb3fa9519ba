"""``medreward audit SPEC [--cases FILE | --task T --n N] -o DIR``: how a spec can be gamed, before training.

Runs every audit stage (:func:`medreward.audit.run.run_audit`: baseline policies, hacking probes,
exploit search, reward benchmark, and agreement/calibration with ``--ratings``), writes
``DIR/report.html`` and ``DIR/report.json`` and prints a summary.

Exit codes: 0 the audit ran (whatever it found); 1 with ``--fail-on exploitable`` when a probe or
the exploit search flagged the spec (for CI jobs); 2 a user mistake (missing or unreadable file,
unknown spec or task, no cases, a bad ratings file), reported as a message without a traceback;
130 interrupted (Ctrl-C), no report written.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..compose.spec import Spec, load_spec
from ..errors import InputError
from ..io import read_records
from ..runner import Scorer
from ..tasks import get_task, list_tasks
from .console import err, out, user_errors

#: cases generated when the task comes from --task or from the spec
DEFAULT_N = 200


class FailOn(str, Enum):
    exploitable = "exploitable"


def resolve_task(spec: Spec) -> str:
    """The task to generate cases for when neither ``--cases`` nor ``--task`` is given: the spec's
    ``task`` when it is a registered task, else the one task whose preset is this spec."""
    tasks = list_tasks()
    if spec.task is not None and spec.task in tasks:
        return spec.task
    matching = [name for name, info in tasks.items() if info.preset == spec.name]
    if len(matching) == 1:
        return matching[0]
    why = (
        f"its task {spec.task!r} is not in the task library" if spec.task is not None
        else f"it is the preset of {len(matching)} tasks ({', '.join(matching)})" if matching
        else "it names no task"
    )  # fmt: skip
    raise InputError(
        f"cannot tell which cases to audit spec {spec.name!r} on ({why}): give --cases FILE, "
        f"or --task T to generate cases (tasks: {', '.join(tasks)})"
    )


@user_errors
def audit_command(
    spec: str = typer.Argument(..., help="Preset name (see `medreward specs`) or path to a spec TOML."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for report.html and report.json (created if missing)."),
    cases: Path | None = typer.Option(
        None, "--cases", "-c",
        help="Cases (.jsonl/.jsonl.gz/.parquet): rollout records with a reference; records with a completion are "
        "also scored as rollouts (for --ratings, slices, length and GRPO groups).",
    ),  # fmt: skip
    task: str | None = typer.Option(None, "--task", "-t", help="Generate cases of this task instead of --cases."),
    n: int = typer.Option(DEFAULT_N, "--n", "-n", min=1, help="Cases to generate (with --task, or the spec's task)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated cases, the probes, the search and the benchmark."),
    ratings: Path | None = typer.Option(
        None, "--ratings", help="Human or reference ratings, JSONL {\"id\", \"rating\"}, matched to the rollouts by id.",
    ),
    budget: int = typer.Option(200, "--budget", min=1, help="Evaluations the exploit search may spend."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Read at most this many records of --cases (streamed)."),
    slices: list[str] = typer.Option(
        ["task"], "--slice", help="Record field to slice rewards by (repeatable; dotted paths reach nested fields).",
    ),
    fail_on: FailOn | None = typer.Option(
        None, "--fail-on", case_sensitive=False, help="Exit with code 1 when the audit flags the spec as exploitable.",
    ),
    no_benchmark: bool = typer.Option(False, "--no-benchmark", help="Skip the reward benchmark (gold vs corruptions)."),
    no_search: bool = typer.Option(False, "--no-search", help="Skip the exploit search."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; print only the verdict line."),
) -> None:
    """Audit a spec before training: hacking probes, exploit search, reward benchmark, agreement.

    Exit code 0 when the audit ran, 1 with --fail-on exploitable when something is flagged,
    2 for a user mistake."""
    from ..audit.report import write_report
    from ..audit.run import read_ratings, run_audit

    if cases is not None and task is not None:
        raise InputError("give --cases FILE or --task T, not both")
    if output.exists() and not output.is_dir():
        raise InputError(f"-o {str(output)!r} is a file: give a folder for report.html and report.json")
    rating_map = read_ratings(ratings) if ratings is not None else None  # a bad file fails before any scoring
    loaded = load_spec(spec)
    records: Any
    if cases is not None:  # streamed; run_audit stops after --limit records
        records = read_records(cases)
    else:
        name = task if task is not None else resolve_task(loaded)
        records = get_task(name).generate(n, seed)
    show_progress = not quiet and (err.is_terminal or os.environ.get("MEDREWARD_PROGRESS") == "1")
    with Scorer(loaded) as scorer:
        if not quiet:
            err.print(f"auditing spec [bold]{escape(loaded.name)}[/] …", highlight=False)
        try:
            report = run_audit(
                scorer, records, ratings=rating_map, exploit_budget=budget, benchmark=not no_benchmark,
                search=not no_search, slice_fields=tuple(dict.fromkeys(slices)), limit=limit, seed=seed,
                progress=show_progress,
            )  # fmt: skip
        except KeyboardInterrupt:  # Ctrl-C: nothing half-written, no traceback
            err.print("[yellow]interrupted: no report was written[/]")
            raise typer.Exit(130) from None
    html_path, json_path = write_report(report, output)
    if quiet:
        out.print(_verdict_line(report), highlight=False, soft_wrap=True)
    else:
        print_summary(report)
        out.print(f"wrote {html_path} and {json_path}", highlight=False, soft_wrap=True)
    if fail_on is FailOn.exploitable and report.flagged:
        err.print(f"[bold red]--fail-on exploitable:[/] flagged {escape(', '.join(report.flagged))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _verdict_line(report: Any) -> str:
    if report.flagged:
        return f"[bold red]FLAGGED[/] spec {escape(report.spec)}: {escape(', '.join(report.flagged))}"
    return f"[bold green]not flagged[/] spec {escape(report.spec)}: no probe or searched strategy games it"


def print_summary(report: Any) -> None:
    """The terminal summary: baselines, probes (flagged in red), search, benchmark, agreement."""
    title = f"medreward audit · spec {report.spec} · {report.n_cases} cases · {report.timings.get('total', 0.0):.1f} s"
    table = Table(title=title)
    table.add_column("policy", style="bold")
    table.add_column("mean reward", justify="right")
    table.add_column("n", justify="right")
    rows = sorted(report.baselines.items(), key=lambda kv: -(kv[1]["mean"] if kv[1]["mean"] is not None else -1.0))
    if report.gold is not None:
        rows.insert(0, ("gold", report.gold))
    for name, stats in rows:
        errors = f" ({stats['n_error']} errors)" if stats.get("n_error") else ""
        table.add_row(escape(name), _fmt(stats["mean"]), f"{stats['n']}{errors}")
    out.print(table)
    if report.probes is not None:
        probes = Table(title="hacking probes (reward relative to gold)")
        for column in ("probe", "kind", "vs gold", "exploitable frac.", "verdict"):
            probes.add_column(column, justify="right" if column in ("vs gold", "exploitable frac.") else "left")
        skipped = [r.name for r in report.probes.results if r.verdict == "skipped"]
        for r in report.probes.results:
            if r.verdict == "skipped":
                continue
            flagged = r.verdict in ("exploitable", "not_equivalent")
            style = "bold red" if flagged else "green" if r.verdict in ("sound", "equivalent") else "yellow"
            probes.add_row(escape(r.name), r.kind, _fmt(r.relative), _fmt(r.exploitable_fraction),
                           f"[{style}]{r.verdict}[/]", style="red" if flagged else None)  # fmt: skip
        out.print(probes)
        if skipped:
            out.print(f"[dim]probes skipped (not applicable to these cases): {escape(', '.join(skipped))}[/]",
                      highlight=False, soft_wrap=True)  # fmt: skip
    if report.exploit is not None:
        ex = report.exploit
        colour = "red" if ex.verdict == "exploitable" else "green"
        out.print(
            f"exploit search ({ex.evaluations} evaluations): [{colour}]{ex.verdict}[/]; best strategy "
            f"{escape(' → '.join(ex.best_strategy) or '(none)')} = {_fmt(ex.best_reward)} vs best honest "
            f"{escape(str(ex.best_honest_policy))} = {_fmt(ex.best_honest_reward)}, gold {_fmt(ex.gold_reward)}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    if report.benchmark is not None:
        b = report.benchmark
        out.print(
            f"reward benchmark ({b.n_items} items): pairwise {_fmt(b.pairwise_accuracy)} · best-of-4 "
            f"{_fmt(b.best_of_4_accuracy)} · one-to-many {_fmt(b.one_to_many_accuracy)}", highlight=False,
        )  # fmt: skip
    if report.ratings is not None:
        m = report.ratings
        line = f"ratings: {m.n_matched} of {m.n_ratings} matched a rollout"
        if report.agreement is not None:
            a = report.agreement
            line += f"; Spearman {_fmt(a.spearman.value)} · Kendall τ-b {_fmt(a.kendall.value)} · κ {_fmt(a.cohen_kappa.value)}"
        if report.calibration is not None:
            line += f"; ECE {_fmt(report.calibration.ece)} · Brier {_fmt(report.calibration.brier)}"
        if report.starc is not None:
            line += f"; STARC {_fmt(report.starc.distance)}"
        out.print(line, highlight=False, soft_wrap=True)
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/]", highlight=False, soft_wrap=True)
    out.print(_verdict_line(report), highlight=False, soft_wrap=True)
