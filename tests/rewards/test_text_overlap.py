"""Golden tests of ``text_overlap``: hand-computed values, the SQuAD v1.1 definition, and equality with
rouge-score and sacrebleu called directly on the same inputs; CJK text; bad references; the CLI."""

from __future__ import annotations

import doctest
import json
import math
import pickle
import re
import string
import sys
from collections import Counter

import pytest
import sacrebleu
from cli_runner import run_all
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score.rouge_scorer import RougeScorer

import medreward.parse.overlap as overlap_module
import medreward.rewards.text_overlap as text_overlap_module
from medreward import Scorer, Spec
from medreward.errors import RecordError, SpecError
from medreward.parse.overlap import answer_tokens, exact_match, normalize_answer, token_f1
from medreward.records import Rollout, Status
from medreward.rewards.text_overlap import METRICS, TextOverlap, overlap_scores


# -- the official SQuAD v1.1 definitions (evaluate-v1.1.py), retyped as the oracle -------------
def squad_normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_f1(prediction: str, ground_truth: str) -> float:
    p, g = squad_normalize(prediction).split(), squad_normalize(ground_truth).split()
    common = Counter(p) & Counter(g)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision, recall = num_same / len(p), num_same / len(g)
    return (2 * precision * recall) / (precision + recall)


def score(component: TextOverlap, answer: str, reference) -> object:
    return component.score_one(Rollout(completion=f"<answer>{answer}</answer>", reference={"answer": reference}))


@pytest.mark.parametrize(
    "text, normal",
    [
        ("The Patient's BP", "patients bp"),
        ("an MI, not a PE.", "mi not pe"),
        ("  Theory   of the   mind ", "theory of mind"),  # "the" inside a word stays
        ("(A) aspirin", "aspirin"),
    ],
)
def test_normalisation_is_squads(text, normal):
    assert normalize_answer(text) == normal == squad_normalize(text)


@pytest.mark.parametrize(
    "prediction, reference, f1",
    [
        ("aspirin 81 mg daily", "aspirin daily", 2 * 0.5 * 1.0 / 1.5),  # P = 2/4, R = 2/2
        ("The aspirin.", "aspirin", 1.0),
        ("heart attack", "myocardial infarction", 0.0),
        ("acute kidney injury", "the acute kidney failure", 2 / 3),  # P = R = 2/3
        ("dose dose dose", "dose", 0.5),  # multiset: P = 1/3, R = 1 → 0.5
        ("", "aspirin", 0.0),
    ],
)
def test_token_f1_hand_computed(prediction, reference, f1):
    assert token_f1(prediction, reference) == pytest.approx(f1)
    assert squad_f1(prediction, reference) == pytest.approx(f1)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(max_codepoint=127), max_size=40), st.text(st.characters(max_codepoint=127), max_size=40))
def test_token_f1_and_exact_equal_the_official_script_on_ascii(prediction, reference):
    assert token_f1(prediction, reference) == pytest.approx(squad_f1(prediction, reference))
    assert exact_match(prediction, reference) == float(squad_normalize(prediction) == squad_normalize(reference))


def test_cjk_text_is_tokenised_by_character():
    assert answer_tokens("结果：阳性。") == ["结", "果", "阳", "性"]
    assert answer_tokens("ST段抬高 STEMI") == ["st", "段", "抬", "高", "stemi"]
    # whitespace tokens would make these 0; by character they share 性
    assert token_f1("阴性", "阳性") == pytest.approx(0.5)
    assert token_f1("结果为阳性", "阳性") == pytest.approx(2 * 0.4 * 1.0 / 1.4)  # P = 2/5, R = 1
    assert exact_match("阳 性。", "阳性") == 1.0 and exact_match("阴性", "阳性") == 0.0


# -- the libraries on the same inputs -----------------------------------------------------------
PAIRS = [
    ("The patient was started on IV ceftriaxone.", "Start intravenous ceftriaxone for the patient."),
    ("chest x-ray shows bilateral infiltrates", "Bilateral infiltrates on the chest X-ray."),
    ("no acute findings", "No acute cardiopulmonary findings are seen."),
    ("running fevers", "ran a fever"),  # stemming matters
    ("completely unrelated words here", "aspirin"),
]


@pytest.mark.parametrize("stemmer", [False, True])
@pytest.mark.parametrize("prediction, reference", PAIRS)
def test_rouge_equals_rouge_score(prediction, reference, stemmer):
    expected = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stemmer).score(reference, prediction)
    got = overlap_scores(prediction, reference, use_stemmer=stemmer)
    for name in ("rouge1", "rouge2", "rougeL"):
        assert got[name] == pytest.approx(expected[name].fmeasure, abs=1e-12)


@pytest.mark.parametrize("prediction, reference", PAIRS)
def test_bleu_and_chrf_equal_sacrebleu(prediction, reference):
    got = overlap_scores(prediction, reference)
    assert got["bleu"] == pytest.approx(sacrebleu.sentence_bleu(prediction, [reference]).score / 100, abs=1e-12)
    assert got["chrf"] == pytest.approx(sacrebleu.sentence_chrf(prediction, [reference]).score / 100, abs=1e-12)


def test_hand_computed_rouge_and_bleu():
    # ROUGE-1: 3 of 4 unigrams shared both ways; ROUGE-2: "has sepsis"... only "patient has" shared
    s = overlap_scores("the patient has sepsis", "patient has severe sepsis")
    assert s["rouge1"] == pytest.approx(0.75)
    assert s["rouge2"] == pytest.approx(1 / 3)  # 1 of 3 bigrams each way
    assert s["rougeL"] == pytest.approx(0.75)  # LCS "patient has sepsis" = 3
    # BLEU with one substituted final token: p1..p4 = 5/6, 4/5, 3/4, 2/3, BP = 1 → (1/3)^(1/4)
    s = overlap_scores("a b c d e f", "a b c d e g")
    assert s["bleu"] == pytest.approx((1 / 3) ** 0.25, abs=1e-9)
    same = overlap_scores("Aspirin 81 mg daily.", "Aspirin 81 mg daily.")
    assert all(same[m] == pytest.approx(1.0) for m in METRICS)


def test_cjk_rouge_and_bleu():
    # rouge-score's tokenizer deletes Chinese characters (0 for everything); by character 性 is shared
    assert RougeScorer(["rouge1"]).score("阳性", "阴性")["rouge1"].fmeasure == 0.0
    s = overlap_scores("阴性", "阳性")
    assert s["rouge1"] == pytest.approx(0.5) and s["rouge2"] == 0.0 and s["exact"] == 0.0
    prediction, reference = "患者诊断为急性心肌梗死", "诊断：急性心肌梗死"
    s = overlap_scores(prediction, reference)
    assert s["bleu"] == pytest.approx(sacrebleu.sentence_bleu(prediction, [reference], tokenize="zh").score / 100)
    assert s["bleu"] > sacrebleu.sentence_bleu(prediction, [reference]).score / 100  # 13a: one "word" each
    assert s["rouge1"] == pytest.approx(16 / 19)  # all 8 reference characters in the 11 of the answer: P = 8/11, R = 1


# -- the component ----------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
def test_value_is_the_chosen_metric_and_info_has_all(metric):
    component = TextOverlap(metric=metric)
    result = score(component, PAIRS[0][0], PAIRS[0][1])
    expected = overlap_scores(PAIRS[0][0], PAIRS[0][1])
    assert result.status is Status.OK
    assert result.value == pytest.approx(expected[metric])
    assert {m: result.info[m] for m in METRICS} == pytest.approx(expected)
    assert result.info["metric"] == metric


def test_several_references_best_match_per_metric():
    component = TextOverlap(metric="f1")
    refs = ["acetylsalicylic acid", "aspirin 81 mg"]
    result = score(component, "aspirin", refs)
    assert result.value == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))  # vs the second: P = 1, R = 1/3
    assert result.info["best_reference"] == 1
    per_ref = [overlap_scores("aspirin", r) for r in refs]
    assert result.info["chrf"] == pytest.approx(max(p["chrf"] for p in per_ref))


def test_missing_section_empty_answer_and_truncation():
    component = TextOverlap(max_chars=20)
    missing = component.score_one(Rollout(completion="aspirin", reference={"answer": "aspirin"}))
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"
    empty = score(component, "   ", "aspirin")
    assert empty.value == 0.0 and empty.info["reason"] == "empty answer"
    long = score(component, "aspirin " * 100, "aspirin")
    assert long.info["truncated"] is True and long.status is Status.OK
    whole = TextOverlap(answer_tag=None, metric="exact").score_one(
        Rollout(completion="Aspirin.", reference={"answer": "aspirin"})
    )
    assert whole.value == 1.0


@pytest.mark.parametrize(
    "reference, message",
    [
        (7, r"reference.answer must be a string or a list of strings, got int"),
        ("  ", r"reference.answer is an empty string"),
        ([], r"reference.answer is an empty list"),
        (["ok", 3], r"reference.answer\[1\] must be a non-empty string, got int"),
        (["ok", ""], r"reference.answer\[1\] must be a non-empty string, got an empty string"),
    ],
)
def test_bad_references_name_the_field(reference, message):
    with pytest.raises(RecordError, match=message):
        score(TextOverlap(), "aspirin", reference)


def test_missing_reference_is_not_applicable_and_scorer_statuses():
    component = TextOverlap()
    assert component.score_one(Rollout(completion="<answer>x</answer>", reference={})).status is Status.NOT_APPLICABLE
    spec = Spec.from_dict(
        {"name": "t", "components": [{"name": "overlap", "kind": "text_overlap", "params": {"metric": "f1"}}]}
    )
    scored = Scorer(spec).score(
        [
            {"completion": "<answer>aspirin</answer>", "reference": {"answer": "aspirin"}},
            {"completion": "<answer>aspirin</answer>", "reference": {"answer": 5}},
        ]
    )
    assert scored[0].reward == 1.0 and scored[0].info["overlap"]["f1"] == 1.0
    assert scored[1].status is Status.ERROR and "reference.answer" in scored[1].info["error"]


def test_missing_library_is_a_spec_error_at_load(monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    with pytest.raises(SpecError, match=r"pip install 'medreward\[metrics\]'"):
        Spec.from_dict({"name": "t", "components": [{"name": "o", "kind": "text_overlap"}]})


def test_bad_params_fail_at_load():
    with pytest.raises(SpecError, match="text_overlap.params.metric"):
        TextOverlap(metric="meteor")
    with pytest.raises(SpecError, match="text_overlap.params.max_chars"):
        TextOverlap(max_chars=0)


def test_pickles_and_docstrings():
    component = TextOverlap(metric="bleu", stemmer=True)
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params
    assert score(clone, "a b c d e f", "a b c d e g").value == pytest.approx((1 / 3) ** 0.25, abs=1e-9)
    assert doctest.testmod(text_overlap_module).failed == 0
    assert doctest.testmod(overlap_module).failed == 0


def test_through_medreward_score(tmp_path):
    rows = [
        {"id": "same", "completion": "<answer>Aspirin 81 mg daily.</answer>", "reference": {"answer": "aspirin 81 mg daily"}},
        {"id": "half", "completion": "<answer>aspirin daily</answer>", "reference": {"answer": ["aspirin 81 mg daily"]}},
        {"id": "none", "completion": "<answer>x</answer>", "reference": {}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "spec.toml").write_text(
        'name = "overlap"\n[[components]]\nname = "overlap"\nkind = "text_overlap"\nparams = { metric = "f1" }\n',
        encoding="utf-8",
    )
    result = run_all({"score": ("score", "in.jsonl", "--spec", "spec.toml", "-o", "out.jsonl")}, tmp_path)["score"]
    assert result.returncode == 0, result.stderr
    out = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text("utf-8").splitlines())}
    assert out["same"]["reward"] == 1.0
    assert math.isclose(out["half"]["reward"], 2 * 1 * 0.5 / 1.5)  # P = 1, R = 2/4
    assert set(METRICS) <= set(out["half"]["info"]["overlap"])
    assert out["none"]["status"] == "not_applicable" and out["none"]["reward"] is None
