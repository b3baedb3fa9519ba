"""``entities``: set P/R/F1 of drug and vocabulary mentions (brand ↔ generic, negation-aware) and
strict / partial span F1, with hand-computed golden values (and nervaluate's where installed)."""

from __future__ import annotations

import json
import pickle

import pytest
from cli_runner import run_all

from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards.entities import ClinicalEntities, Span, prf, span_scores
from medreward.runner.scorer import Scorer


def _score(component, answer, reference, prompt=""):
    return component.score_one(Rollout(prompt=prompt, completion=f"<answer>{answer}</answer>", reference=reference))


@pytest.fixture(scope="module")
def drugs():
    return ClinicalEntities()


@pytest.mark.parametrize(
    ("answer", "truth", "value"),
    [
        ("Start Tylenol.", ["acetaminophen"], 1.0),  # brand in the answer, generic in the reference
        ("Start paracetamol.", ["Tylenol"], 1.0),  # and the other way round
        ("metformin and lisinopril", ["Glucophage"], 2 / 3),  # P={metformin, lisinopril}, T={metformin}
        ("Lantus at night, Zyrtec for the rash", ["insulin glargine", "cetirizine"], 1.0),
        ("Keep warm and rest.", [], 1.0),  # nothing to find, nothing claimed
        ("Keep warm and rest.", ["aspirin"], 0.0),
    ],
)
def test_set_f1_of_canonical_drugs(drugs, answer, truth, value):
    assert _score(drugs, answer, {"entities": truth}).value == pytest.approx(value)


@pytest.mark.parametrize(
    ("answer", "predicted", "negated"),
    [
        ("Patient denies taking metformin. Started on aspirin.", ["aspirin"], ["metformin"]),
        ("No aspirin; give clopidogrel.", ["clopidogrel"], ["aspirin"]),
        ("metformin was ruled out, insulin started", ["insulin"], ["metformin"]),
        ("aspirin and clopidogrel excluded; heparin", ["heparin"], ["aspirin", "clopidogrel"]),
        ("without warfarin or heparin", [], ["warfarin", "heparin"]),
        ("aspirin cannot be ruled out", ["aspirin"], []),  # a pseudo-trigger negates nothing
        ("negative for cocaine, positive for heroin", ["heroin"], ["cocaine"]),  # affirmation ends the scope
    ],
)
def test_negated_mentions_are_not_predictions(drugs, answer, predicted, negated):
    score = _score(drugs, answer, {"entities": ["metformin", "aspirin"]})
    assert score.info["predicted"] == predicted
    assert score.info["negated"] == negated


def test_negation_changes_the_score_by_hand(drugs):
    # T = {metformin, aspirin}; asserted P = {aspirin}: P = 1, R = 1/2, F1 = 2/3
    score = _score(drugs, "Patient denies taking metformin. Started on aspirin.", {"entities": ["metformin", "aspirin"]})
    assert (score.value, score.info["precision"], score.info["recall"]) == pytest.approx((2 / 3, 1.0, 0.5))
    assert score.info["missed"] == ["metformin"] and score.info["hallucinated"] == []


def test_metric_picks_precision_or_recall():
    answer, ref = "metformin, lisinopril and aspirin", {"entities": ["metformin", "insulin"]}
    # P = {metformin, lisinopril, aspirin}, T = {metformin, insulin}, m = 1
    assert _score(ClinicalEntities(metric="precision"), answer, ref).value == pytest.approx(1 / 3)
    assert _score(ClinicalEntities(metric="recall"), answer, ref).value == pytest.approx(1 / 2)
    assert _score(ClinicalEntities(), answer, ref).value == pytest.approx(2 / 5)


def test_vocabulary_terms_win_over_drug_names_and_are_negation_aware():
    tox = ClinicalEntities(vocabulary="toxicology")
    # heroin is a member of the opioids class, so the reference and the answer both read opioids
    # Zyrtec is an anticholinergic of the vocabulary; metformin is only a drug
    score = _score(tox, "Opioid overdose and ethanol; benzos ruled out; took metformin.", {"entities": ["heroin", "ethanol"]})
    assert score.info["predicted"] == ["opioids", "ethanol", "metformin"]
    assert score.info["negated"] == ["benzodiazepines"]
    assert score.value == pytest.approx(2 * 2 / (3 + 2))
    only_vocab = ClinicalEntities(vocabulary="toxicology", drugs=False)
    assert _score(only_vocab, "ethanol and metformin", {"entities": ["ethanol"]}).value == 1.0


def test_missing_field_empty_answer_and_missing_section(drugs):
    assert _score(drugs, "aspirin", {}).status is Status.NOT_APPLICABLE
    empty = _score(drugs, "  ", {"entities": []})
    assert empty.value == 0.0 and empty.info["reason"] == "empty answer"
    bare = drugs.score_one(Rollout(completion="aspirin", reference={"entities": ["aspirin"]}))
    assert bare.value == 0.0 and bare.info["reason"] == "no <answer> section"
    assert ClinicalEntities(answer_tag=None)(["aspirin"], [{"entities": "aspirin"}]) == [1.0]


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"entities": 5}, r"reference\.entities must be a list of entity names"),
        ({"entities": ["unicorn dust"]}, r"reference\.entities\[0\]: 'unicorn dust' is not a drug"),
        ({"entities": ["aspirin", None]}, r"reference\.entities\[1\] must be a non-empty entity name"),
        ({"entities": "[1, "}, r"reference\.entities: .* is not a JSON array"),
    ],
)
def test_bad_reference_shapes_name_the_field(drugs, reference, message):
    with pytest.raises(RecordError, match=message):
        _score(drugs, "aspirin", reference)


def test_params_are_checked_at_load():
    with pytest.raises(SpecError, match="mentions mode needs drugs"):
        ClinicalEntities(drugs=False)
    with pytest.raises(SpecError, match=r"entities\.params\.vocabulary"):
        ClinicalEntities(vocabulary="no_such_vocabulary")
    with pytest.raises(SpecError, match=r"entities\.params\.span_match"):
        ClinicalEntities(span_match="fuzzy")


def test_pickles_and_keeps_its_params():
    component = ClinicalEntities(vocabulary="toxicology", metric="recall")
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params
    assert clone(["<answer>ethanol</answer>"], [{"entities": ["ethanol", "cocaine"]}]) == [0.5]


# -- spans ----------------------------------------------------------------------------------------
TEXT = "Aspirin 81 mg daily; metformin 500 mg bid; stop warfarin."  # 57 characters
TRUE_SPANS = [{"start": 0, "end": 7, "label": "DRUG"}, {"start": 8, "end": 13, "label": "DOSE"},
              {"start": 21, "end": 30, "label": "DRUG"}]  # fmt: skip


def _spans_score(component, spans, reference=None):
    answer = spans if isinstance(spans, str) else json.dumps(spans)
    return _score(component, answer, {"entities": TRUE_SPANS, "text": TEXT} if reference is None else reference)


def test_span_f1_strict_and_partial_by_hand():
    pred = [{"start": 0, "end": 7, "label": "DRUG"}, {"start": 8, "end": 10, "label": "DOSE"},
            {"start": 49, "end": 57, "label": "DRUG"}]  # fmt: skip
    strict = _spans_score(ClinicalEntities(mode="spans"), pred)
    # strict: 1 exact of 3 predicted / 3 true → P = R = F1 = 1/3
    assert strict.value == pytest.approx(1 / 3)
    # partial: + the DOSE overlap → 2/3
    assert strict.info["partial"]["f1"] == pytest.approx(2 / 3)
    partial = _spans_score(ClinicalEntities(mode="spans", span_match="partial"), pred)
    assert partial.value == pytest.approx(2 / 3)
    # a label mismatch never counts, even on the exact span
    wrong_label = _spans_score(ClinicalEntities(mode="spans", span_match="partial"), [{"start": 0, "end": 7, "label": "DOSE"}])
    assert wrong_label.value == 0.0


def test_span_f1_matches_nervaluate():
    nervaluate = pytest.importorskip("nervaluate")
    true = [Span(0, 9, "DRUG"), Span(10, 15, "DOSE"), Span(30, 38, "DRUG"), Span(40, 44, "DOSE")]
    pred = [Span(0, 9, "DRUG"), Span(10, 13, "DOSE"), Span(40, 45, "DRUG"), Span(20, 25, "DOSE")]
    ours = span_scores(pred, true)
    as_dicts = [[{"label": s.label, "start": s.start, "end": s.end} for s in spans] for spans in (true, pred)]
    theirs = nervaluate.Evaluator([as_dicts[0]], [as_dicts[1]], tags=["DRUG", "DOSE"], loader="dict").evaluate()["overall"]
    assert ours["strict"] == pytest.approx((theirs["strict"].precision, theirs["strict"].recall, theirs["strict"].f1))
    assert ours["partial"] == pytest.approx((theirs["ent_type"].precision, theirs["ent_type"].recall, theirs["ent_type"].f1))


def test_malformed_span_items_count_as_wrong_predictions():
    score = _spans_score(ClinicalEntities(mode="spans"), [{"start": 0, "end": 7, "label": "DRUG"}, {"begin": 3}])
    # 2 predicted (one malformed), 3 true, 1 exact: P = 1/2, R = 1/3, F1 = 2/5
    assert score.value == pytest.approx(2 / 5)
    assert score.info["malformed"] == [1]
    assert score.info["strict"]["precision"] == pytest.approx(0.5)


def test_span_answers_in_other_layouts():
    spans = ClinicalEntities(mode="spans")
    fenced = "```json\n" + json.dumps({"entities": TRUE_SPANS}) + "\n```"
    assert _spans_score(spans, fenced).value == 1.0
    prose = _spans_score(spans, "Aspirin is a drug")
    assert prose.value == 0.0 and prose.info["reason"] == "the answer is not a JSON array of spans"
    assert _spans_score(spans, "[]", {"entities": [], "text": TEXT}).value == 1.0


def _record(answer, reference):
    return {"completion": f"<answer>{answer}</answer>", "reference": reference}


def test_span_offsets_out_of_range_are_errors():
    spec = {"name": "ner", "components": [{"name": "ner", "kind": "entities", "params": {"mode": "spans"}}]}
    beyond = json.dumps([{"start": 50, "end": 70, "label": "DRUG"}])
    backwards = json.dumps([{"start": 7, "end": 3, "label": "DRUG"}])
    bad_ref = {"entities": [{"start": 0, "end": 99, "label": "DRUG"}], "text": TEXT}
    records = [
        _record(beyond, {"entities": TRUE_SPANS, "text": TEXT}),
        _record(backwards, {"entities": TRUE_SPANS, "text": TEXT}),
        _record("[]", bad_ref),
        _record("[]", {"entities": [{"start": "0", "end": 3, "label": "DRUG"}], "text": TEXT}),
        # without reference.text the prompt is the text
        {"prompt": "Aspirin", "completion": "<answer>" + beyond + "</answer>", "reference": {"entities": []}},
    ]
    scored = Scorer(spec, time_limit=None).score(records)
    assert [r.status for r in scored] == [Status.ERROR] * 5
    assert "answer span #0 [50, 70) is out of range (text length 57)" in scored[0].info["error"]
    assert "answer span #0 [7, 3) is out of range" in scored[1].info["error"]
    assert "reference.entities[0] [0, 99) is out of range" in scored[2].info["error"]
    assert "reference.entities[0] must be an object with integer 'start'" in scored[3].info["error"]
    assert "(text length 7)" in scored[4].info["error"]


def test_prf_edges():
    assert prf(0, 0, 0) == (1.0, 1.0, 1.0)
    assert prf(2, 0, 0) == (0.0, 0.0, 0.0)
    assert prf(4, 2, 2) == pytest.approx((0.5, 1.0, 2 / 3))


def test_through_medreward_score(tmp_path):
    spec = 'name = "ents"\n[[components]]\nname = "drugs"\nkind = "entities"\nrequired = true\n'
    rows = [
        _record("Started Tylenol; denies metformin.", {"entities": ["acetaminophen"]}),
        _record("metformin and lisinopril", {"entities": ["Glucophage"]}),
        _record("aspirin", {}),
        _record("aspirin", {"entities": ["unicorn dust"]}),
    ]
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_all({"score": ("score", "in.jsonl", "--spec", "spec.toml", "-o", "out.jsonl")}, tmp_path)["score"]
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert [r["status"] for r in out] == ["ok", "ok", "not_applicable", "error"]
    assert out[0]["reward"] == 1.0 and out[0]["info"]["drugs"]["negated"] == ["metformin"]
    assert out[1]["reward"] == pytest.approx(2 / 3)
    assert "unicorn dust" in out[3]["info"]["error"]
