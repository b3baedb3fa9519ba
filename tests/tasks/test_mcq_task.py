"""MCQ loaders (MedQA, MedMCQA, generic, HealthBench layouts; malformed lines) and the offline
MCQ generator (determinism, balanced letters, correct keys, plausible distractors, bad input)."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from medreward.errors import InputError, MedrewardError
from medreward.runner import Scorer
from medreward.tasks import get_task
from medreward.tasks.icd_coding import icd
from medreward.tasks.mcq import (
    LineProblem,
    McqConfig,
    drug_classes,
    generate_mcq,
    load_mcq,
)


def _write(path, lines: list) -> str:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return str(path)


MEDQA = {
    "question": "A 23-year-old woman has dysuria. Which is the best treatment?",
    "answer": "Nitrofurantoin",
    "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
    "meta_info": "step2&3",
    "answer_idx": "D",
}
MEDMCQA = {"id": "m1", "question": "Drug of choice for absence seizures?", "opa": "Phenytoin", "opb": "Ethosuximide",
           "opc": "Carbamazepine", "opd": "Phenobarbital", "cop": 2, "choice_type": "single",
           "exp": "Ethosuximide.", "subject_name": "Pharmacology", "topic_name": None}  # fmt: skip


# -- loaders ------------------------------------------------------------------------------------
def test_medqa_round_trip_with_malformed_lines(tmp_path):
    no_answer = {k: v for k, v in MEDQA.items() if k not in ("answer", "answer_idx")}
    disagree = dict(MEDQA, answer_idx="A")
    text_only = {k: v for k, v in MEDQA.items() if k != "answer_idx"}
    path = _write(tmp_path / "medqa.jsonl", [MEDQA, "{not json", "", no_answer, text_only, disagree, "[1, 2]"])
    result = load_mcq(path)
    assert [c["reference"]["answer"] for c in result.cases] == ["D", "D"]
    assert result.cases[0]["reference"]["options"] == MEDQA["options"]
    assert result.cases[0]["case"]["meta_info"] == "step2&3" and result.cases[0]["task"] == "mcq"
    assert [p.line for p in result.problems] == [2, 4, 6, 7]
    assert "invalid JSON" in result.problems[0].message and "no answer" in result.problems[1].message
    assert "disagrees" in result.problems[2].message and "JSON object" in result.problems[3].message
    assert isinstance(result.problems[0], LineProblem) and str(result.problems[0]).startswith("line 2:")
    assert result.layouts == {"medqa": 2} and not result.ok
    assert "D. Nitrofurantoin" in result.cases[0]["prompt"][1]["content"]


def test_medmcqa_one_based_original_release(tmp_path):
    lines = [MEDMCQA, dict(MEDMCQA, id="m2", cop=4), dict(MEDMCQA, id="m3", cop=-1), dict(MEDMCQA, id="m4", opb="")]
    result = load_mcq(_write(tmp_path / "train.jsonl", lines), layout="medmcqa")
    assert [(c["id"], c["reference"]["answer"]) for c in result.cases] == [("m1", "B"), ("m2", "D")]
    assert [p.line for p in result.problems] == [3, 4]
    assert "test split" in result.problems[0].message and "'opb'" in result.problems[1].message
    assert result.cases[0]["case"]["subject_name"] == "Pharmacology"
    assert result.notes == ["MedMCQA cop read as 1-based"]


def test_medmcqa_zero_based_hugging_face_copy(tmp_path):
    lines = [dict(MEDMCQA, cop=0), dict(MEDMCQA, id="m2", cop=1)]
    result = load_mcq(_write(tmp_path / "hf.jsonl", lines))
    assert [c["reference"]["answer"] for c in result.cases] == ["A", "B"]
    assert result.notes == ["MedMCQA cop read as 0-based"]
    explicit = load_mcq(_write(tmp_path / "hf2.jsonl", [dict(MEDMCQA, cop=1)]), cop_base=0)
    assert explicit.cases[0]["reference"]["answer"] == "B"


def test_medmcqa_ambiguous_and_mixed_cop_numbering(tmp_path):
    ambiguous = load_mcq(_write(tmp_path / "a.jsonl", [MEDMCQA]))
    assert ambiguous.cases[0]["reference"]["answer"] == "B" and "1-based" in ambiguous.notes[0]
    with pytest.raises(InputError, match="both 0 and 4"):
        load_mcq(_write(tmp_path / "b.jsonl", [dict(MEDMCQA, cop=0), dict(MEDMCQA, cop=4)]))


def test_generic_layout_letters_indexes_and_texts(tmp_path):
    lines = [
        {"id": "g1", "question": "Q1?", "options": ["x", "y", "z"], "answer": "c"},
        {"question": "Q2?", "options": ["x", "y", "z", "w"], "answer_idx": 1},
        {"question": "Q3?", "options": ["alpha", "beta"], "answer": "beta"},
        {"question": "Q4?", "options": ["x", "y"], "answer_idx": 5},
        {"question": "Q5?", "options": ["x"], "answer": "A"},
        {"question": "", "options": ["x", "y"], "answer": "A"},
        {"foo": 1},
    ]
    result = load_mcq(_write(tmp_path / "generic.jsonl", lines))
    assert [(c["id"], c["reference"]["answer"]) for c in result.cases] == [("g1", "C"), ("generic-2", "B"), ("generic-3", "B")]
    assert result.cases[1]["reference"]["options"] == {"A": "x", "B": "y", "C": "z", "D": "w"}
    assert [p.line for p in result.problems] == [4, 5, 6, 7]
    assert "outside 0-1" in result.problems[0].message and "at least 2 options" in result.problems[1].message
    assert "unrecognised layout" in result.problems[3].message


def test_healthbench_layout_feeds_the_rubric_reward(tmp_path):
    item = {"prompt": [{"role": "user", "content": "I have chest pain, what should I do?"}],
            "rubrics": [{"criterion": "Advises emergency care", "points": 10, "tags": ["axis:accuracy"]},
                        {"criterion": "Gives a diagnosis with certainty", "points": -5, "tags": []}],
            "example_tags": ["theme:emergency_referrals"], "prompt_id": "hb-1", "canary": "x"}  # fmt: skip
    bad = dict(item, rubrics=[{"criterion": "x", "points": "ten"}])
    result = load_mcq(_write(tmp_path / "hb.jsonl", [item, bad]))
    [case] = result.cases
    assert case["id"] == "hb-1" and case["task"] == "healthbench"
    assert case["reference"] == {"rubric": item["rubrics"]}  # what the rubric component reads
    assert case["prompt"] == item["prompt"] and case["case"]["example_tags"] == ["theme:emergency_referrals"]
    assert case["case"]["extra"] == {"canary": "x"}
    assert result.problems == [LineProblem(2, "healthbench: rubric 0 must have numeric 'points', got 'ten'")]


def test_gzip_utf8_errors_and_missing_file(tmp_path):
    path = tmp_path / "q.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write((json.dumps(MEDQA) + "\n").encode() + b"\xff\xfe\n")
    result = load_mcq(path)
    assert len(result.cases) == 1 and result.problems[0].line == 2 and "UTF-8" in result.problems[0].message
    with pytest.raises(InputError, match="no such file"):
        load_mcq(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="unknown MCQ layout"):
        load_mcq(path, layout="usmle")


def test_loaded_cases_score_with_the_mcq_preset(tmp_path):
    result = load_mcq(_write(tmp_path / "mix.jsonl", [MEDQA, MEDMCQA]))
    rollouts = [dict(c, completion=f"<think>…</think><answer>{c['reference']['answer']}</answer>") for c in result.cases]
    wrong = [dict(c, completion="<think>…</think><answer>A</answer>") for c in result.cases]
    scored = Scorer("mcq").score(rollouts + wrong)
    assert [s.reward for s in scored] == [1.0, 1.0, 0.1, 0.1]


# -- generator ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated() -> list[dict]:
    return generate_mcq(300, seed=17)


def _dump(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def test_generator_is_deterministic(generated):
    assert _dump(generated) == _dump(generate_mcq(300, seed=17))
    assert _dump(generated[:50]) != _dump(generate_mcq(50, seed=18))
    assert generate_mcq(12, seed=17) == generated[:12]
    assert get_task("mcq").preset == "mcq"


def test_correct_letters_are_exactly_balanced(generated):
    letters = [c["reference"]["answer"] for c in generated]
    for start in range(0, 300, 5):
        assert sorted(letters[start : start + 5]) == list("ABCDE")
    four = generate_mcq(40, seed=1, config=McqConfig(n_options=4))
    assert Counter(c["reference"]["answer"] for c in four) == {"A": 10, "B": 10, "C": 10, "D": 10}
    assert all(len(c["reference"]["options"]) == 4 for c in four)


def test_answer_keys_are_right_and_distractors_wrong(generated):
    dc = drug_classes()
    cm = icd()
    kinds = Counter()
    for case in generated:
        info, options = case["case"], case["reference"]["options"]
        correct = options[case["reference"]["answer"]]
        assert len(set(options.values())) == len(options) == 5
        kinds[info["kind"]] += 1
        if info["kind"] == "drug_class":
            assert info["drug"] in info["question"] and correct == dc.names[info["class"]]
            assert info["drug"] in dc.members[info["class"]]
        elif info["kind"] == "class_member":
            assert correct == info["drug"] in dc.members[info["class"]]
            for text in options.values():
                if text != correct:  # every distractor is a member of another class
                    assert text not in dc.members[info["class"]]
                    assert any(text in m for c, m in dc.members.items() if c != info["class"])
        else:
            chapter = cm.get_ancestors(info["code"])[-1]
            assert chapter == info["chapter"]
            assert correct == cm.get_description(chapter).rsplit(" (", 1)[0]
            assert all("(" not in t or not t.endswith(")") for t in options.values())  # no code ranges
    assert set(kinds) == {"drug_class", "class_member", "icd_chapter"}


def test_drug_vocabulary_keeps_generic_names_only():
    dc = drug_classes()
    assert "lorazepam" in dc.members["benzodiazepines"] and "morphine" in dc.members["opioids"]
    every = {d for members in dc.members.values() for d in members}
    assert not {"smack", "weed", "Xanax", "molly", "coke"} & every
    assert dc.members["ethanol"] == ()  # beer and wine are not drugs: the class is only a distractor


@pytest.mark.parametrize("n", [0, -2])
def test_non_positive_n_is_a_clear_error(n):
    with pytest.raises(MedrewardError, match="positive number of cases"):
        generate_mcq(n, seed=0)


def test_bad_config_is_a_clear_error():
    with pytest.raises(MedrewardError, match="n_options"):
        McqConfig(n_options=3)
    with pytest.raises(MedrewardError, match="kinds"):
        McqConfig(kinds={"trivia": 1.0})
