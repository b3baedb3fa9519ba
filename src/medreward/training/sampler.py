"""The GRPO sampler of a multi-task run: the task mix of each generation batch follows a
:class:`~medreward.curriculum.TaskMixSchedule`.

TRL's ``RepeatSampler`` yields, per generation batch, ``B`` prompt indices, each repeated
``num_generations`` times (one GRPO group), the whole batch repeated ``steps_per_generation ×
num_iterations`` times (TRL generates once and reuses the completions for that many micro-steps).
:class:`TaskMixSampler` keeps that layout but picks the ``B`` prompts of generation batch ``b``
as ``schedule.counts(B, step_b)`` per task, ``step_b`` being the optimizer step at which batch ``b``
starts. Batch ``b`` is a pure function of ``(seed, b)``, so a resumed run (the Trainer re-iterates
the sampler and skips the batches already trained on) sees the same prompts as an uninterrupted one.

>>> from medreward.curriculum import TaskMixSchedule
>>> mix = TaskMixSchedule({"mcq": 1.0, "toxicology": 0.0}, {"mcq": 0.0, "toxicology": 1.0}, end_step=2)
>>> s = TaskMixSampler({"mcq": [0, 1, 2], "toxicology": [3, 4, 5]}, mix, prompts_per_batch=2,
...                    num_generations=2, repeat_count=1, steps_per_batch=1, num_batches=3, seed=0)
>>> [sorted(set(s.batch(b))) for b in range(3)]  # step 0: all mcq; step 1: half; step 2: all toxicology
[[1, 2], [1, 5], [3, 4]]
>>> s.batch(0)[:4]
[2, 2, 1, 1]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["TaskMixSampler"]


class TaskMixSampler(Sampler[int]):
    """See the module docstring.

    Args:
        task_indices: ``{task: dataset row indices}``.
        schedule: the task-mix schedule (its sources must be tasks of ``task_indices``).
        prompts_per_batch: ``B`` = ``generation_batch_size // num_generations``.
        num_generations: completions per prompt (each index is repeated this many times in a row).
        repeat_count: how often each generation batch is repeated (``num_iterations × steps_per_generation``).
        steps_per_batch: optimizer steps per generation batch (``repeat_count / gradient_accumulation_steps``).
        num_batches: generation batches per pass.
        seed: the run's seed.
    """

    def __init__(self, task_indices: Mapping[str, Sequence[int]], schedule: Any, *, prompts_per_batch: int,
                 num_generations: int, repeat_count: int, steps_per_batch: float, num_batches: int, seed: int) -> None:
        missing = [s for s in schedule.sources if not task_indices.get(s)]
        if missing:
            raise ValueError(f"the task mix names tasks with no training rows: {missing}")
        self.task_indices = {t: list(v) for t, v in task_indices.items()}
        self.schedule = schedule
        self.prompts_per_batch = prompts_per_batch
        self.num_generations = num_generations
        self.repeat_count = repeat_count
        self.steps_per_batch = steps_per_batch
        self.num_batches = num_batches
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def step_of(self, b: int) -> int:
        """The optimizer step at which generation batch ``b`` starts."""
        return int(b * self.steps_per_batch)

    def prompts(self, b: int) -> list[int]:
        """The ``B`` prompt indices of generation batch ``b`` (in the order they are sampled)."""
        rng = np.random.default_rng([self.seed, b])
        picked: list[int] = []
        for task, count in self.schedule.counts(self.prompts_per_batch, self.step_of(b)).items():
            pool = self.task_indices[task]
            if count:
                chosen = rng.choice(len(pool), size=count, replace=count > len(pool))
                picked.extend(pool[i] for i in chosen)
        order = rng.permutation(len(picked))
        return [picked[i] for i in order]

    def batch(self, b: int) -> list[int]:
        """Generation batch ``b`` as yielded (each prompt ``num_generations`` times in a row, the
        whole batch ``repeat_count`` times)."""
        one = [i for i in self.prompts(b) for _ in range(self.num_generations)]
        return one * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        for b in range(self.num_batches):
            yield from self.batch(self.epoch * self.num_batches + b)

    def __len__(self) -> int:
        return self.num_batches * self.prompts_per_batch * self.num_generations * self.repeat_count
