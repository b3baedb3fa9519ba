"""The pieces of the GRPO recipe without a trainer: the reward's curriculum hook and label counts,
the curriculum callback's observation and checkpoint state, the task-mix sampler, the plot."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("trl")

from medreward.compose.spec import load_spec
from medreward.curriculum import TaskMixSchedule
from medreward.training.callbacks import CURRICULUM_FILE, CurriculumCallback, heldout_metrics
from medreward.training.config import ThresholdCurriculumConfig
from medreward.training.grpo import main_component
from medreward.training.plots import plot_training, series
from medreward.training.rewards import TrainingReward, label_counts
from medreward.training.sampler import TaskMixSampler

TOX = json.dumps({"substances": ["opioids"]})


def call(reward, completions, references, tasks=None, log=None):
    tasks = tasks or ["toxicology"] * len(completions)
    return reward(prompts=["p"] * len(completions), completions=completions, reference=references, task=tasks,
                  log_metric=(lambda k, v: log.__setitem__(k, v)) if log is not None else None)


def test_training_reward_logs_label_counts_and_hedge_ratio():
    reward = TrainingReward({"toxicology": load_spec("toxicology")})
    log: dict[str, float] = {}
    out = call(reward, ["<think>.</think><answer>opioids, ethanol, stimulants</answer>",
                        "<think>.</think><answer>opioids</answer>"], [TOX, TOX], log=log)
    assert out[1] == pytest.approx(1.0)
    assert out[0] == pytest.approx(0.1 + 0.9 * 0.5)  # F1 of 1 right out of 3 predicted
    assert log["medreward/labels/predicted_mean"] == 2.0
    assert log["medreward/labels/reference_mean"] == 1.0
    assert log["medreward/labels/hedge_ratio"] == 2.0
    assert "medreward/toxicology/substances/mean" in log
    taken = reward.take_records()
    assert [t for t, _ in taken] == ["toxicology", "toxicology"] and reward.take_records() == []


def test_label_counts_reads_predicted_missed_hallucinated():
    record = SimpleNamespace(info={"format": {}, "substances": {"predicted": ["a", "b"], "missed": ["c"], "hallucinated": ["b"]}})
    assert label_counts(record) == (2, 2)
    assert label_counts(SimpleNamespace(info={"value": {"parsed": 3}})) is None


def test_set_param_changes_how_the_next_batch_is_scored():
    spec = load_spec("calculator")
    reward = TrainingReward({"calculator": spec})
    ref = json.dumps({"value": 100.0, "unit": None})
    completion = ["<think>.</think><answer>104</answer>"]
    assert call(reward, completion, [ref], ["calculator"]) == [pytest.approx(1.0)]  # rel_tol 0.05
    reward.set_param("calculator", "value", "rel_tol", 0.01)
    assert call(reward, completion, [ref], ["calculator"]) == [pytest.approx(0.1)]  # format only
    with pytest.raises(ValueError, match="no component 'nope'"):
        reward.set_param("calculator", "nope", "rel_tol", 0.01)


def curriculum_config(**kw):
    table = {"component": "value", "param": "rel_tol", "ladder": [0.2, 0.1, 0.05], "higher_is_better": False,
             "window": 2, "min_success": 0.5, "max_std": 0.5, "delta": 1.0, **kw}
    return ThresholdCurriculumConfig.parse(table)


def test_curriculum_callback_observes_pass_rate_tightens_and_round_trips(tmp_path):
    reward = TrainingReward({"calculator": load_spec("calculator")})
    cb = CurriculumCallback(reward, curriculum_config(), "calculator")
    assert reward.specs["calculator"].to_dict()["components"][1]["params"]["rel_tol"] == 0.2
    ref = json.dumps({"value": 100.0, "unit": None})
    args = SimpleNamespace(output_dir=str(tmp_path))
    for step in (1, 2):
        call(reward, ["<think>.</think><answer>104</answer>", "<think>.</think><answer>150</answer>"], [ref, ref],
             ["calculator"] * 2)
        assert cb.observation(list(reward._records)) == (0.5, 0.5)
        cb.on_step_end(args, SimpleNamespace(global_step=step), SimpleNamespace())
    assert cb.curriculum.value == 0.1  # window of 2 full, pass rate 0.5 >= min_success
    assert reward.specs["calculator"].to_dict()["components"][1]["params"]["rel_tol"] == 0.1
    assert reward.extra_metrics == {"curriculum/threshold": 0.1, "curriculum/pass_rate": 0.5}
    (tmp_path / "checkpoint-2").mkdir()
    cb.on_save(args, SimpleNamespace(global_step=2), SimpleNamespace())
    saved = json.loads((tmp_path / "checkpoint-2" / CURRICULUM_FILE).read_text())
    assert saved["threshold"]["level"] == 1 and saved["global_step"] == 2

    fresh_reward = TrainingReward({"calculator": load_spec("calculator")})
    fresh = CurriculumCallback(fresh_reward, curriculum_config(), "calculator")
    fresh.load(tmp_path / "checkpoint-2")
    assert fresh.curriculum.state_dict() == cb.curriculum.state_dict()
    assert fresh_reward.specs["calculator"].to_dict()["components"][1]["params"]["rel_tol"] == 0.1
    with pytest.raises(ValueError, match="saved with config"):
        CurriculumCallback(TrainingReward({"calculator": load_spec("calculator")}),
                           curriculum_config(window=3), "calculator").load(tmp_path / "checkpoint-2")


def test_curriculum_metric_from_info_and_other_tasks_ignored():
    cfg = curriculum_config(metric_info="parsed", pass_at=1.0)
    cb = CurriculumCallback(TrainingReward({"calculator": load_spec("calculator")}), cfg, "calculator")
    records = [("calculator", SimpleNamespace(components={"value": 1.0}, info={"value": {"parsed": 4.0}})),
               ("calculator", SimpleNamespace(components={"value": 0.0}, info={"value": {"parsed": 2.0}})),
               ("calculator", SimpleNamespace(components={"value": None}, info={})),
               ("mcq", SimpleNamespace(components={"value": 1.0}, info={"value": {"parsed": 100.0}}))]
    assert cb.observation(records) == (0.5, 3.0)
    assert cb.observation(records[2:3]) is None


def test_task_mix_sampler_layout_follows_the_schedule_and_is_deterministic():
    mix = TaskMixSchedule({"mcq": 1.0, "toxicology": 0.0}, {"mcq": 0.0, "toxicology": 1.0}, end_step=4)
    indices = {"mcq": list(range(0, 10)), "toxicology": list(range(10, 20))}
    s = TaskMixSampler(indices, mix, prompts_per_batch=4, num_generations=2, repeat_count=2, steps_per_batch=1.0,
                       num_batches=5, seed=3)
    rows = list(s)
    assert len(rows) == len(s) == 5 * 4 * 2 * 2
    per_batch = [rows[i * 16:(i + 1) * 16] for i in range(5)]
    for b, batch in enumerate(per_batch):
        assert batch[:8] == batch[8:]  # the generation batch repeated repeat_count times
        assert all(batch[i] == batch[i + 1] for i in range(0, 8, 2))  # each prompt num_generations times in a row
        prompts = batch[:8:2]
        n_tox = sum(p >= 10 for p in prompts)
        assert n_tox == mix.counts(4, b)["toxicology"]
    assert list(s) == rows  # a resumed run re-iterates the same batches
    s.set_epoch(1)
    assert list(s)[:16] == s.batch(5)
    with pytest.raises(ValueError, match="no training rows"):
        TaskMixSampler({"mcq": [0]}, mix, prompts_per_batch=1, num_generations=1, repeat_count=1, steps_per_batch=1,
                       num_batches=1, seed=0)


def test_main_component_and_heldout_metrics():
    assert main_component(load_spec("toxicology")) == "substances"
    assert [main_component(load_spec(n)) for n in ("mcq", "calculator", "icd_coding")] == ["choice", "value", "codes"]
    report = SimpleNamespace(mean_reward=0.5, pass_at_1=0.25, pass_at_k=0.5, maj_at_k=0.5, format_rate=1.0,
                             mean_length_tokens=None, hedge_ratio=float("nan"), metrics={"micro_f1": 0.4})
    assert heldout_metrics(report, "heldout/toxicology") == {
        "heldout/toxicology/mean_reward": 0.5, "heldout/toxicology/pass_at_1": 0.25, "heldout/toxicology/pass_at_k": 0.5,
        "heldout/toxicology/maj_at_k": 0.5, "heldout/toxicology/format_rate": 1.0, "heldout/toxicology/micro_f1": 0.4}


def test_plot_is_written_from_the_log_history(tmp_path):
    pytest.importorskip("matplotlib")
    history = [{"step": s, "reward": 0.1 * s, "medreward/t/x/mean": 0.2 * s, "completions/mean_length": 10 + s,
                "medreward/labels/hedge_ratio": 1.0} for s in (1, 2, 3)] + [{"step": 3, "heldout/t/micro_f1": 0.3,
                                                                              "heldout/t/mean_reward": 0.4}]
    assert series(history, "heldout/t/micro_f1") == ([3], [0.3])
    path = plot_training(history, tmp_path / "p.png", metric_key="medreward/t/x/mean", heldout_prefix="heldout/t")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_training([{"step": 1, "loss": 1.0}], tmp_path / "q.png", metric_key="m") is None
