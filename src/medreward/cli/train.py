"""``medreward train sft --config C`` and ``medreward train grpo --config C [--spec S] [--resume]``.

The config (TOML or YAML) is validated, the model path, the spec and the cases are checked before
any model loads; a user mistake is one ``error:`` line and exit code 2, never a traceback. Ctrl-C
finishes the current step, saves a checkpoint and exits with code 130 (``--resume`` continues).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

import typer

from .console import err, fail, user_errors

log = logging.getLogger(__name__)

train_app = typer.Typer(help="Train a policy with medreward rewards on TRL: SFT cold start, then GRPO.",
                        no_args_is_help=True)

_CONFIG = typer.Option(..., "--config", "-c", help="Training config (TOML or YAML): model, [data], [trl], [sft], [grpo]; "
                       "see docs/training.md.")
_RESUME = typer.Option(False, "--resume", help="Continue from the newest checkpoint-* in the stage's output_dir.")


def _require_train_extra() -> None:
    missing = [m for m in ("torch", "transformers", "trl", "datasets") if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"training needs the 'train' extra ({', '.join(missing)} missing): pip install 'medreward[train]'")


def _load(config: Path, stage: str):
    _require_train_extra()
    from ..training.config import load_config

    return load_config(config, stage=stage)


@train_app.command("sft")
@user_errors
def sft_command(config: Path = _CONFIG, resume: bool = _RESUME) -> None:
    """Supervised cold start: <think>reasoning</think><answer>reference</answer> examples built from the
    task library, trained with TRL's SFTTrainer and the tokenizer's chat template."""
    from ..training.sft import run_sft

    result = run_sft(_load(config, "sft"), resume=resume)
    if result.interrupted:
        err.print(f"interrupted at step {result.global_step}: checkpoint saved in {result.output_dir}; "
                  "continue with --resume", highlight=False)
        raise typer.Exit(130)
    loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    err.print(f"SFT done: {result.global_step} steps on {result.examples} examples, train loss {loss}; "
              f"model saved to {result.output_dir}", highlight=False)


@train_app.command("grpo")
@user_errors
def grpo_command(
    config: Path = _CONFIG,
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help="Spec name or TOML path (single-task runs); "
                                       "overrides [grpo] spec; default: the task's preset."),
    resume: bool = _RESUME,
) -> None:
    """GRPO with medreward's reward (TRL GRPOTrainer), the curricula, held-out evaluation and checkpoints."""
    from ..training.grpo import run_grpo

    result = run_grpo(_load(config, "grpo"), spec=spec, resume=resume)
    if result.interrupted:
        err.print(f"interrupted at step {result.global_step}: checkpoint saved in {result.output_dir}; "
                  "continue with --resume", highlight=False)
        raise typer.Exit(130)
    held = ", ".join(f"{k.removeprefix('heldout/')} {v:.3f}" for k, v in result.final_eval.items()
                     if k.rsplit("/", 1)[-1] in ("mean_reward", "micro_f1", "accuracy", "format_rate", "hedge_ratio"))
    err.print(f"GRPO done: {result.global_step} steps; model saved to {result.output_dir}"
              + (f"; held-out: {held}" if held else "") + (f"; plot: {result.plot}" if result.plot else ""),
              highlight=False)
