"""Golden tests of ``error_correction`` (MEDIQA-CORR 2024): answer layouts, the three parts and their
weighted combination by hand, ROUGE-1 against rouge-score, bad references, and the CLI."""

from __future__ import annotations

import doctest
import json
import pickle
import sys

import pytest
from cli_runner import run_all
from rouge_score.rouge_scorer import RougeScorer

import medreward.rewards.error_correction as error_correction_module
from medreward import Scorer, Spec
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards.error_correction import Correction, ErrorCorrection, parse_correction

FIX = "Patient was diagnosed with bacterial pneumonia."
WRONG = {"has_error": True, "sentence_id": 4, "corrected": FIX}
RIGHT = {"has_error": False, "sentence_id": None, "corrected": None}


def score(component: ErrorCorrection, answer: str, reference: dict):
    return component.score_one(Rollout(completion=f"<answer>{answer}</answer>", reference=reference))


@pytest.mark.parametrize(
    "answer, expected",
    [
        # the shared task's run line, with and without the text id
        (f"ms-val-3 1 4 {FIX}", Correction(True, 4, FIX, "mediqa")),
        (f'ms-val-3 1 4 "{FIX}"', Correction(True, 4, FIX, "mediqa")),
        ("ms-val-4 0 -1 NA", Correction(False, None, None, "mediqa")),
        ("ms-val-4 0 -1 some text", Correction(False, None, None, "mediqa")),  # flag 0 enforces NA
        (f"1 4 {FIX}", Correction(True, 4, FIX, "mediqa")),
        ("1 4", Correction(True, 4, None, "mediqa")),
        # JSON objects, fenced or not, with the usual key spellings
        (json.dumps({"has_error": True, "sentence_id": 4, "corrected": FIX}), Correction(True, 4, FIX, "json")),
        ('```json\n{"error_flag": 1, "error_sentence_id": "4", "correction": "%s"}\n```' % FIX,
         Correction(True, 4, FIX, "json")),
        ('{"Error Flag": "no", "Error Sentence ID": -1, "Corrected Sentence": "NA"}', Correction(False, None, None, "json")),
        ('{"sentence_id": 4.0, "corrected": "x"}', Correction(True, 4, "x", "json")),  # flag implied
        ('{"has_error": true, "sentence_id": NaN}', Correction(True, None, None, "json")),
        # labelled lines, Markdown included
        (f"Error: yes\nSentence: 4\nCorrection: {FIX}", Correction(True, 4, FIX, "lines")),
        (f"**Error flag**: 1\n- **Error sentence ID:** #4\n- Corrected sentence: \"{FIX}\"", Correction(True, 4, FIX, "lines")),
        ("Error: no\nSentence: -1\nCorrection: NA", Correction(False, None, None, "lines")),
        ("Error: no\nSentence: 4", Correction(False, None, None, "lines")),  # flagged correct: no sentence
        (f"Sentence: 4\nCorrection: {FIX}", Correction(True, 4, FIX, "lines")),  # flag implied
        # bare verdicts and nothing
        ("CORRECT", Correction(False, None, None, "verdict")),
        ("No error.", Correction(False, None, None, "verdict")),
        ("The note looks fine to me overall, I think, but let me be careful about it.", Correction(None, None, None, "none")),
        ("", Correction(None, None, None, "none")),
    ],
)  # fmt: skip
def test_layouts(answer, expected):
    assert parse_correction(answer) == expected


@pytest.mark.parametrize(
    "answer, reference, parts, value",
    [
        (f"t 1 4 {FIX}", WRONG, (1, 1, 1), 1.0),
        ("t 0 -1 NA", RIGHT, (1, 1, 1), 1.0),  # a correct text called correct: both "NA" → 1
        ("t 1 4 Patient was diagnosed with viral pneumonia.", RIGHT, (0, 0, 0), 0.0),  # a false alarm
        ("t 0 -1 NA", WRONG, (0, 0, 0), 0.0),  # a missed error
        (f"t 1 7 {FIX}", WRONG, (1, 0, 1), 2 / 3),  # the right fix in the wrong sentence
        # ROUGE-1: 5 of 6 tokens shared each way (viral/bacterial) → F = 5/6
        ("t 1 4 Patient was diagnosed with viral pneumonia.", WRONG, (1, 1, 5 / 6), (2 + 5 / 6) / 3),
        ("t 1 4", WRONG, (1, 1, 0), 2 / 3),  # flag and sentence, no correction
    ],
)
def test_parts_and_value_by_hand(answer, reference, parts, value):
    result = score(ErrorCorrection(), answer, reference)
    assert result.status is Status.OK
    assert (result.info["flag"], result.info["sentence"], result.info["correction"]) == pytest.approx(parts)
    assert result.value == pytest.approx(value)


def test_weights_and_exact_metric():
    answer = "t 1 4 Patient was diagnosed with viral pneumonia."
    flag_only = ErrorCorrection(weights={"flag": 1, "sentence": 0, "correction": 0})
    assert score(flag_only, answer, WRONG).value == 1.0
    weighted = ErrorCorrection(weights={"flag": 1, "sentence": 1, "correction": 2})
    assert score(weighted, answer, WRONG).value == pytest.approx((1 + 1 + 2 * 5 / 6) / 4)
    exact = ErrorCorrection(correction_metric="exact")
    assert score(exact, answer, WRONG).info["correction"] == 0.0
    assert score(exact, "t 1 4 patient was diagnosed with bacterial pneumonia", WRONG).info["correction"] == 1.0


def test_correction_is_rouge_scores_rouge1():
    prediction = "The patient was diagnosed with community acquired pneumonia and started on ceftriaxone."
    expected = RougeScorer(["rouge1"]).score(FIX, prediction)["rouge1"].fmeasure
    assert score(ErrorCorrection(), f"t 1 4 {prediction}", WRONG).info["correction"] == pytest.approx(expected)
    stemmed = RougeScorer(["rouge1"], use_stemmer=True).score(FIX, "patients diagnosed")["rouge1"].fmeasure
    got = score(ErrorCorrection(stemmer=True), "t 1 4 patients diagnosed", WRONG).info["correction"]
    assert got == pytest.approx(stemmed) and stemmed > 0


def test_info_says_what_was_parsed():
    result = score(ErrorCorrection(), f"Error: yes\nSentence: 4\nCorrection: {FIX}", WRONG)
    assert result.info["layout"] == "lines"
    assert result.info["predicted"] == {"has_error": True, "sentence_id": 4, "corrected": FIX}
    assert result.info["expected"] == {"has_error": True, "sentence_id": 4, "corrected": FIX}
    nothing = score(ErrorCorrection(), "I am not sure what to say about this note at all.", WRONG)
    assert nothing.value == 0.0 and nothing.info["reason"] == "no error flag, sentence id or correction found"
    missing = ErrorCorrection().score_one(Rollout(completion="t 1 4 x", reference=WRONG))
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"
    whole = ErrorCorrection(answer_tag=None).score_one(Rollout(completion=f"t 1 4 {FIX}", reference=WRONG))
    assert whole.value == 1.0


@pytest.mark.parametrize(
    "reference, message",
    [
        ({"has_error": "yes"}, r"reference.has_error must be true/false \(or 1/0\), got 'yes'"),
        ({"has_error": 2}, r"reference.has_error must be true/false"),
        ({"has_error": True, "corrected": FIX}, r"reference.sentence_id must be a sentence number >= 0 when has_error is true, got None"),
        ({"has_error": True, "sentence_id": "4", "corrected": FIX}, r"reference.sentence_id must be a sentence number"),
        ({"has_error": True, "sentence_id": -1, "corrected": FIX}, r"reference.sentence_id must be a sentence number"),
        ({"has_error": True, "sentence_id": 4}, r"reference.corrected must be the corrected sentence when has_error is true"),
        ({"has_error": True, "sentence_id": 4, "corrected": "NA"}, r"reference.corrected must be the corrected sentence"),
        ({"has_error": False, "sentence_id": 4}, r"reference.sentence_id must be null or -1 when has_error is false, got 4"),
        ({"has_error": False, "corrected": FIX}, r"reference.corrected must be null or 'NA' when has_error is false"),
    ],
)  # fmt: skip
def test_bad_references_name_the_field(reference, message):
    with pytest.raises(RecordError, match=message):
        score(ErrorCorrection(), "t 0 -1 NA", reference)


def test_reference_variants_and_not_applicable():
    component = ErrorCorrection()
    assert score(component, "t 0 -1 NA", {"has_error": 0, "sentence_id": -1, "corrected": "NA"}).value == 1.0
    assert score(component, f"t 1 4 {FIX}", {"has_error": 1, "sentence_id": 4, "corrected": FIX}).value == 1.0
    assert score(component, "t 0 -1 NA", {}).status is Status.NOT_APPLICABLE
    assert component.reference_keys() == ("has_error", "sentence_id", "corrected")
    renamed = ErrorCorrection(flag_field="flag", sentence_field="sid", correction_field="fix")
    assert score(renamed, f"t 1 4 {FIX}", {"flag": True, "sid": 4, "fix": FIX}).value == 1.0


def test_scorer_records_a_bad_reference_as_error():
    spec = Spec.from_dict({"name": "c", "components": [{"name": "corr", "kind": "error_correction"}]})
    scored = Scorer(spec).score(
        [
            {"completion": f"<answer>t 1 4 {FIX}</answer>", "reference": WRONG},
            {"completion": "<answer>t 0 -1 NA</answer>", "reference": {"has_error": "maybe"}},
        ]
    )
    assert scored[0].reward == 1.0
    assert scored[1].status is Status.ERROR and "reference.has_error" in scored[1].info["error"]


def test_bad_params_and_missing_library(monkeypatch):
    with pytest.raises(SpecError, match="error_correction.params.weights"):
        ErrorCorrection(weights={"flag": 0, "sentence": 0, "correction": 0})
    with pytest.raises(SpecError, match="error_correction.params.weights.flag"):
        ErrorCorrection(weights={"flag": -1})
    with pytest.raises(SpecError, match="error_correction.params.weights.bleurt"):
        ErrorCorrection(weights={"bleurt": 1})
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    with pytest.raises(SpecError, match=r"pip install 'medreward\[metrics\]'"):
        Spec.from_dict({"name": "c", "components": [{"name": "corr", "kind": "error_correction"}]})
    assert ErrorCorrection(correction_metric="exact").params.correction_metric == "exact"  # needs no library


def test_pickles_and_docstrings():
    component = ErrorCorrection(weights={"flag": 2}, correction_metric="exact")
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params and score(clone, f"t 1 4 {FIX}", WRONG).value == 1.0
    assert doctest.testmod(error_correction_module).failed == 0


def test_through_medreward_score(tmp_path):
    rows = [
        {"id": "right", "completion": f"<answer>ms-val-0 1 4 {FIX}</answer>", "reference": WRONG},
        {"id": "correct-text", "completion": "<answer>ms-val-1 0 -1 NA</answer>", "reference": RIGHT},
        {"id": "missed", "completion": "<answer>CORRECT</answer>", "reference": WRONG},
        {"id": "bad-ref", "completion": "<answer>CORRECT</answer>", "reference": {"has_error": True}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "spec.toml").write_text(
        'name = "corr"\n[[components]]\nname = "corr"\nkind = "error_correction"\n', encoding="utf-8"
    )
    result = run_all({"score": ("score", "in.jsonl", "--spec", "spec.toml", "-o", "out.jsonl")}, tmp_path)["score"]
    assert result.returncode == 0, result.stderr
    out = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text("utf-8").splitlines())}
    assert out["right"]["reward"] == 1.0 and out["correct-text"]["reward"] == 1.0
    assert out["missed"]["reward"] == 0.0 and out["missed"]["info"]["corr"]["layout"] == "verdict"
    assert out["bad-ref"]["status"] == "error" and "reference.sentence_id" in out["bad-ref"]["info"]["error"]
