"""SFT cold-start data: the reference is the answer, the reasoning is true to the case, and every
example earns the full reward of its task's preset."""

from __future__ import annotations

import importlib

import pytest

from medreward.baselines.toxicology import toxidrome_evidence
from medreward.errors import InputError
from medreward.runner import Scorer
from medreward.tasks import get_task
from medreward.tasks.calculators import CALCULATORS, _as_medcalc
from medreward.tasks.toxicology import observed_findings
from medreward.training.sft_data import build_sft_examples, generate_cases, reasoning, sft_completion, sft_example

TASKS = ("toxicology", "calculator", "mcq", "icd_coding")


@pytest.mark.parametrize("task", TASKS)
def test_every_example_earns_the_full_reward_of_its_preset(task):
    cases = get_task(task).generate(12, 3)
    records = [{**c, "completion": sft_completion(c)} for c in cases]
    scored = Scorer(get_task(task).preset).score(records)
    assert [s.status.value for s in scored] == ["ok"] * len(cases)
    assert [s.reward for s in scored] == pytest.approx([1.0] * len(cases))


def test_toxicology_answer_is_the_reference_and_reasoning_cites_the_evidence():
    for case in get_task("toxicology").generate(20, 7):
        text, answer = reasoning(case)
        truth = case["reference"]["substances"]
        if truth:
            assert sorted(answer.split(", ")) == sorted(truth)
        else:
            assert answer == "none"
        evidence = toxidrome_evidence(observed_findings(case["case"]))
        for cls in truth:
            assert text.count(f"{cls}:") >= 1
            for reason in evidence[cls].reasons[:4]:
                assert reason in text
        if not truth:
            assert "do not point to an intoxicant" in text


def test_toxicology_history_mentions_outside_the_reference_are_called_unsupported():
    case = {"id": "x", "task": "toxicology", "reference": {"substances": ["ethanol"]},
            "case": {"history": [{"stance": "found", "mentions": ["Lanoxin"]}]}}
    text, answer = reasoning(case)
    assert answer == "ethanol"
    assert "mentions cardiovascular, but the findings do not support it" in text


def test_calculator_reasoning_is_medcalc_explanation():
    for case in get_task("calculator").generate(10, 1):
        calc = CALCULATORS[case["case"]["calculator"]]
        raw = getattr(importlib.import_module(f"medcalc.{calc.module}"), calc.function)(_as_medcalc(case["case"]["params"]))
        text, answer = reasoning(case)
        ref = case["reference"]
        assert answer.split()[0] == (str(int(ref["value"])) if float(ref["value"]).is_integer() else f"{ref['value']:g}")
        if isinstance(raw, dict) and raw.get("Explanation") and len(raw["Explanation"]) < 1400:
            assert " ".join(text.split()) == " ".join(raw["Explanation"].split())


def test_mcq_and_icd_templates():
    mcq = get_task("mcq").generate(1, 2)[0]
    text, letter = reasoning(mcq)
    assert letter == mcq["reference"]["answer"]
    assert mcq["reference"]["options"][letter] in text
    icd = get_task("icd_coding").generate(1, 2)[0]
    text, codes = reasoning(icd)
    assert codes == ", ".join(icd["reference"]["codes"])
    for title, code in zip(icd["case"]["titles"], icd["reference"]["codes"]):
        assert f"{title}: {code}." in text


def test_example_is_chat_prompt_completion():
    case = get_task("mcq").generate(1, 0)[0]
    example = sft_example(case)
    assert example["prompt"] == case["prompt"]
    assert example["completion"] == [{"role": "assistant", "content": sft_completion(case)}]
    assert example["completion"][0]["content"].startswith("<think>")
    assert example["completion"][0]["content"].endswith(f"<answer>{case['reference']['answer']}</answer>")


def test_cases_without_reference_or_unknown_task_are_refused():
    with pytest.raises(InputError, match="has no reference"):
        sft_example({"id": "a", "task": "toxicology", "prompt": "p"})
    with pytest.raises(InputError, match="needs 'substances'"):
        sft_example({"id": "a", "task": "toxicology", "prompt": "p", "reference": {"answer": "A"}})
    with pytest.raises(InputError, match="no SFT template for task 'radiology'"):
        sft_example({"id": "a", "task": "radiology", "prompt": "p", "reference": {"x": 1}})
    with pytest.raises(InputError, match="no cases"):
        build_sft_examples([])


def test_generate_cases_splits_evenly_and_shuffle_is_seeded():
    cases = generate_cases(["mcq", "toxicology"], 5, 0)
    assert [c["task"] for c in cases].count("mcq") == 3
    assert [c["task"] for c in cases].count("toxicology") == 2
    a = [e["id"] for e in build_sft_examples(cases, shuffle_seed=1)]
    b = [e["id"] for e in build_sft_examples(cases, shuffle_seed=1)]
    assert a == b and sorted(a) == sorted(c["id"] for c in cases)
