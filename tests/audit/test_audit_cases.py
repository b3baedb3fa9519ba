"""Audit cases: reading case files, generating cases, gold completions per task."""

from __future__ import annotations

import json

import pytest

from medreward.audit.cases import (
    format_number,
    generate_cases,
    gold_answer,
    gold_builders,
    gold_completion,
    load_cases,
    register_gold,
)
from medreward.errors import InputError
from medreward.runner import Scorer

TASKS = ("toxicology", "calculator", "icd_coding", "mcq")


@pytest.mark.parametrize("task", TASKS)
def test_gold_completions_score_full_reward_on_the_task_preset(task):
    cases = generate_cases(task, 40, seed=3)
    golds = [gold_completion(c) for c in cases]
    assert all(g is not None and g.startswith("<think>") and g.endswith("</answer>") for g in golds)
    scored = Scorer(task).score([{**c, "completion": g} for c, g in zip(cases, golds)])
    assert [r.reward for r in scored] == [1.0] * len(cases)


def test_gold_answers_are_written_from_the_reference():
    assert gold_answer({"task": "toxicology", "reference": {"substances": ["opioids", "ethanol"]}}) == "opioids, ethanol"
    assert gold_answer({"task": "toxicology", "reference": {"substances": []}}) == "none"
    assert gold_answer({"task": "calculator", "reference": {"value": 49.2, "unit": "mL/hr"}}) == "49.2 mL/hr"
    assert gold_answer({"task": "calculator", "reference": {"value": 3, "unit": None}}) == "3"
    assert gold_answer({"task": "icd_coding", "reference": {"codes": ["E11.9", "I10"]}}) == "E11.9, I10"
    assert gold_answer({"task": "icd_coding", "reference": {"codes": "E11.9; I10"}}) == "E11.9, I10"
    assert gold_answer({"task": "mcq", "reference": {"answer": "C", "options": {"A": "x", "C": "y"}}}) == "C"


def test_no_reference_no_gold():
    assert gold_completion({"task": "toxicology", "prompt": "p"}) is None
    assert gold_completion({"task": "toxicology", "reference": {}}) is None
    assert gold_completion({"task": "calculator", "reference": {"value": "high"}}) is None
    assert gold_completion({"task": "unknown-task", "reference": {"answer": "x"}}) is None


def test_a_given_gold_wins_over_the_reference():
    record = {"task": "mcq", "reference": {"answer": "C"}, "gold": "<answer>(C) because…</answer>"}
    assert gold_completion(record) == "<answer>(C) because…</answer>"
    assert gold_completion({"gold": "free text gold"}) == "free text gold"
    # a blank gold is no gold
    assert gold_completion({"task": "mcq", "reference": {"answer": "B"}, "gold": "  "}).endswith("<answer>B</answer>")


def test_register_gold_for_a_new_task_and_refuse_a_second_builder(monkeypatch):
    from medreward.audit import cases as module

    monkeypatch.setattr(module, "_BUILDERS", dict(module._BUILDERS))  # the test's builder vanishes after it

    @register_gold("audit-test-task", reasoning="Looking it up.")
    def builder(reference):
        return reference.get("answer")

    assert gold_completion({"task": "audit-test-task", "reference": {"answer": "42"}}) == (
        "<think>Looking it up.</think>\n<answer>42</answer>"
    )
    assert "audit-test-task" in gold_builders()
    with pytest.raises(TypeError, match="registered twice"):
        register_gold("audit-test-task")(lambda reference: "other")


def test_format_number():
    assert format_number(49.2) == "49.2"
    assert format_number(3.0) == "3"
    assert format_number(1.23456789) == "1.23457"
    assert format_number(0.00001234) == "0.00001234"
    assert float(format_number(123456789.5)) == pytest.approx(123456789.5, rel=1e-6)


def test_generate_cases_is_deterministic():
    assert generate_cases("mcq", 5, seed=1) == generate_cases("mcq", 5, seed=1)
    assert generate_cases("mcq", 5, seed=1) != generate_cases("mcq", 5, seed=2)


def test_load_cases_streams_jsonl_drops_completions_and_honours_limit(tmp_path):
    path = tmp_path / "cases.jsonl"
    rows = [{"id": str(i), "task": "mcq", "reference": {"answer": "A"}, "completion": "x"} for i in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cases = list(load_cases(path))
    assert [c["id"] for c in cases] == ["0", "1", "2", "3", "4"]
    assert all("completion" not in c for c in cases)
    assert [c["id"] for c in load_cases(path, limit=2)] == ["0", "1"]
    assert list(load_cases(path, limit=0)) == []


def test_load_cases_stops_reading_at_the_limit(tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text('{"id": "0"}\n{"id": "1"}\nnot json at all\n')
    assert [c["id"] for c in load_cases(path, limit=2)] == ["0", "1"]


def test_load_cases_parquet(tmp_path):
    from medreward.io import open_writer

    path = tmp_path / "cases.parquet"
    cases = generate_cases("calculator", 3, seed=0)
    with open_writer(path) as writer:
        for c in cases:
            writer.write({k: v for k, v in c.items() if k != "case"})
    loaded = list(load_cases(path))
    assert [c["reference"]["value"] for c in loaded] == [c["reference"]["value"] for c in cases]


def test_load_cases_bad_input(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(load_cases(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "0"}\n{broken\n')
    with pytest.raises(InputError, match="line 2"):
        list(load_cases(bad))
    with pytest.raises(InputError, match="limit"):
        list(load_cases(bad, limit=-1))
