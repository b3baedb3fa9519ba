"""``medreward reward-model fit-norm IN --spec S [--component NAME]``: fit a reward model's
``normalize = {mean, std}`` on a reference set and print the TOML line to paste into its ``params``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ..backends.factory import build_backend
from ..compose.spec import load_spec
from ..errors import InputError, RecordError, SpecError
from ..io import read_records
from ..records import BadRecord, Rollout
from ..rewards.reward_model import RewardModel, fit_normalization, normalization_toml
from .console import err, user_errors

log = logging.getLogger(__name__)

reward_model_app = typer.Typer(help="Reward-model tools: fit the normalisation of a reward_model component.", no_args_is_help=True)


@reward_model_app.command("fit-norm")
@user_errors
def fit_norm_command(
    input: Path = typer.Argument(..., help="Reference rollouts (JSONL or Parquet): prompts and completions to fit on."),
    spec: str = typer.Option(..., "--spec", "-s", help="Spec name or TOML path holding the reward_model component."),
    component: Optional[str] = typer.Option(None, "--component", "-c", help="The component's name (needed when there are several)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=2, help="Fit on the first N records only."),
) -> None:
    """Print the line 'normalize = { mean = M, std = S }' (a list of tables for an ensemble): the
    mean and standard deviation of the component's raw reward over INPUT."""
    loaded = load_spec(spec)
    chosen = _pick(loaded.built_components(), component, loaded.name)
    backends = {name: build_backend(name, loaded.backends[name].resolved(name)) for name in chosen.backend_names()}
    try:
        chosen.bind_backends(backends)
        rollouts = _rollouts(input, limit)
        try:
            fitted = fit_normalization(chosen, rollouts)
        except ValueError as exc:
            raise InputError(f"{input}: cannot fit {chosen.name!r}: {exc}") from None
    finally:
        for backend in backends.values():
            backend.close()
    err.print(f"# {chosen.name}: fitted on {len(rollouts)} records; paste into its params:", highlight=False)
    typer.echo(normalization_toml(fitted))


def _pick(components, name: str | None, spec_name: str) -> RewardModel:
    models = [c for c in components if isinstance(c, RewardModel)]
    if name is not None:
        found = [c for c in models if c.name == name]
        if not found:
            raise SpecError(f"spec {spec_name!r} has no reward_model component named {name!r} (it has {[c.name for c in models]})")
        return found[0]
    if len(models) != 1:
        which = "none" if not models else ", ".join(c.name for c in models)
        raise SpecError(f"spec {spec_name!r}: give --component; its reward_model components are: {which}")
    return models[0]


def _rollouts(path: Path, limit: int | None) -> list[Rollout]:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    out: list[Rollout] = []
    skipped = 0
    for record in read_records(path):
        if limit is not None and len(out) >= limit:
            break
        if isinstance(record, BadRecord):
            skipped += 1
            continue
        try:
            out.append(Rollout.from_dict(record))
        except RecordError:
            skipped += 1
    if skipped:
        log.warning("%s: %d unreadable records skipped", path, skipped)
    return out
