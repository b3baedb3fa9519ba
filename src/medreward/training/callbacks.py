"""TrainerCallbacks of the GRPO recipe: the threshold curriculum and the held-out evaluation.

* :class:`CurriculumCallback` — after each optimizer step that scored samples, observes the
  step's pass rate (share of samples whose component value is ``>= pass_at``) and mean metric,
  moves the spec's parameter when the :class:`~medreward.curriculum.ThresholdCurriculum` says so,
  and writes its state (and the task-mix schedule's) to ``medreward_curriculum.json`` in every
  checkpoint folder (``on_save``); :meth:`CurriculumCallback.load` restores it on ``--resume``.
* :class:`HeldoutEvalCallback` — every ``every_steps`` steps, samples the policy being trained on
  the held-out cases with :func:`medreward.evaluation.evaluate_policy` and hands the numbers to the
  trainer's log (``heldout/<task>/<metric>``) and to ``heldout_eval.jsonl`` in the output folder.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medreward.training.config import EvalConfig, ThresholdCurriculumConfig
from medreward.training.rewards import TrainingReward

__all__ = ["CURRICULUM_FILE", "CurriculumCallback", "HeldoutEvalCallback", "heldout_metrics"]

log = logging.getLogger(__name__)

CURRICULUM_FILE = "medreward_curriculum.json"


class CurriculumCallback(TrainerCallback):
    """See the module docstring. ``schedule``: the task-mix schedule whose step follows training."""

    def __init__(self, reward: TrainingReward, config: ThresholdCurriculumConfig | None, task: str | None,
                 schedule: Any | None = None) -> None:
        self.reward = reward
        self.config = config
        self.task = task
        self.curriculum = config.build() if config is not None else None
        self.schedule = schedule
        self.last_observation: tuple[float, float] | None = None
        if self.curriculum is not None:
            self._apply()

    def _apply(self) -> None:
        assert self.config is not None and self.task is not None and self.curriculum is not None
        self.reward.set_param(self.task, self.config.component, self.config.param, self.curriculum.value)
        self.reward.extra_metrics["curriculum/threshold"] = self.curriculum.value

    def observation(self, records: Sequence[Any]) -> tuple[float, float] | None:
        """``(pass rate, metric)`` of the records of the curriculum's task, or ``None`` if none applied."""
        assert self.config is not None
        values, metrics = [], []
        for task, record in records:
            if task != self.task:
                continue
            value = record.components.get(self.config.component)
            if value is None:
                continue
            values.append(value)
            if self.config.metric_info is not None:
                info = record.info.get(self.config.component)
                raw = info.get(self.config.metric_info) if isinstance(info, Mapping) else None
                if isinstance(raw, (int, float)) and math.isfinite(raw):
                    metrics.append(float(raw))
            else:
                metrics.append(float(value))
        if not values or not metrics:
            return None
        return sum(v >= self.config.pass_at for v in values) / len(values), sum(metrics) / len(metrics)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        records = self.reward.take_records()
        if self.schedule is not None:
            self.schedule.advance(max(0, state.global_step - self.schedule.step))
        if self.curriculum is None or not records:
            return control
        seen = self.observation(records)
        if seen is None:
            return control
        self.last_observation = seen
        old = self.curriculum.value
        new = self.curriculum.observe(success=seen[0], metric=seen[1])
        self.reward.extra_metrics["curriculum/pass_rate"] = seen[0]
        if new != old:
            log.info("curriculum: %s.%s %g -> %g at step %d", self.config.component, self.config.param, old, new,
                     state.global_step)
            self._apply()
        return control

    def state_dict(self, global_step: int) -> dict[str, Any]:
        return {
            "global_step": global_step,
            "threshold": None if self.curriculum is None else self.curriculum.state_dict(),
            "threshold_target": None if self.config is None else
            {"task": self.task, "component": self.config.component, "param": self.config.param},
            "task_mix": None if self.schedule is None else self.schedule.state_dict(),
        }

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():  # written by the Trainer just before on_save
            (folder / CURRICULUM_FILE).write_text(json.dumps(self.state_dict(state.global_step), indent=2), encoding="utf-8")
        return control

    def load(self, checkpoint: str | Path) -> dict[str, Any] | None:
        """Restore the state saved in a checkpoint folder; ``None`` when it holds none (a checkpoint
        of a run without curricula)."""
        path = Path(checkpoint) / CURRICULUM_FILE
        if not path.is_file():
            if self.curriculum is not None or self.schedule is not None:
                log.warning("%s: no curriculum state; the curricula start from scratch", checkpoint)
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
        if self.curriculum is not None and state.get("threshold") is not None:
            self.curriculum.load_state_dict(state["threshold"])
            self._apply()
        if self.schedule is not None and state.get("task_mix") is not None:
            self.schedule.load_state_dict(state["task_mix"])
        return state


def heldout_metrics(report: Any, prefix: str) -> dict[str, float]:
    """The numbers of a :class:`~medreward.evaluation.PolicyEvalReport` as flat log keys."""
    out = {
        f"{prefix}/mean_reward": report.mean_reward,
        f"{prefix}/pass_at_1": report.pass_at_1,
        f"{prefix}/pass_at_k": report.pass_at_k,
        f"{prefix}/maj_at_k": report.maj_at_k,
        f"{prefix}/format_rate": report.format_rate,
        f"{prefix}/mean_length_tokens": report.mean_length_tokens,
        f"{prefix}/hedge_ratio": report.hedge_ratio,
        **{f"{prefix}/{k}": v for k, v in report.metrics.items()},
    }
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


class HeldoutEvalCallback(TrainerCallback):
    """See the module docstring. ``evaluate(step) -> {key: value}`` does the work (the recipe
    binds the model, tokenizer, cases and specs); ``sink(metrics)`` hands them to the trainer's log."""

    def __init__(self, evaluate: Callable[[int], dict[str, float]], config: EvalConfig, output_dir: Path,
                 sink: Callable[[dict[str, float]], None]) -> None:
        self.evaluate = evaluate
        self.config = config
        self.output_dir = Path(output_dir)
        self.sink = sink
        self.history: list[dict[str, Any]] = []

    def run(self, step: int) -> dict[str, float]:
        metrics = self.evaluate(step)
        entry = {"step": step, **metrics}
        self.history.append(entry)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / "heldout_eval.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        self.sink(metrics)
        return metrics

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        every = self.config.every_steps
        if every and state.global_step % every == 0 and state.global_step < state.max_steps:
            self.run(state.global_step)
            control.should_log = True
        return control
