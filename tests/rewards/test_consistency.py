"""``consistency``: the reasoning's conclusion agrees with the answer (choice / number / labels),
the missing-conclusion policy, use as a gate, and the CLI."""

from __future__ import annotations

import json
import pickle

import pytest
from cli_runner import run_all

from medreward.errors import SpecError
from medreward.records import Rollout, Status
from medreward.rewards.consistency import Consistency
from medreward.runner.scorer import Scorer


def _one(component, completion):
    return component.score_one(Rollout(completion=completion))


@pytest.mark.parametrize(
    ("completion", "value"),
    [
        ("<think>A is wrong; B fits best, so the answer is B.</think><answer>B</answer>", 1.0),
        ("<think>Options (A) and (C) fail. Final answer: (B)</think><answer>**B**</answer>", 1.0),
        ("<think>Therefore the answer is (C).</think><answer>A</answer>", 0.0),
        ("the answer is D.</think><answer>D</answer>", 1.0),  # the template opened <think>
    ],
)
def test_choice(completion, value):
    score = _one(Consistency(), completion)
    assert score.value == value and score.info["consistent"] is (value == 1.0)


def test_choice_info_names_both_sides():
    score = _one(Consistency(), "<think>Therefore the answer is (C).</think><answer>A</answer>")
    assert (score.info["conclusion"], score.info["answer"]) == ("C", "A")
    assert score.info["reason"] == "the answer differs from the reasoning's conclusion"


@pytest.mark.parametrize(
    ("completion", "params", "value"),
    [
        ("<think>CrCl = 70.7 mL/min</think><answer>70.7 mL/min</answer>", {}, 1.0),
        ("<think>CrCl = 70.7 mL/min</think><answer>71 mL/min</answer>", {}, 0.0),  # exact by default
        ("<think>CrCl = 70.7 mL/min</think><answer>71 mL/min</answer>", {"rel_tol": 0.01}, 1.0),  # |0.3| ≤ 0.71
        ("<think>CrCl = 70.7 mL/min</think><answer>71 mL/min</answer>", {"abs_tol": 0.2}, 0.0),  # |0.3| > 0.2
        ("<think>so the dose is 500 mg</think><answer>0.5 g</answer>", {}, 1.0),  # converted
        ("<think>so the dose is 500 mg</think><answer>500 mL</answer>", {}, 0.0),  # another dimension
        ("<think>the score is 3 (range 0-9)</think><answer>3</answer>", {}, 1.0),
    ],
)
def test_number(completion, params, value):
    assert _one(Consistency(compare="number", **params), completion).value == value


@pytest.mark.parametrize(
    ("reasoning", "answer", "value"),
    [
        ("Pinpoint pupils. Benzos possible. So: opioids and ethanol, not benzodiazepines.", "opioids, ethanol", 1.0),
        ("Pinpoint pupils suggest opioids.", "opioids, ethanol", 0.0),
        ("Heroin and alcohol on board.\nThe pupils fit.", "opioids, ethanol", 1.0),  # last sentence with a term
        ("Consider opioids. Final: Tylenol overdose.", "acetaminophen", 1.0),  # members map to class ids
        ("Final: opioids.", "opioids, unicorn dust", 0.0),  # an unknown label never agrees
        ("No opioids or benzodiazepines on board.", "none", 1.0),  # only negated terms: the empty set
        ("No opioids. Benzodiazepines fit.", "none", 0.0),
    ],
)
def test_labels(reasoning, answer, value):
    component = Consistency(compare="labels", vocabulary="toxicology")
    assert _one(component, f"<think>{reasoning}</think><answer>{answer}</answer>").value == value


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("<answer>B</answer>", "no <think> reasoning"),
        ("<think>Hard to say.</think><answer>B</answer>", "no option letter concluded in the reasoning"),
        ("<think>The answer is A or C.</think><answer>A</answer>", "ambiguous option letter concluded in the reasoning"),
        ("<think>The answer is B.</think>", "no <answer> section"),
        ("<think>The answer is B.</think><answer>metformin</answer>", "no option letter in the answer"),
    ],
)
def test_no_conclusion_scores_zero_or_not_applicable(completion, reason):
    zero = _one(Consistency(), completion)
    assert zero.value == 0.0 and zero.info["reason"] == reason
    skipped = _one(Consistency(missing="not_applicable"), completion)
    assert skipped.status is Status.NOT_APPLICABLE and skipped.info["reason"] == reason


def test_params_are_checked_at_load():
    with pytest.raises(SpecError, match="compare = 'labels' needs a vocabulary"):
        Consistency(compare="labels")
    with pytest.raises(SpecError, match=r"consistency\.params\.letters"):
        Consistency(letters="A1")
    with pytest.raises(SpecError, match=r"consistency\.params\.compare"):
        Consistency(compare="vibes")
    assert Consistency().reference_keys() == ()


def test_pickles():
    clone = pickle.loads(pickle.dumps(Consistency(compare="number", rel_tol=0.05)))
    assert clone(["<think>x = 10</think><answer>10.4</answer>"]) == [1.0]


def test_as_a_gate_it_floors_an_inconsistent_answer():
    spec = {
        "name": "mcq-consistent",
        "floor": -1.0,
        "components": [
            {"name": "accuracy", "kind": "choice"},
            {"name": "consistent", "kind": "consistency", "weight": 0.0, "gate": True, "gate_min": 1.0},
        ],
    }
    records = [
        {"completion": "<think>So the answer is C.</think><answer>C</answer>", "reference": {"answer": "C"}},
        {"completion": "<think>So the answer is B.</think><answer>C</answer>", "reference": {"answer": "C"}},
        {"completion": "<think>Unsure.</think><answer>C</answer>", "reference": {"answer": "C"}},  # no conclusion: 0
    ]
    scored = Scorer(spec, time_limit=None).score(records)
    assert [r.reward for r in scored] == [1.0, -1.0, -1.0]
    assert scored[1].info["gated_by"] == "consistent"


def test_through_medreward_score(tmp_path):
    spec = 'name = "cons"\n[[components]]\nname = "consistency"\nkind = "consistency"\nparams = { compare = "number", rel_tol = 0.05 }\n'
    rows = [
        {"completion": "<think>eGFR = 58 mL/min/1.73m²</think><answer>58</answer>"},
        {"completion": "<think>eGFR = 58</think><answer>90</answer>"},
        {"completion": "<answer>58</answer>"},
    ]
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_all({"score": ("score", "in.jsonl", "--spec", "spec.toml", "-o", "out.jsonl")}, tmp_path)["score"]
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert [r["reward"] for r in out] == [1.0, 0.0, 0.0]
    assert out[2]["info"]["consistency"]["reason"] == "no <think> reasoning"


OPTIONS = {"A": "Insulin", "B": "Metformin extended release", "C": "Metformin", "D": "Diet alone"}


@pytest.mark.parametrize(
    ("completion", "value", "conclusion"),
    [
        # an answer given as an option's text is that option, as the choice reward reads it
        ("<think>First-line is metformin, so the answer is C.</think><answer>Metformin</answer>", 1.0, "C"),
        ("<think>So the answer is Metformin.</think><answer>C</answer>", 1.0, "C"),  # named, not lettered
        ("<think>So the answer is metformin extended release.</think><answer>B</answer>", 1.0, "B"),
        ("<think>So the answer is insulin.</think><answer>Metformin</answer>", 0.0, "A"),
        ("<think>Insulin or diet alone.</think><answer>A</answer>", 0.0, None),  # two options named: no conclusion
        ("<think>So the answer is E.</think><answer>E</answer>", 0.0, None),  # E is not an option here
    ],
)  # fmt: skip
def test_choice_reads_the_reference_options(completion, value, conclusion):
    score = Consistency().score_one(Rollout(completion=completion, reference={"options": OPTIONS}))
    assert score.value == value and score.info.get("conclusion") == conclusion, score.info


def test_choice_with_malformed_options_is_a_record_error():
    (scored,) = Scorer({"name": "c", "components": [{"name": "c", "kind": "consistency"}]}).score(
        [{"completion": "<think>so B</think><answer>B</answer>", "reference": {"options": 7}}]
    )
    assert scored.status is Status.ERROR and "reference.options" in scored.info["c"]["error"]


@pytest.mark.parametrize(
    ("completion", "value"),
    [
        ("<think>No toxidrome fits. So the answer is none.</think><answer>none</answer>", 1.0),
        ("<think>Nothing was taken: no intoxicant</think><answer>none</answer>", 1.0),
        ("<think>Not opioids. So the answer is none.</think><answer>none</answer>", 1.0),
        ("<think>So the answer is none.</think><answer>opioids</answer>", 0.0),
        ("<think>None of the others fit; it is opioids.</think><answer>opioids</answer>", 1.0),
        ("<think>It is opioids, none else.</think><answer>none</answer>", 0.0),  # opioids asserted last
    ],
)
def test_labels_conclude_the_empty_set_with_a_no_answer_term(completion, value):
    score = _one(Consistency(compare="labels", vocabulary="toxicology"), completion)
    assert score.value == value, score.info
