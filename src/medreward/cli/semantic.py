"""``medreward semantic-check IN --spec S [--component NAME]``: can the spec's embedding tell the data's
reference answers apart? (ARMed's reward collapse; :func:`medreward.rewards.semantic.collapse_report`.)

The reference answers of the records in IN (``reference.<field>`` of the ``semantic`` component) are
taken as different answers, one per record (repeats dropped); a record whose reference is a *list* of
acceptable answers also gives paraphrase pairs (its answers mean the same). With fewer than
:data:`MIN_DATA_PARAPHRASES` such pairs the built-in clinical paraphrase pairs are the yardstick.
Prints a rich table (``--json``: one JSON object on stdout); ``--strict`` exits 1 when the verdict
is ``collapsed``.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..backends.factory import build_backend
from ..compose.spec import load_spec
from ..errors import InputError, SpecError
from ..io import read_records
from ..records import BadRecord
from ..rewards.semantic import CollapseReport, Semantic, collapse_report
from .console import out, user_errors

__all__ = ["MIN_DATA_PARAPHRASES", "reference_answers", "semantic_check_command"]

log = logging.getLogger(__name__)

#: paraphrase pairs the data must offer (lists of acceptable answers) to be used instead of the built-in ones
MIN_DATA_PARAPHRASES = 3
#: paraphrase pairs taken from the data at most
_MAX_DATA_PARAPHRASES = 500

_STYLE = {"ok": "bold green", "weak": "bold yellow", "collapsed": "bold red"}


def reference_answers(path: Path, field: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The records' reference answers (the first of a list) and the paraphrase pairs within lists."""
    answers: list[str] = []
    pairs: list[tuple[str, str]] = []
    for record in read_records(path):
        if isinstance(record, BadRecord) or not isinstance(record, dict):
            continue
        reference = record.get("reference")
        value = reference.get(field) if isinstance(reference, dict) else None
        items = value if isinstance(value, list) else [value]
        texts = [t for t in items if isinstance(t, str) and t.strip()]
        if not texts:
            continue
        answers.append(texts[0])
        if len(pairs) < _MAX_DATA_PARAPHRASES:
            pairs.extend(itertools.islice(itertools.combinations(texts, 2), _MAX_DATA_PARAPHRASES - len(pairs)))
    return answers, pairs


def _pick(components, name: str | None, spec_name: str) -> Semantic:
    if not any(isinstance(c, Semantic) for c in components):
        raise SpecError(f"spec {spec_name!r} has no semantic component (kind 'semantic') to check")
    found = [c for c in components if isinstance(c, Semantic) and (name is None or c.name == name)]
    if name is not None and not found:
        names = [c.name for c in components if isinstance(c, Semantic)]
        raise SpecError(f"spec {spec_name!r} has no semantic component named {name!r} (it has {names})")
    if len(found) != 1:
        which = ", ".join(c.name for c in found) or "none"
        raise SpecError(f"spec {spec_name!r}: give --component; its semantic components are: {which}")
    return found[0]


@user_errors
def semantic_check_command(
    input: Path = typer.Argument(..., help="Rollouts (JSONL or Parquet) whose reference answers to compare."),
    spec: str = typer.Option(..., "--spec", "-s", help="Spec name or TOML path holding the semantic component."),
    component: Optional[str] = typer.Option(None, "--component", "-c", help="The component's name (needed when there are several)."),
    max_answers: int = typer.Option(400, "--max-answers", min=2, help="Compare at most N distinct answers (a seeded sample)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when the verdict is 'collapsed'."),
) -> None:
    """Report how similar the embedding finds DIFFERENT reference answers, against paraphrases: when
    they look alike, the semantic reward pays wrong answers almost as much as right ones."""
    loaded = load_spec(spec)
    chosen = _pick(loaded.built_components(), component, loaded.name)
    answers, data_pairs = reference_answers(input, chosen.params.field)
    paraphrases = data_pairs if len(data_pairs) >= MIN_DATA_PARAPHRASES else None
    backends = {name: build_backend(name, loaded.backends[name].resolved(name)) for name in chosen.backend_names()}
    try:
        chosen.bind_backends(backends)
        try:
            report = collapse_report(chosen, answers, paraphrases=paraphrases, max_answers=max_answers)
        except ValueError as exc:
            raise InputError(f"{input}: {exc} (in reference.{chosen.params.field})") from None
        except RuntimeError as exc:
            raise InputError(f"{input}: {exc}") from None
    finally:
        for backend in backends.values():
            backend.close()
    if paraphrases is not None:
        report = _with_source(report, "reference lists in the data")
    if as_json:
        typer.echo(json.dumps({"component": chosen.name, **report.to_dict()}, ensure_ascii=False))
    else:
        _print(report, chosen.name)
    if strict and report.verdict == "collapsed":
        raise typer.Exit(1)


def _with_source(report: CollapseReport, source: str) -> CollapseReport:
    from dataclasses import replace

    return replace(report, paraphrase_source=source)


def _print(report: CollapseReport, name: str) -> None:
    table = Table(title=f"semantic-check: {name} ({report.model})", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    cutoff = f"threshold {report.threshold:g}" if report.threshold is not None else f"floor {report.floor:g}"
    rows = [
        ("different answers", f"{report.answers} ({report.pairs} pairs)"),
        ("cosine of different answers: mean ± std", f"{report.different_mean:.3f} ± {report.different_std:.3f}"),
        ("  min / max", f"{report.different_min:.3f} / {report.different_max:.3f}"),
        (f"pairs above the {cutoff}", f"{report.above_floor:.1%}"),
        ("mean reward of a wrong answer / of a paraphrase", f"{report.wrong_reward_mean:.3f} / {report.right_reward_mean:.3f}"),
        ("wrong answer's share of a right one's reward", f"{report.reward_ratio:.0%}"),
        ("suggested floor (90th percentile of different pairs)", f"{report.suggested_floor:g}"),
        (f"paraphrases ({report.paraphrase_pairs}, {report.paraphrase_source}): mean / min",
         f"{report.paraphrase_mean:.3f} / {report.paraphrase_min:.3f}"),
        ("gap (paraphrase mean − different mean)", f"{report.gap:.3f}"),
        ("different pairs ≥ least similar paraphrase", f"{report.overlap:.1%}"),
    ]  # fmt: skip
    for measure, value in rows:
        table.add_row(measure, value)
    out.print(table)
    if report.most_similar:
        out.print("most similar different answers:")
        for a, b, cos in report.most_similar:
            out.print(f"  {cos:.3f}  {a!r} / {b!r}", highlight=False, markup=False)
    out.print(f"[{_STYLE[report.verdict]}]verdict: {report.verdict}[/] — {report.message}", highlight=False)
