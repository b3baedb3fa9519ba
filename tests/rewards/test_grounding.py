"""``grounding``: numbers with units (by value and unit), drugs (canonical ids) and ICD codes
(normalised) of the answer found in the context; hand-computed golden values; the CLI."""

from __future__ import annotations

import json
import pickle

import pytest
from cli_runner import run_all

from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards.grounding import Grounding

CONTEXT = "BP 120/80 mmHg; K 4.1 mmol/L; on metformin 500 mg twice daily; type 2 diabetes (E119)."


@pytest.fixture(scope="module")
def grounding():
    return Grounding()


def _score(component, answer, context=CONTEXT, prompt=""):
    reference = {} if context is None else {"context": context}
    return component.score_one(Rollout(prompt=prompt, completion=f"<answer>{answer}</answer>", reference=reference))


def test_fraction_of_supported_claims_by_hand(grounding):
    score = _score(grounding, "K is 4.1 mmol/L; metformin 0.5 g; add lisinopril 10 mg. Codes E11.9 and I10.")
    # numbers: 4.1 mmol/L ✓, 0.5 g ✓ (= 500 mg), 10 mg ✗; drugs: metformin ✓, lisinopril ✗; codes: E11.9 ✓, I10 ✗
    assert score.value == pytest.approx(4 / 7)
    assert score.info["n_claims"] == 7
    assert score.info["unsupported"] == [
        {"kind": "number", "text": "10 mg"},
        {"kind": "drug", "text": "lisinopril"},
        {"kind": "code", "text": "I10"},
    ]
    assert score.info["context"] == "reference.context"


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        ("500 mg", 1.0),
        ("500mg", 1.0),
        ("0.5 g", 1.0),
        ("500000 mcg", 1.0),
        ("500 mL", 0.0),  # another dimension
        ("501 mg", 0.0),
    ],
)
def test_numbers_compare_by_value_and_unit(answer, value):
    assert _score(Grounding(claims=["numbers"]), answer).value == value


def test_temperature_ranges_and_bare_numbers(grounding):
    assert _score(grounding, "T 98.6 °F", "Temp 37 °C").value == 1.0
    assert _score(grounding, "give 10-12 mg", "dose 10-12 mg").value == 1.0
    assert _score(grounding, "give 10-12 mg", "dose 10 mg").value == 0.0  # a range needs both ends
    assert _score(grounding, "give 10 mg", "dose 10-12 mg").value == 1.0  # an end of a context range
    assert _score(grounding, "give 5 mg", "dose 5").value == 0.0  # a unit-less context number supports nothing
    bare = _score(grounding, "take 2 daily", "take 2 daily")
    assert bare.status is Status.NOT_APPLICABLE and "no checkable claims" in bare.info["reason"]


def test_drugs_by_canonical_id_and_codes_normalised(grounding):
    assert _score(grounding, "Continue Coumadin.", "Home meds: warfarin.").value == 1.0
    assert _score(grounding, "Not on warfarin.", "No anticoagulants.").value == 0.0  # a negated mention is a claim
    assert _score(grounding, "Code: e11.9", "Dx E119").value == 1.0


def test_context_from_the_prompt_or_nowhere():
    score = _score(Grounding(), "warfarin 5 mg", None, prompt="Patient on warfarin 5mg.")
    assert score.value == 1.0 and score.info["context"] == "prompt"
    none = _score(Grounding(use_prompt=False), "warfarin 5 mg", None, prompt="Patient on warfarin 5mg.")
    assert none.status is Status.NOT_APPLICABLE and "no context" in none.info["reason"]
    listed = _score(Grounding(), "warfarin 5 mg", ["Meds: warfarin", "dose 5 mg"])
    assert listed.value == 1.0


def test_claim_kinds_param_and_missing_section():
    codes_only = _score(Grounding(claims=["codes"]), "lisinopril 10 mg for E11.9")
    assert codes_only.value == 1.0 and codes_only.info["n_claims"] == 1
    missing = Grounding().score_one(Rollout(completion="warfarin", reference={"context": CONTEXT}))
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"
    with pytest.raises(SpecError, match=r"grounding\.params\.claims"):
        Grounding(claims=["vitals"])


def test_bad_context_shape_names_the_field(grounding):
    with pytest.raises(RecordError, match=r"reference\.context must be a string or a list of strings, got dict"):
        _score(grounding, "warfarin", {"note": "warfarin"})


def test_pickles():
    clone = pickle.loads(pickle.dumps(Grounding(claims=["drugs"], context_field="note")))
    assert clone(["<answer>Coumadin</answer>"], [{"note": "warfarin"}]) == [1.0]


def test_through_medreward_score(tmp_path):
    spec = 'name = "ground"\n[[components]]\nname = "grounding"\nkind = "grounding"\n'
    rows = [
        {"completion": "<answer>metformin 0.5 g; lisinopril 10 mg</answer>", "reference": {"context": CONTEXT}},
        {"completion": "<answer>Rest.</answer>", "reference": {"context": CONTEXT}},
        {"completion": "<answer>metformin</answer>", "reference": {"context": 5}},
    ]
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_all({"score": ("score", "in.jsonl", "--spec", "spec.toml", "-o", "out.jsonl")}, tmp_path)["score"]
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert [r["status"] for r in out] == ["ok", "not_applicable", "error"]
    # 0.5 g ✓, 10 mg ✗, metformin ✓, lisinopril ✗
    assert out[0]["reward"] == 0.5
    assert "reference.context must be a string" in out[2]["info"]["error"]
