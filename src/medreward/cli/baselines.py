"""``medreward baselines list [TASK]``, ``run TASK --policy P -i CASES -o ROLLOUTS`` and
``evaluate TASK -i ROLLOUTS``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..baselines import PolicyInfo, get_policy, list_policies
from ..baselines.base import policy_rng
from ..baselines.evaluate import EvaluationResult, evaluate_by_policy
from ..errors import InputError
from ..io import read_records
from ..records import BadRecord
from ..runner import Scorer
from ..tasks import get_task
from .console import err, open_output, out, progress_bar, user_errors

log = logging.getLogger(__name__)

baselines_app = typer.Typer(
    help="Baseline policies: list them, run them on cases, evaluate their rollouts.", no_args_is_help=True
)

_SHOW_PROBLEMS = 5
_HEADERS = {"micro_f1": "micro-F1", "macro_f1": "macro-F1", "exact_match": "exact", "precision": "prec."}


class Problems:
    """Input problems (bad lines, unusable records): counted, the first few printed on stderr."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < _SHOW_PROBLEMS:
            self.messages.append(message)

    def report(self, what: str) -> None:
        if not self.count:
            return
        err.print(f"[yellow]warning:[/] skipped {self.count} {what}:", highlight=False)
        for message in self.messages:
            err.print(f"  • {message}", highlight=False, soft_wrap=True)
        if self.count > len(self.messages):
            err.print(f"  • … and {self.count - len(self.messages)} more", highlight=False)


def resolve_policies(task: str, names: Sequence[str]) -> list[PolicyInfo]:
    """``all`` or the named policies of a task (an unknown name lists the known ones)."""
    if not names:
        raise InputError("give at least one --policy (or --policy all)")
    if "all" in names:
        policies = list_policies(task)
        if not policies:
            raise InputError(f"task {task!r} has no baseline policies")
        return policies
    return [get_policy(task, name) for name in dict.fromkeys(names)]


def _good_records(records: Iterable[dict[str, Any] | BadRecord], problems: Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position in the input counting bad lines too, record) for every readable record."""
    for position, record in enumerate(records, start=1):
        if isinstance(record, BadRecord):
            problems.add(record.error)
        else:
            yield position, record  # Parquet nested fields come back decoded (io.readers)


def _count_lines(path: Path) -> int | None:
    try:
        if path.suffix == ".jsonl" and path.stat().st_size < 256 * 2**20:
            with open(path, "rb") as handle:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(2**20), b"")) or None
    except OSError:
        return None
    return None


@baselines_app.command("list")
@user_errors
def baselines_list(task: str | None = typer.Argument(None, help="Only this task's policies.")) -> None:
    """List the baseline policies (of one task, or of all)."""
    if task is not None:
        get_task(task)  # an unknown task fails with the list of tasks
    table = Table(title="medreward baseline policies" + (f" · {task}" if task else ""))
    table.add_column("task")
    table.add_column("policy", style="bold")
    table.add_column("description", overflow="fold", max_width=90)
    for info in list_policies(task):
        table.add_row(info.task, info.name, info.description)
    out.print(table)


@baselines_app.command("run")
@user_errors
def baselines_run(
    task: str = typer.Argument(..., help="Task name (see `medreward tasks list`)."),
    policy: list[str] = typer.Option(..., "--policy", "-p", help="Policy name (repeatable), or 'all'."),
    input: Path = typer.Option(..., "--input", "-i", help="Cases: .jsonl/.jsonl.gz/.parquet from `medreward tasks generate`."),
    output: str = typer.Option(..., "--output", "-o", help="Write rollouts here (.jsonl/.parquet; '-' = stdout)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the policies' random choices."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no summary."),
) -> None:
    """Run baseline policies on cases: each rollout is the case plus the policy's completion."""
    get_task(task)
    policies = resolve_policies(task, policy)
    cases_in = read_records(input)  # a missing/unreadable input fails here, before -o is touched
    problems = Problems()
    numbered = list(_good_records(cases_in, problems))
    if not numbered:
        problems.report("input lines")
        raise InputError(f"no usable cases in {str(input)!r}")
    writer = open_output(output, input=input)
    written = 0
    failed: set[int] = set()
    progress = progress_bar("running baselines", quiet=quiet)
    try:
        with progress:
            bar = progress.add_task("run", total=len(numbered) * len(policies))
            for info in policies:
                rng = policy_rng(task, info.name, seed)
                for number, case in numbered:
                    try:
                        completion = info.policy(case, rng)
                    except Exception as exc:  # noqa: BLE001 - untrusted records: report, keep the rest
                        if number not in failed:
                            failed.add(number)
                            ident = f" (id {case.get('id')})" if case.get("id") is not None else ""
                            reason = f"{type(exc).__name__}: {exc}"
                            problems.add(f"record #{number}{ident}: policy {info.name} cannot read it ({reason})")
                        continue
                    writer.write({**case, "completion": completion, "policy": info.name})
                    written += 1
                    progress.advance(bar)
    finally:
        writer.close()
    problems.report("input lines / records")
    if written == 0:
        raise InputError("no rollouts were produced: the cases do not fit this task's policies")
    if not quiet and output != "-":
        names = ", ".join(p.name for p in policies)
        out.print(f"wrote {written} rollouts ({names} on {len(numbered)} cases) to {output}")


def evaluation_table(results: Sequence[EvaluationResult], title: str, caption: str | None = None) -> Table:
    """Mean reward vs the task metrics, one row per policy (best reward first)."""
    metric_names: list[str] = []
    for r in results:
        metric_names.extend(m for m in r.metrics if m not in metric_names)
    preferred = [m for m in ("micro_f1", "macro_f1", "exact_match", "precision", "recall", "accuracy") if m in metric_names]
    shown = preferred or metric_names[:6]
    table = Table(title=title, caption=caption)
    table.add_column("policy", style="bold", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("reward", justify="right", no_wrap=True)
    for m in shown:
        table.add_column(_HEADERS.get(m, m.replace("_", "-")), justify="right", no_wrap=True)
    ranked = sorted(results, key=lambda r: -(r.mean_reward if r.mean_reward is not None else float("-inf")))
    for r in ranked:
        reward = "—" if r.mean_reward is None else f"{r.mean_reward:.3f}"
        errors = sum(v for k, v in r.statuses.items() if k != "ok")
        table.add_row(r.policy, f"{r.n}" + (f" ({errors} not ok)" if errors else ""), reward,
                      *(f"{r.metrics[m]:.3f}" if m in r.metrics else "—" for m in shown))
    return table


def print_results(
    results: Sequence[EvaluationResult], *, title: str, caption: str | None, as_json: bool, console: Console = out
) -> None:
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in results]))
    else:
        console.print(evaluation_table(results, title, caption))


@baselines_app.command("evaluate")
@user_errors
def baselines_evaluate(
    task: str = typer.Argument(..., help="Task name: its preset scores the rollouts, its metrics are reported."),
    input: Path = typer.Option(..., "--input", "-i", help="Rollouts (from `baselines run`), grouped by their 'policy'."),
    spec: str | None = typer.Option(None, "--spec", "-s", help="Score with this spec instead of the task's preset."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score rollouts with the task's preset and print mean reward vs the task's metrics per policy."""
    info = get_task(task)
    scorer = Scorer(spec or info.preset)
    problems = Problems()
    records = [record for _, record in _good_records(read_records(input), problems)]
    problems.report("input lines")
    if not records:
        raise InputError(f"no usable rollouts in {str(input)!r}")
    progress = progress_bar("scoring", quiet=quiet)
    scored = []
    with progress:
        bar = progress.add_task("score", total=len(records))
        scored.extend(scorer.iter_score(records, on_progress=lambda k: progress.advance(bar, k)))
    results = evaluate_by_policy(scored, task=task)
    caption = f"spec {scorer.spec.name} · {len(records)} rollouts in {scorer.stats.seconds:.2f} s"
    print_results(results, title=f"medreward baselines evaluate · {task}", caption=caption, as_json=as_json)
