"""``medreward train grpo``: TRL's ``GRPOTrainer`` with medreward's reward, curricula and held-out eval.

What the recipe wires (everything checked before the model loads):

* **reward** — :class:`~medreward.training.rewards.TrainingReward`: medreward's TRL adapter with
  one spec per task (``--spec`` / ``[grpo] spec`` for a single-task run, else each task's preset);
  TRL logs ``reward``, ``rewards/medreward/mean``; the adapter logs every component
  (``medreward/<spec>/<component>/mean``, ``frac_error``…) and the label counts
  (``medreward/labels/hedge_ratio``);
* **threshold curriculum** — ``[grpo.threshold_curriculum]``: a
  :class:`~medreward.curriculum.ThresholdCurriculum` fed each step's pass rate; when it tightens,
  the spec's parameter changes for the following steps (``curriculum/threshold`` is logged);
* **task mix** — ``[grpo.task_mix]``: a :class:`~medreward.curriculum.TaskMixSchedule` as the
  sampler's schedule (:class:`~medreward.training.sampler.TaskMixSampler`);
* **held-out eval** — ``[grpo.eval]``: every ``every_steps`` steps and at the end,
  :func:`medreward.evaluation.evaluate_policy` on held-out cases (``heldout/<task>/…`` in the log
  and ``heldout_eval.jsonl``);
* **checkpoints** — TRL's ``checkpoint-*`` folders, each with ``medreward_curriculum.json``;
  ``--resume`` continues from the newest one (model, optimizer, step, curriculum state);
  Ctrl-C finishes the step, saves a checkpoint and stops;
* **reporting** — ``report_to`` as ``[trl]`` sets it (default ``"none"``), ``trainer_state.json``,
  and ``training_curves.png`` (reward, metric, length, hedge ratio per step) at the end.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medreward.compose.spec import Spec
from medreward.errors import InputError, SpecError
from medreward.training.config import ConfigError, TrainConfig, _build_trl, trl_arguments
from medreward.training.interrupt import InterruptCallback
from medreward.training.models import check_model_source, load_policy
from medreward.training.sft import _last_checkpoint, train_cases

__all__ = ["GRPOResult", "main_component", "prepare_grpo", "run_grpo"]

log = logging.getLogger(__name__)


@dataclass
class GRPOResult:
    output_dir: Path
    global_step: int
    interrupted: bool
    resumed_from: str | None
    curriculum: dict[str, Any] | None
    final_eval: dict[str, float] = field(default_factory=dict)
    plot: Path | None = None


@dataclass
class _Prepared:
    """What :func:`prepare_grpo` checked: the inputs of the run, no model loaded."""

    model: str
    args: Any
    specs: dict[str, Spec]
    train: list[dict[str, Any]]
    heldout: dict[str, list[dict[str, Any]]]
    checkpoint: str | None


def main_component(spec: Spec) -> str:
    """The spec's answer component: its first required one, else the one with the largest weight."""
    needs = spec.requirements()
    for k in (*needs.each, *needs.together):
        return spec.components[k].name
    return max(spec.components, key=lambda c: c.weight).name


def _grpo_model(config: TrainConfig) -> str:
    base = config.source.resolve().parent if config.source is not None else Path.cwd()
    if config.grpo.model is not None:
        return config.model_path(config.grpo.model, base)
    if (config.sft.output_dir / "config.json").is_file():
        return str(config.sft.output_dir)
    return config.model_path(config.model, base)


def _specs(config: TrainConfig, spec: str | None) -> dict[str, Spec]:
    from medreward.integrations.registry import load_spec_like
    from medreward.tasks.base import get_task

    chosen = spec or config.grpo.spec
    tasks = config.data.tasks
    if chosen is not None and len(tasks) > 1:
        raise ConfigError(f"--spec / [grpo] spec is for a single-task run; this run mixes {list(tasks)} "
                          "(each task is scored by its preset)")
    out = {}
    for task in tasks:
        loaded = load_spec_like(chosen or get_task(task).preset)
        if loaded.task is not None and loaded.task != task:
            raise InputError(f"spec {loaded.name!r} is for task {loaded.task!r}, but the training cases are {task!r}")
        out[task] = loaded
    return out


def _cases_by_task(cases: Sequence[Mapping[str, Any]], tasks: Sequence[str], what: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in tasks}
    for i, case in enumerate(cases, start=1):
        task = case.get("task") if isinstance(case, Mapping) else None
        task = task if isinstance(task, str) and task else (tasks[0] if len(tasks) == 1 else None)
        if task not in out:
            raise InputError(f"{what} case #{i} (id {case.get('id', '?')!r}) has task {case.get('task')!r}; "
                             f"[data] task lists {list(tasks)}")
        out[task].append({**dict(case), "task": task})
    return out


def prepare_grpo(config: TrainConfig, *, spec: str | None = None, resume: bool = False) -> _Prepared:
    """Every check of a GRPO run that needs no model: model path, TRL arguments, specs against the
    tasks, references of the training and held-out cases, the checkpoint to resume."""
    import trl

    from medreward.evaluation import policy_eval
    from medreward.runner import Scorer

    model = _grpo_model(config)
    check_model_source(model)
    args = _build_trl(trl.GRPOConfig, trl_arguments(config, "grpo"), "[grpo.trl]")
    specs = _specs(config, spec)
    checkpoint = _last_checkpoint(config.grpo.output_dir) if resume else None
    train = _cases_by_task(train_cases(config), config.data.tasks, "training")
    heldout: dict[str, list[dict[str, Any]]] = {}
    if config.data.eval_file is not None:
        from medreward.training.sft import _read_cases

        heldout = _cases_by_task(_read_cases(config.data.eval_file), config.data.tasks, "held-out")
    for task, cases in train.items():
        if not cases:
            raise InputError(f"no training cases of task {task!r}")
        policy_eval.check_cases(cases, task)  # a case without a reference fails here
        policy_eval.check_spec_fits(Scorer(specs[task]), task, cases)
        wanted = config.grpo.eval.cases if (config.grpo.eval.every_steps or config.grpo.eval.at_end) else 0
        if config.data.eval_file is None and wanted:
            heldout[task] = policy_eval.heldout_cases(task, wanted, seed=config.data.eval_seed, exclude=cases)
        elif heldout.get(task):
            heldout[task] = heldout[task][:wanted] if wanted else []
            if heldout[task]:
                policy_eval.check_cases(heldout[task], task)
    return _Prepared(model, args, specs, [c for t in config.data.tasks for c in train[t]], heldout, checkpoint)


def _dataset(cases: Sequence[Mapping[str, Any]]) -> Any:
    from datasets import Dataset

    from medreward.evaluation.policy_eval import prompt_messages

    return Dataset.from_list([
        {"prompt": prompt_messages(c), "reference": json.dumps(c["reference"]), "task": c["task"]} for c in cases
    ])


def _trainer_class() -> type:
    import trl

    class MedrewardGRPOTrainer(trl.GRPOTrainer):
        """GRPOTrainer with a pluggable train sampler and extra metrics merged into the next log."""

        def __init__(self, *a: Any, sampler_factory: Any = None, **kw: Any) -> None:
            self._sampler_factory = sampler_factory
            self.pending_logs: dict[str, float] = {}
            super().__init__(*a, **kw)

        def _get_train_sampler(self, dataset: Any = None) -> Any:
            if self._sampler_factory is not None:
                return self._sampler_factory(self, dataset if dataset is not None else self.train_dataset)
            return super()._get_train_sampler(dataset)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self.pending_logs:
                logs.update(self.pending_logs)
                self.pending_logs = {}
            super().log(logs, start_time)

    return MedrewardGRPOTrainer


def _task_mix_sampler(schedule: Any, tasks_column: Sequence[str], seed: int) -> Any:
    from medreward.training.sampler import TaskMixSampler

    def factory(trainer: Any, dataset: Any) -> Any:
        args = trainer.args
        indices: dict[str, list[int]] = {}
        for i, task in enumerate(tasks_column):
            indices.setdefault(task, []).append(i)
        per_batch = args.generation_batch_size // trainer.num_generations
        repeat = trainer.num_iterations * args.steps_per_generation
        steps_per_batch = repeat / args.gradient_accumulation_steps
        if args.max_steps > 0:
            batches = math.ceil(args.max_steps / steps_per_batch)
        else:
            batches = math.ceil(len(dataset) / per_batch)
        return TaskMixSampler(indices, schedule, prompts_per_batch=per_batch, num_generations=trainer.num_generations,
                              repeat_count=repeat, steps_per_batch=steps_per_batch, num_batches=batches, seed=seed)

    return factory


def run_grpo(config: TrainConfig, *, spec: str | None = None, resume: bool = False,
             callbacks: Sequence[Any] = ()) -> GRPOResult:
    """Run the GRPO stage of ``config`` (``spec`` overrides ``[grpo] spec``; ``resume`` continues
    from the newest checkpoint in ``[grpo] output_dir``; ``callbacks`` are added to the trainer)."""
    from medreward.evaluation import policy_eval
    from medreward.evaluation.sampling import TransformersGenerator
    from medreward.training.callbacks import CURRICULUM_FILE, CurriculumCallback, HeldoutEvalCallback, heldout_metrics
    from medreward.training.plots import plot_training
    from medreward.training.rewards import TrainingReward

    prepared = prepare_grpo(config, spec=spec, resume=resume)
    tasks = config.data.tasks
    reward = TrainingReward(prepared.specs)
    threshold = config.grpo.threshold_curriculum
    curriculum_task = None
    if threshold is not None:
        curriculum_task = threshold.task or (tasks[0] if len(tasks) == 1 else None)
        if curriculum_task not in prepared.specs:
            raise ConfigError(f"[grpo.threshold_curriculum] task: give one of {list(tasks)}")
    schedule = config.grpo.task_mix.build() if config.grpo.task_mix is not None else None
    try:
        curriculum = CurriculumCallback(reward, threshold, curriculum_task, schedule)
    except (ValueError, SpecError) as exc:
        raise ConfigError(f"[grpo.threshold_curriculum]: {exc}") from None
    dataset = _dataset(prepared.train)

    source = check_model_source(prepared.model)
    log.info("GRPO: %d training cases (%s), policy %s", len(prepared.train), ", ".join(tasks), prepared.model)
    model, tokenizer = load_policy(source)

    interrupt = InterruptCallback()
    eval_config = config.grpo.eval
    generator = TransformersGenerator(model, tokenizer, max_new_tokens=eval_config.max_new_tokens,
                                      temperature=eval_config.temperature)

    def evaluate(step: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for task, cases in prepared.heldout.items():
            if not cases:
                continue
            report = policy_eval.evaluate_policy(generator, cases, task=task, spec=prepared.specs[task].to_dict(),
                                                 k=eval_config.k, seed=config.seed, count_tokens=generator.count_tokens)
            out.update(heldout_metrics(report, f"heldout/{task}"))
        log.info("held-out eval at step %d: %s", step, {k: round(v, 4) for k, v in out.items()})
        return out

    trainer_cls = _trainer_class()
    sampler = _task_mix_sampler(schedule, dataset["task"], config.seed) if schedule is not None else None
    trainer_box: list[Any] = []
    heldout_cb = HeldoutEvalCallback(evaluate, eval_config, config.grpo.output_dir,
                                     lambda metrics: trainer_box[0].pending_logs.update(metrics))
    try:
        trainer = trainer_cls(
            model=model, reward_funcs=[reward], args=prepared.args, train_dataset=dataset, processing_class=tokenizer,
            callbacks=[curriculum, heldout_cb, interrupt, *callbacks], sampler_factory=sampler,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[grpo.trl]: GRPOTrainer rejects this setup: {exc}") from None
    trainer_box.append(trainer)
    if prepared.checkpoint is not None:
        state = curriculum.load(prepared.checkpoint)
        log.info("resuming from %s%s", prepared.checkpoint,
                 f" (curriculum at step {state['global_step']})" if state else "")
    with interrupt.installed():
        trainer.train(resume_from_checkpoint=prepared.checkpoint)

    out_dir = config.grpo.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    final: dict[str, float] = {}
    if not interrupt.requested:
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        if eval_config.at_end and any(prepared.heldout.values()):
            final = heldout_cb.run(trainer.state.global_step)
            trainer.log({})  # the held-out numbers, waiting in pending_logs, go to report_to and log_history
    trainer.state.save_to_json(str(out_dir / "trainer_state.json"))
    curriculum_state = curriculum.state_dict(trainer.state.global_step)
    (out_dir / CURRICULUM_FILE).write_text(json.dumps(curriculum_state, indent=2), encoding="utf-8")
    plot = None
    if config.grpo.plot:
        first = tasks[0]
        metric_key = f"medreward/{prepared.specs[first].name}/{main_component(prepared.specs[first])}/mean"
        plot = plot_training(trainer.state.log_history, out_dir / "training_curves.png", metric_key=metric_key,
                             heldout_prefix=f"heldout/{first}", title=f"GRPO {', '.join(tasks)}")
    summary = {
        "stage": "grpo", "global_step": trainer.state.global_step, "interrupted": interrupt.requested,
        "resumed_from": prepared.checkpoint, "tasks": list(tasks), "specs": {t: s.name for t, s in prepared.specs.items()},
        "final_eval": final, "curriculum": curriculum_state, "plot": str(plot) if plot else None,
    }
    (out_dir / "medreward_grpo.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return GRPOResult(out_dir, trainer.state.global_step, interrupt.requested, prepared.checkpoint, curriculum_state,
                      final, plot)
