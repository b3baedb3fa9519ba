"""DPO pairs from scored groups: the selection rule, the counts, TRL's DPOTrainer reading the file, the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from medreward.records import BadRecord, ScoredRecord, Status
from medreward.training.pairs import PairsReport, _Item, build_pairs, select_pair


def item(index, reward, text):
    return _Item(index, reward, text, {})


def rec(group, text, reward, status=Status.OK, prompt="Q?", **extra):
    record = {"prompt": prompt, "completion": text, **extra}
    if group is not None:
        record["group"] = group
    return ScoredRecord(record, reward if status is Status.OK else None, {}, status)


# -- the selection rule ---------------------------------------------------------------------
def test_length_control_prefers_a_chosen_not_longer_than_the_rejected():
    items = [item(0, 1.0, "x" * 50), item(1, 0.6, "x" * 10), item(2, 0.0, "x" * 30)]
    # candidates (margin): 0>1 .4 (50>10 longer), 0>2 1.0 (50>30 longer), 1>2 .6 (10<=30 not longer)
    chosen, rejected = select_pair(items, min_margin=0.0, length_control=True)
    assert (chosen.index, rejected.index) == (1, 2)
    # without length control: best vs worst
    chosen, rejected = select_pair(items, min_margin=0.0, length_control=False)
    assert (chosen.index, rejected.index) == (0, 2)
    # a margin the not-longer pair misses: the smallest length ratio among the rest (50/30 < 50/10)
    chosen, rejected = select_pair(items, min_margin=0.7, length_control=True)
    assert (chosen.index, rejected.index) == (0, 2)
    assert select_pair(items, min_margin=1.01, length_control=True) is None
    assert select_pair(items, min_margin=1.01, length_control=False) is None


def test_length_control_ties():
    # two not-longer candidates with the same margin: the smaller length ratio wins (20/40 < 20/30)
    items = [item(0, 1.0, "x" * 20), item(1, 0.0, "x" * 30), item(2, 0.0, "x" * 40)]
    chosen, rejected = select_pair(items, min_margin=0.0, length_control=True)
    assert (chosen.index, rejected.index) == (0, 2)
    # equal lengths are "not longer"
    items = [item(0, 1.0, "x" * 20), item(1, 0.5, "x" * 20), item(2, 0.0, "x" * 10)]
    chosen, rejected = select_pair(items, min_margin=0.0, length_control=True)
    assert (chosen.index, rejected.index) == (0, 1)
    # every candidate's chosen longer, equal ratios (40/20): the larger margin
    items = [item(0, 1.0, "x" * 40), item(1, 0.3, "x" * 20), item(2, 0.0, "x" * 20)]
    chosen, rejected = select_pair(items, min_margin=0.5, length_control=True)
    assert (chosen.index, rejected.index) == (0, 2)


def test_no_length_control_ties_go_to_input_order_and_equal_rewards_give_no_pair():
    items = [item(0, 1.0, "a"), item(1, 1.0, "b"), item(2, 0.0, "c"), item(3, 0.0, "d")]
    chosen, rejected = select_pair(items, min_margin=0.0, length_control=False)
    assert (chosen.index, rejected.index) == (0, 2)
    same = [item(0, 0.5, "a"), item(1, 0.5, "bb")]
    assert select_pair(same, min_margin=0.0, length_control=False) is None
    assert select_pair(same, min_margin=0.0, length_control=True) is None
    assert select_pair([item(0, 1.0, "a")], min_margin=0.0, length_control=True) is None


# -- build_pairs ----------------------------------------------------------------------------
def test_build_pairs_counts_and_format():
    scored = [
        rec("g1", "<answer>right</answer>", 1.0, prompt=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]),
        rec("g1", "<answer>a long wrong answer</answer>", 0.0, prompt=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]),
        rec("g1", "broken", None, status=Status.ERROR, prompt=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]),
        rec("g2", "<answer>only usable one</answer>", 1.0),
        rec("g2", "timed out", None, status=Status.TIMEOUT),
        rec("g3", "same", 0.5),
        rec("g3", "same too", 0.5),
        rec("g4", "a", 1.0, prompt="one prompt"),
        rec("g4", "b", 0.0, prompt="another prompt"),
        rec("g5", "n/a", None, status=Status.NOT_APPLICABLE),
        BadRecord(7, "garbage", "not JSON"),
    ]
    pairs, report = build_pairs(scored)
    assert report.records == 11
    assert report.excluded == {"error": 1, "timeout": 1, "not_applicable": 1, "unreadable": 1}
    assert report.groups == 4  # g5 had no usable record
    assert (report.singleton_groups, report.below_margin_groups, report.mixed_prompt_groups) == (1, 1, 1)
    assert report.pairs == 1 and len(pairs) == 1
    pair = pairs[0]
    assert pair["prompt"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert pair["chosen"] == [{"role": "assistant", "content": "<answer>right</answer>"}]
    assert pair["rejected"] == [{"role": "assistant", "content": "<answer>a long wrong answer</answer>"}]
    assert (pair["group"], pair["chosen_reward"], pair["rejected_reward"], pair["margin"]) == ("g1", 1.0, 0.0, 1.0)
    assert (pair["chosen_chars"], pair["rejected_chars"]) == (len("<answer>right</answer>"), len("<answer>a long wrong answer</answer>")) == (22, 36)
    assert report.chosen_longer == 0 and report.fraction_chosen_longer == 0.0
    assert report.mean_length_difference == -14
    assert json.loads(json.dumps(report.to_dict()))["fraction_chosen_longer"] == 0.0


def test_plain_prompts_and_conversational_completions():
    scored = [
        rec("g", [{"role": "assistant", "content": "good"}], 1.0, prompt="What?"),
        rec("g", [{"role": "assistant", "content": "bad answer"}], 0.2, prompt="What?"),
    ]
    [pair], _ = build_pairs(scored)
    assert pair["prompt"] == [{"role": "user", "content": "What?"}]
    assert pair["chosen"] == [{"role": "assistant", "content": "good"}]
    assert pair["margin"] == pytest.approx(0.8)


def test_group_key_field_and_prompt_fallback():
    scored = [
        rec(None, "a", 1.0, prompt="P1", case_id="c1"),
        rec(None, "bb", 0.0, prompt="P1", case_id="c1"),
        rec(None, "c", 1.0, prompt="P2"),  # no case_id: grouped by its prompt
        rec(None, "dd", 0.0, prompt="P2"),
    ]
    pairs, report = build_pairs(scored, group_key="case_id")
    assert report.groups == 2 and report.pairs == 2
    assert pairs[0]["group"] == "c1" and pairs[1]["group"] != "c1"
    # by the default key (absent here) both groups come from the prompts
    assert build_pairs(scored)[1].groups == 2


def test_min_margin_and_validation():
    scored = [rec("g", "a", 0.7), rec("g", "bb", 0.4), rec("h", "a", 1.0), rec("h", "bb", 0.0)]
    assert build_pairs(scored, min_margin=0.3)[1].pairs == 2
    _, report = build_pairs(scored, min_margin=0.31)
    assert report.pairs == 1 and report.below_margin_groups == 1
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError):
            build_pairs(scored, min_margin=bad)
    assert build_pairs([])[1] == PairsReport()


def test_length_control_lowers_the_share_of_longer_chosen():
    """Groups where a longer answer tends to score higher: without control most chosen are longer."""
    import random

    rng = random.Random(0)
    scored = []
    for g in range(200):
        for _ in range(6):
            length = rng.randint(5, 200)
            reward = min(1.0, max(0.0, length / 200 + rng.gauss(0, 0.3)))
            scored.append(rec(f"g{g}", "x" * length, reward))
    _, plain = build_pairs(scored, length_control=False)
    _, controlled = build_pairs(scored, length_control=True)
    assert plain.pairs == controlled.pairs == 200
    assert plain.fraction_chosen_longer > 0.8
    assert controlled.fraction_chosen_longer < 0.2
    assert controlled.mean_length_difference < 0 < plain.mean_length_difference
    assert controlled.mean_margin <= plain.mean_margin  # the price: smaller margins


# -- TRL consumes the file ------------------------------------------------------------------
def _tiny_policy(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
    from tiny_policy import save_tiny_policy

    return save_tiny_policy(folder)


def _rollouts(path: Path) -> None:
    rows = []
    for g in range(3):
        completions = [
            "<think>miosis</think><answer>opioids</answer>",
            "<think>a long and rambling list of every possibility</think><answer>opioids, ethanol, cannabinoids</answer>",
            "<answer>none</answer>",
        ]
        for j, text in enumerate(completions):
            rows.append({"id": f"{g}-{j}", "group": f"g{g}", "prompt": [{"role": "user", "content": f"Case {g}: pinpoint pupils."}],
                         "completion": text, "reference": {"substances": ["opioids"]}})
    rows.append({"id": "solo", "group": "solo", "prompt": "x", "completion": "<answer>opioids</answer>", "reference": {"substances": ["opioids"]}})
    rows.append({"id": "nr", "group": "g0", "prompt": [{"role": "user", "content": "Case 0: pinpoint pupils."}], "completion": "x", "reference": {}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    from cli_runner import run_all  # tests/support

    folder = tmp_path_factory.mktemp("pairs")
    _rollouts(folder / "rollouts.jsonl")
    results = run_all({
        "pairs": ("pairs", "rollouts.jsonl", "-s", "toxicology", "-o", "pairs.jsonl", "--json"),
        "plain": ("pairs", "rollouts.jsonl", "-s", "toxicology", "-o", "plain.jsonl", "--no-length-control", "--min-margin", "0.5"),
    }, folder)  # fmt: skip
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
    return folder, results


def test_cli_pairs_writes_pairs_and_reports(pairs_file):
    folder, results = pairs_file
    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
    summary = json.loads(results["pairs"].stdout)
    assert summary["pairs"] == 3 == len(pairs)
    assert summary["excluded"] == {"error": 1, "not_applicable": 1} and summary["singleton_groups"] == 1
    assert summary["fraction_chosen_longer"] == 0.0 and summary["mean_length_difference"] < 0
    # length control: the short right answer vs the long hedging one (not the short untagged "none")
    assert all("rambling" in p["rejected"][0]["content"] and "miosis" in p["chosen"][0]["content"] for p in pairs)
    plain = [json.loads(line) for line in (folder / "plain.jsonl").read_text().splitlines()]
    assert len(plain) == 3 and all(p["rejected"][0]["content"] == "<answer>none</answer>" and p["margin"] == 1.0 for p in plain)
    assert "chosen longer than rejected" in results["plain"].stdout and "100.0%" in results["plain"].stdout


@pytest.mark.train
@pytest.mark.slow
def test_trl_reads_the_pairs_and_trains_one_dpo_step(pairs_file, tmp_path):
    pytest.importorskip("trl")
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    from trl.data_utils import is_conversational

    folder, _ = pairs_file
    dataset = load_dataset("json", data_files=str(folder / "pairs.jsonl"), split="train")
    assert all(is_conversational(example) for example in dataset)
    model_dir = _tiny_policy(tmp_path / "policy")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=2, report_to=[], save_strategy="no",
        use_cpu=True, max_length=512, logging_steps=1,
    )  # fmt: skip
    trainer = DPOTrainer(model=str(model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)
    first = trainer.train_dataset[0]
    assert tokenizer.decode(first["prompt_ids"]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(first["chosen_ids"]).startswith("<think>miosis</think><answer>opioids</answer><|im_end|>")
    assert "rambling" in tokenizer.decode(first["rejected_ids"])
    result = trainer.train()
    assert result.global_step == 1
    assert result.training_loss == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 0: -log σ(0)


def test_cli_pairs_bad_input(tmp_path):
    from typer.testing import CliRunner

    from medreward.cli.app import app

    _rollouts(tmp_path / "r.jsonl")
    cases = {
        "missing": (["pairs", str(tmp_path / "nope.jsonl"), "-s", "toxicology", "-o", str(tmp_path / "o.jsonl")], "does not exist"),
        "spec": (["pairs", str(tmp_path / "r.jsonl"), "-s", "nosuch-spec", "-o", str(tmp_path / "o.jsonl")], "nosuch-spec"),
        "suffix": (["pairs", str(tmp_path / "r.jsonl"), "-s", "toxicology", "-o", str(tmp_path / "o.parquet")], "JSONL"),
        "margin": (["pairs", str(tmp_path / "r.jsonl"), "-s", "toxicology", "-o", str(tmp_path / "o.jsonl"), "--min-margin", "-1"], ">= 0"),
        "folder": (["pairs", str(tmp_path / "r.jsonl"), "-s", "toxicology", "-o", str(tmp_path / "no" / "o.jsonl")], "does not exist"),
    }  # fmt: skip
    for name, (args, message) in cases.items():
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (name, result.output, result.exception)
        assert message in " ".join(result.output.split()), (name, result.output)
    assert not (tmp_path / "o.jsonl").exists()
