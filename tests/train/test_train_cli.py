"""``medreward train`` through the real CLI: bad input fails before any model loads, and the smoke
run sft (2 steps) → grpo (2 steps) → grpo --resume (1 more step) on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.train]

pytest.importorskip("trl")
pytest.importorskip("datasets")

from cli_runner import run_all  # noqa: E402
from tiny_policy import save_tiny_policy  # noqa: E402

BASE = """
model = "{model}"
seed = 0
[data]
task = "toxicology"
train_cases = 8
eval_cases = 2
{data}
[trl]
use_cpu = true
per_device_train_batch_size = 2
[sft.trl]
max_steps = 2
max_length = 4096
learning_rate = 1e-3
[grpo]
model = "{grpo_model}"
[grpo.trl]
max_steps = {grpo_steps}
num_generations = 2
max_completion_length = 12
save_steps = 1
learning_rate = 1e-4
[grpo.eval]
cases = 2
k = 1
max_new_tokens = 8
[grpo.threshold_curriculum]
component = "substances"
param = "beta"
ladder = [1.0, 2.0, 3.0, 4.0, 5.0]
window = 1
min_success = 0.0
max_std = 1.0
delta = 10.0
pass_at = 0.0
"""


def write_config(path: Path, *, model: str = "tiny", grpo_model: str = "runs/sft", grpo_steps: int = 2,
                 data: str = "", extra: str = "") -> Path:
    path.write_text(BASE.format(model=model, grpo_model=grpo_model, grpo_steps=grpo_steps, data=data) + extra)
    return path


def broken_model(folder: Path) -> Path:
    """A folder that looks like a model but cannot load: an error that is not ours proves the
    check came first."""
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "not-a-model"}')
    return folder


def test_bad_input_fails_before_any_model_loads(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from medreward.cli.app import app

    broken_model(tmp_path / "broken")
    (tmp_path / "noref.jsonl").write_text(json.dumps({"id": "a", "task": "toxicology", "prompt": "Pupils?"}) + "\n")
    (tmp_path / "other.toml").write_text(
        'name = "other"\n[[components]]\nname = "c"\nkind = "choice"\nparams = { field = "answer" }\n')
    write_config(tmp_path / "ok.toml", model="broken", grpo_model="broken")
    write_config(tmp_path / "missing.toml", model="no/such/model", grpo_model="no/such/model")
    write_config(tmp_path / "noref.toml", model="broken", grpo_model="broken", data='train_file = "noref.jsonl"')
    write_config(tmp_path / "unknown.toml", extra="\n[grpo.evaluation]\nk = 2\n")
    cases = {
        ("train", "sft", "--config", "missing.toml"): "model 'no/such/model': no such folder",
        ("train", "grpo", "--config", "missing.toml"): "model 'no/such/model': no such folder",
        ("train", "grpo", "--config", "ok.toml", "--spec", "mcq"):
            "spec 'mcq' is for task 'mcq', but the training cases are 'toxicology'",
        ("train", "grpo", "--config", "ok.toml", "--spec", "other.toml"): "spec 'other' does not fit task 'toxicology'",
        ("train", "sft", "--config", "noref.toml"): "has no reference",
        ("train", "grpo", "--config", "noref.toml"): "has no reference",
        ("train", "grpo", "--config", "unknown.toml"):
            "[grpo]: unknown key(s) 'evaluation'; valid keys: eval, model, output_dir, plot, spec, task_mix",
        ("train", "grpo", "--config", "ok.toml", "--resume"): "--resume: no checkpoint-* folder in",
        ("train", "sft", "--config", "none.toml"): "none.toml: no such config file",
    }
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args, message in cases.items():  # in one process: each `medreward` start imports torch and trl again
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert message in " ".join(result.output.split()), (args, result.output)
    # and the real entry point prints one line, no traceback
    real = run_all({"missing": ("train", "grpo", "--config", "missing.toml")}, tmp_path)["missing"]
    assert real.returncode == 2
    assert "Traceback" not in real.stderr and "model 'no/such/model': no such folder" in real.stderr


@pytest.mark.slow
def test_sft_then_grpo_then_resume_continues_the_curriculum(tmp_path):
    save_tiny_policy(tmp_path / "tiny")
    write_config(tmp_path / "run.toml")
    write_config(tmp_path / "more.toml", grpo_steps=3)

    sft = run_all({"sft": ("train", "sft", "--config", "run.toml")}, tmp_path)["sft"]
    assert sft.returncode == 0, sft.stderr
    sft_dir = tmp_path / "runs/sft"
    assert (sft_dir / "model.safetensors").is_file() and (sft_dir / "checkpoint-2").is_dir()
    assert json.loads((sft_dir / "medreward_sft.json").read_text())["global_step"] == 2

    grpo = run_all({"grpo": ("train", "grpo", "--config", "run.toml")}, tmp_path)["grpo"]
    assert grpo.returncode == 0, grpo.stderr
    out = tmp_path / "runs/grpo"
    for name in ("model.safetensors", "trainer_state.json", "medreward_grpo.json", "heldout_eval.jsonl",
                 "training_curves.png", "checkpoint-1/medreward_curriculum.json", "checkpoint-2/optimizer.pt"):
        assert (out / name).is_file(), name
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [e for e in history if "reward" in e]
    assert [e["step"] for e in steps] == [1, 2]
    for entry in steps:
        for key in ("rewards/medreward/mean", "medreward/toxicology/substances/mean", "medreward/toxicology/format/mean",
                    "completions/mean_length", "medreward/labels/reference_mean", "curriculum/threshold"):
            assert key in entry, (key, sorted(entry))
    # the threshold the reward used at step n is the rung reached after n - 1 observations
    assert [e["curriculum/threshold"] for e in steps] == [1.0, 2.0]
    assert any("heldout/toxicology/micro_f1" in e for e in history)
    saved = json.loads((out / "checkpoint-2/medreward_curriculum.json").read_text())
    assert saved["global_step"] == 2
    assert saved["threshold"]["step"] == 2 and saved["threshold"]["level"] == 2

    resumed = run_all({"resume": ("train", "grpo", "--config", "more.toml", "--resume")}, tmp_path)["resume"]
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "medreward_grpo.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["global_step"] == 3
    # restored, then one more observation: a fresh curriculum would be at step 1, level 1
    assert summary["curriculum"]["threshold"]["step"] == 3
    assert summary["curriculum"]["threshold"]["level"] == 3
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    step3 = [e for e in history if e.get("step") == 3 and "reward" in e]
    assert step3 and step3[0]["curriculum/threshold"] == 3.0
