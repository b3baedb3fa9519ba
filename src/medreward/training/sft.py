"""``medreward train sft``: the supervised cold start on TRL's ``SFTTrainer``.

Builds the SFT examples from the task library (:mod:`medreward.training.sft_data`), loads the
policy (:mod:`medreward.training.models`), and trains on the prompt-completion pairs with the
tokenizer's chat template (TRL applies it; the loss covers the completion only). The final model
and tokenizer are saved to ``[sft] output_dir``, which ``[grpo]`` uses as its model by default.
``--resume`` continues from the newest ``checkpoint-*`` there; Ctrl-C saves one and stops.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medreward.errors import InputError
from medreward.training.config import ConfigError, TrainConfig, _build_trl, trl_arguments
from medreward.training.interrupt import InterruptCallback
from medreward.training.models import check_model_source, load_policy
from medreward.training.sft_data import build_sft_examples, generate_cases

__all__ = ["SFTResult", "prepare_sft_examples", "run_sft"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTResult:
    output_dir: Path
    global_step: int
    train_loss: float | None
    examples: int
    interrupted: bool


def _read_cases(path: Path) -> list[dict[str, Any]]:
    from medreward.io import read_records
    from medreward.records import BadRecord

    out = []
    for record in read_records(path):
        if isinstance(record, BadRecord):
            raise InputError(f"{path}: {record}")
        out.append(dict(record))
    if not out:
        raise InputError(f"{path}: no records")
    return out


def train_cases(config: TrainConfig) -> list[dict[str, Any]]:
    """The training cases: ``[data] train_file`` or generated from the tasks."""
    if config.data.train_file is not None:
        return _read_cases(config.data.train_file)
    return generate_cases(config.data.tasks, config.data.train_cases, config.data.train_seed)


def prepare_sft_examples(config: TrainConfig) -> list[dict[str, Any]]:
    """The SFT examples of a config (raises :class:`InputError` for cases without references)."""
    return build_sft_examples(train_cases(config), shuffle_seed=config.seed)


def _last_checkpoint(output_dir: Path) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        raise InputError(f"--resume: no checkpoint-* folder in {output_dir}")
    return last


def run_sft(config: TrainConfig, *, resume: bool = False) -> SFTResult:
    """Run the SFT stage of ``config``. Everything is checked before the model loads."""
    import trl
    from datasets import Dataset

    source = check_model_source(config.model)
    args = _build_trl(trl.SFTConfig, trl_arguments(config, "sft"), "[sft.trl]")
    checkpoint = _last_checkpoint(config.sft.output_dir) if resume else None
    examples = prepare_sft_examples(config)
    log.info("SFT: %d examples from %s", len(examples), ", ".join(config.data.tasks))
    model, tokenizer = load_policy(source)
    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    interrupt = InterruptCallback()
    try:
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                 callbacks=[interrupt])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[sft.trl]: SFTTrainer rejects this setup: {exc}") from None
    kept = len(trainer.train_dataset)
    if kept == 0:  # TRL drops examples whose completion is cut off entirely by max_length
        raise InputError(f"no SFT example fits in max_length={args.max_length} tokens with its completion; "
                         "raise [sft.trl] max_length")
    if kept < len(examples):
        log.warning("SFT: %d of %d examples dropped (the completion did not fit in max_length=%s)",
                    len(examples) - kept, len(examples), args.max_length)
    with interrupt.installed():
        output = trainer.train(resume_from_checkpoint=checkpoint)
    if not interrupt.requested:
        trainer.save_model(str(config.sft.output_dir))
        tokenizer.save_pretrained(str(config.sft.output_dir))
    summary = {
        "stage": "sft", "global_step": trainer.state.global_step, "train_loss": output.training_loss,
        "examples": len(examples), "tasks": list(config.data.tasks), "interrupted": interrupt.requested,
    }
    config.sft.output_dir.mkdir(parents=True, exist_ok=True)
    (config.sft.output_dir / "medreward_sft.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return SFTResult(config.sft.output_dir, trainer.state.global_step, output.training_loss, len(examples),
                     interrupt.requested)
