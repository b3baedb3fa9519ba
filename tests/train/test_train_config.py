"""The training config: unknown keys and bad values are ConfigErrors that say what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from medreward.training.config import (
    DEFAULT_EVAL_SEED,
    ConfigError,
    load_config,
    parse_config,
    trl_arguments,
)


def cfg(**extra):
    return {"model": "m", **extra}


def test_minimal_config_defaults(tmp_path):
    config = parse_config(cfg(), base=tmp_path)
    assert config.data.tasks == ("toxicology",)
    assert config.data.eval_seed == DEFAULT_EVAL_SEED
    assert config.sft.output_dir == tmp_path / "runs/sft"
    args = trl_arguments(config, "grpo")
    assert args["report_to"] == "none" and args["output_dir"] == str(tmp_path / "runs/grpo") and args["seed"] == 0


def test_trl_tables_merge_common_then_stage(tmp_path):
    config = parse_config(cfg(seed=5, trl={"learning_rate": 1e-4, "report_to": "tensorboard"},
                              grpo={"trl": {"learning_rate": 3e-6, "num_generations": 2,
                                            "per_device_train_batch_size": 2}}), base=tmp_path, stage="grpo")
    grpo = trl_arguments(config, "grpo")
    sft = trl_arguments(config, "sft")
    assert grpo["learning_rate"] == 3e-6 and sft["learning_rate"] == 1e-4
    assert grpo["report_to"] == sft["report_to"] == "tensorboard"
    assert grpo["seed"] == 5
    import trl

    built = trl.GRPOConfig(**grpo)
    assert built.num_generations == 2 and built.learning_rate == 3e-6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cfg(modle="x"), "unknown key(s) 'modle'; valid keys: data, grpo, model, seed, sft, trl"),
        (cfg(data={"tasks": "mcq"}), "[data]: unknown key(s) 'tasks'; valid keys: eval_cases, eval_file, eval_seed, task"),
        (cfg(grpo={"evaluation": {}}), "[grpo]: unknown key(s) 'evaluation'; valid keys: eval, model, output_dir"),
        (cfg(grpo={"eval": {"every": 1}}), "[grpo.eval]: unknown key(s) 'every'; valid keys: at_end, cases, every_steps, k"),
        (cfg(sft={"lr": 1}), "[sft]: unknown key(s) 'lr'; valid keys: output_dir, trl"),
        (cfg(trl={"learnig_rate": 1e-5}), "did you mean learning_rate"),
        (cfg(grpo={"trl": {"num_generation": 4}}), "did you mean num_generations"),
        (cfg(sft={"trl": {"num_generations": 4}}), "[sft.trl]: unknown SFTConfig argument(s) 'num_generations'"),
        (cfg(trl={"output_dir": "x"}), "set 'output_dir' as a medreward key"),
        (cfg(data={"task": "radiology"}), "[data] task: unknown task 'radiology'"),
        (cfg(data={"train_seed": 3, "eval_seed": 3}), "held-out cases would be training cases"),
        (cfg(data={"train_cases": 0}), "[data] train_cases must be an integer >= 1"),
        (cfg(data={"train_file": "nope.jsonl"}), "nope.jsonl: no such file"),
        ({}, "'model' is required"),
        (cfg(grpo={"threshold_curriculum": {"component": "x", "param": "y"}}), "'ladder' is required"),
        (cfg(grpo={"threshold_curriculum": {"component": "x", "param": "y", "ladder": [0.5, 0.2]}}),
         "ladder must be strictly increasing"),
        (cfg(grpo={"threshold_curriculum": {"component": "x", "param": "y", "ladder": [1], "windw": 3}}),
         "unknown key(s) 'windw'"),
        (cfg(grpo={"task_mix": {"start": {"mcq": 1}, "end": {"mcq": 1}}}), "names task(s) ['mcq'] that [data] task does not list"),
        (cfg(grpo={"task_mix": {"start": {"toxicology": 1}, "end": {"toxicology": 1}}}), "needs a multi-task run"),
    ],
)
def test_bad_configs_say_what_is_valid(tmp_path, data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, base=tmp_path)
    assert message in str(info.value)


def test_trl_values_are_checked_for_the_stage_that_runs(tmp_path):
    data = cfg(grpo={"trl": {"num_generations": 3, "per_device_train_batch_size": 2}})
    parse_config(data, base=tmp_path, stage="sft")  # the GRPO table is only checked for its keys here
    with pytest.raises(ConfigError, match=r"\[grpo.trl\]: trl.GRPOConfig rejects these arguments: .*divisible"):
        parse_config(data, base=tmp_path, stage="grpo")


def test_yaml_and_toml_files_and_relative_paths(tmp_path):
    (tmp_path / "cases.jsonl").write_text("{}\n")
    (tmp_path / "c.yaml").write_text("model: m\ndata:\n  task: [mcq, toxicology]\n  train_file: cases.jsonl\n"
                                     "grpo:\n  output_dir: out\n  task_mix:\n    start: {mcq: 1}\n    end: {toxicology: 1}\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.data.tasks == ("mcq", "toxicology")
    assert config.data.train_file == tmp_path / "cases.jsonl"
    assert config.grpo.output_dir == tmp_path / "out"
    assert config.grpo.task_mix is not None and config.grpo.task_mix.build().weights(0) == {"mcq": 1.0, "toxicology": 0.0}
    (tmp_path / "c.toml").write_text('model = "m"\n[grpo.eval]\nevery_steps = 5\n')
    assert load_config(tmp_path / "c.toml").grpo.eval.every_steps == 5
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="must end in .toml, .yaml"):
        (tmp_path / "c.ini").write_text("x")
        load_config(tmp_path / "c.ini")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Path(tmp_path / "missing.toml"))
