"""A real GRPO run (tiny random Llama, in-process): the task-mix schedule drives which tasks each
step samples, Ctrl-C leaves a resumable checkpoint with the schedule's state, and --resume finishes."""

from __future__ import annotations

import json
import os
import signal

import pytest

pytestmark = [pytest.mark.train, pytest.mark.slow]

pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")

from tiny_policy import save_tiny_policy  # noqa: E402

from medreward.training.callbacks import CURRICULUM_FILE  # noqa: E402
from medreward.training.config import load_config  # noqa: E402
from medreward.training.grpo import run_grpo  # noqa: E402

CONFIG = """
model = "tiny"
[data]
task = ["mcq", "toxicology"]
train_cases = 6
[trl]
use_cpu = true
[grpo]
plot = false
[grpo.trl]
max_steps = {steps}
per_device_train_batch_size = 2
num_generations = 2
max_completion_length = 8
save_steps = 100
[grpo.eval]
at_end = false
[grpo.task_mix]
start = {{ mcq = 1.0 }}
end = {{ toxicology = 1.0 }}
start_step = 0
end_step = 1
"""


class SigintAtStep(transformers.TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
        return control


def test_task_mix_and_ctrl_c_then_resume(tmp_path):
    save_tiny_policy(tmp_path / "tiny")
    (tmp_path / "run.toml").write_text(CONFIG.format(steps=3))
    config = load_config(tmp_path / "run.toml", stage="grpo")

    # SIGINT during step 1: the interrupt callback sees it at the end of step 2 (it runs before ours)
    result = run_grpo(config, callbacks=[SigintAtStep(1)])
    assert result.interrupted and result.global_step == 2
    checkpoint = tmp_path / "runs/grpo/checkpoint-2"
    assert (checkpoint / "optimizer.pt").is_file()  # saved although save_steps = 100
    state = json.loads((checkpoint / CURRICULUM_FILE).read_text())
    assert state["task_mix"]["step"] == 2
    assert not (tmp_path / "runs/grpo/model.safetensors").exists()  # no final model for an interrupted run
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    by_step = {e["step"]: e for e in history if "reward" in e}
    # step 1 is sampled at schedule step 0 (all mcq), step 2 at step 1 (all toxicology)
    assert "medreward/mcq/choice/mean" in by_step[1] and "medreward/toxicology/substances/mean" not in by_step[1]
    assert "medreward/toxicology/substances/mean" in by_step[2] and "medreward/mcq/choice/mean" not in by_step[2]

    resumed = run_grpo(config, resume=True)
    assert not resumed.interrupted and resumed.global_step == 3
    assert resumed.resumed_from.endswith("checkpoint-2")
    assert resumed.curriculum["task_mix"]["step"] == 3
    assert (tmp_path / "runs/grpo/model.safetensors").is_file()
