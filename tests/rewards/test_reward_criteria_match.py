"""``criteria_match``: hand-computed accuracy / macro-F1 / evidence F1, equality with
scikit-learn's f1_score, missing and extra criteria, reference shapes and their errors."""

from __future__ import annotations

import doctest
import pickle

import numpy as np
import pytest

from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import criteria_match as module
from medreward.rewards.base import component_class
from medreward.rewards.criteria_match import CriteriaMatch, macro_f1

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def score(component, completion, reference):
    return component.score_one(Rollout(completion=completion, reference=reference))


def test_doctests():
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_registered_and_picklable():
    assert component_class("criteria_match") is CriteriaMatch
    comp = CriteriaMatch(metric="macro_f1", field="crit")
    assert pickle.loads(pickle.dumps(comp)).params == comp.params
    assert comp.reference_keys() == ("crit", "evidence")


def test_macro_f1_equals_scikit_learn():
    rng = np.random.default_rng(0)
    labels = ["met", "not_met", "unknown"]
    for _ in range(60):
        n = int(rng.integers(1, 9))
        truth = [labels[i] for i in rng.integers(0, 3, size=n)]
        pred = [None if i == 3 else labels[i] for i in rng.integers(0, 4, size=n)]
        seen = sorted(set(truth) | {p for p in pred if p is not None})
        expected = sklearn_metrics.f1_score(truth, ["missing" if p is None else p for p in pred], labels=seen, average="macro")
        assert macro_f1(truth, pred) == pytest.approx(expected, abs=1e-12)


def test_hand_computed_with_a_missing_and_an_extra_criterion():
    ref = {"criteria": {"C1": "met", "C2": "not_met", "C3": "unknown", "C4": "met"}}
    out = score(CriteriaMatch(metric="macro_f1"), "<answer>C1: met\nC2: met\nC3: unknown\nC9: met</answer>", ref)
    # met: TP 1 (C1), FP 1 (C2), FN 1 (C4 missing) -> 1/2; not_met: TP 0, FN 1 -> 0; unknown: 1
    assert out.value == pytest.approx((0.5 + 0 + 1) / 3)
    info = out.info
    assert info["accuracy"] == 0.5 and info["missing"] == ["c4"] and info["wrong"] == ["c2"]
    assert info["extra"] == ["c9"] and info["labels"] == {"c1": "met", "c2": "met", "c3": "unknown", "c4": None}
    assert "evidence_f1" not in info and info["format"] == "lines"


def test_unreadable_label_counts_as_wrong():
    out = score(CriteriaMatch(), "<answer>C1: probably\nC2: met</answer>", {"criteria": {"C1": "met", "C2": "met"}})
    assert out.value == 0.5 and out.info["unreadable"] == ["c1"] and out.info["labels"]["c1"] is None


def test_evidence_f1_from_list_reference_and_json_answer():
    ref = {"criteria": [{"id": "S1", "label": "met", "evidence": [2, 5]}, {"id": "S2", "label": "not met", "evidence": ["7"]}]}
    answer = '<answer>[{"id": "s1", "label": "met", "evidence": [2]}, {"id": "S2", "label": "not_met", "evidence": [7, 8]}]</answer>'
    out = score(CriteriaMatch(metric="evidence_f1"), answer, ref)
    assert out.value == pytest.approx(2 * 2 / (3 + 3))  # P = {2, 7, 8}, T = {2, 5, 7}
    assert out.info["accuracy"] == 1.0 and out.info["macro_f1"] == 1.0


def test_evidence_field_and_empty_evidence():
    comp = CriteriaMatch(metric="evidence_f1")
    assert score(comp, "<answer>S: met</answer>", {"criteria": {"S": "met"}, "evidence": []}).value == 1.0
    assert score(comp, "<answer>S: met\nEvidence: 4</answer>", {"criteria": {"S": "met"}, "evidence": []}).value == 0.0
    na = score(comp, "<answer>S: met</answer>", {"criteria": {"S": "met"}})
    assert na.status is Status.NOT_APPLICABLE and "no evidence" in na.info["reason"]


def test_answers_that_state_nothing_score_zero_with_reason():
    comp = CriteriaMatch(metric="evidence_f1")
    ref = {"criteria": {"S": "met"}, "evidence": []}
    out = score(comp, "<answer>I am not sure.</answer>", ref)
    assert out.value == 0.0 and out.info["evidence_f1"] == 0.0 and "no criterion labels" in out.info["reason"]
    missing = score(CriteriaMatch(), "S: met", {"criteria": {"S": "met"}})
    assert missing.value == 0.0 and "no <answer> section" in missing.info["reason"]


def test_reference_as_json_string():
    assert score(CriteriaMatch(), "<answer>C1: met</answer>", {"criteria": '{"C1": "MET"}'}).value == 1.0


def test_missing_or_empty_reference_is_not_applicable():
    assert score(CriteriaMatch(), "<answer>C1: met</answer>", {}).status is Status.NOT_APPLICABLE
    out = score(CriteriaMatch(), "<answer>C1: met</answer>", {"criteria": {}})
    assert out.status is Status.NOT_APPLICABLE and "no criteria" in out.info["reason"]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"criteria": 3}, "reference.criteria must be an object"),
        ({"criteria": {"C1": "maybe"}}, "reference.criteria.C1: label 'maybe' is not one of met, not_met, unknown"),
        ({"criteria": {"C1": True}}, "label True"),
        ({"criteria": [{"id": "C1"}]}, "reference.criteria[0] must be an object with 'id' and 'label'"),
        ({"criteria": [{"id": "C1", "label": "met"}, {"id": "c1", "label": "met"}]}, "appears twice"),
        ({"criteria": [{"id": None, "label": "met"}]}, "criterion id None"),
        ({"criteria": "not json"}, "is not JSON criteria"),
        ({"criteria": {"C1": {"label": "met", "evidence": {"x": 1}}}}, "reference.criteria.C1.evidence"),
        ({"criteria": {"C1": "met"}, "evidence": 5}, "reference.evidence must be a list of evidence ids"),
    ],
)
def test_bad_reference_names_the_field(reference, message):
    with pytest.raises(RecordError) as exc:
        score(CriteriaMatch(), "<answer>C1: met</answer>", reference)
    assert message in str(exc.value)


def test_bad_params_fail_at_load():
    with pytest.raises(SpecError, match="criteria_match.params.metric"):
        CriteriaMatch(metric="f1")


def test_through_medreward_score(tmp_path):
    import json

    from cli_runner import run_all

    ref = {"criteria": [{"id": "I1", "label": "met", "evidence": [2]}, {"id": "E1", "label": "not_met"}]}
    rows = [
        {"id": "a", "completion": '<answer>{"I1": {"label": "met", "evidence": [2]}, "E1": "not met"}</answer>', "reference": ref},
        {"id": "b", "completion": "<answer>I1: met</answer>", "reference": ref},
        {"id": "c", "completion": "<answer>I1: met</answer>", "reference": {"criteria": {"I1": "probably"}}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "spec.toml").write_text(
        'name = "prism"\n[[components]]\nname = "labels"\nkind = "criteria_match"\nweight = 0.7\n'
        '[[components]]\nname = "evidence"\nkind = "criteria_match"\nweight = 0.3\nparams = { metric = "evidence_f1" }\n',
        encoding="utf-8",
    )
    run = run_all({"r": ("score", "in.jsonl", "-s", "spec.toml", "-q", "-o", "out.jsonl")}, tmp_path)["r"]
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["status"] for r in out] == ["ok", "ok", "error"]
    assert out[0]["reward"] == pytest.approx(1.0)
    assert out[1]["components"] == {"labels": 0.5, "evidence": 0.0} and out[1]["reward"] == pytest.approx(0.35)
    assert "label 'probably' is not one of met, not_met, unknown" in out[2]["info"]["error"]
