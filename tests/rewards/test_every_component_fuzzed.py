"""Every built-in component kind, fuzzed through its batch API with arbitrary model output: no
exception, one verdict per input in order, values inside the declared range, and a verdict that does
not depend on the rest of the batch. A new kind must be added to ``CONFIGS`` (the first test fails
until it is), so no component escapes these properties."""

from __future__ import annotations

import json
import math

import pytest
from fake_backend import FakeModelBackend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medreward.records import ComponentScore, Rollout, Status
from medreward.rewards.base import component_class, registered_kinds

# minimal parameters and a reference that makes each kind applicable
CONFIGS = {
    "format.tags": ({}, {}),
    "length": ({"mode": "overlong", "max_length": 40, "cache_length": 10, "unit": "chars"}, {}),
    "repetition": ({}, {}),
    "reasoning_pattern": ({}, {}),
    "choice": ({}, {"answer": "C"}),
    "classification": ({"classes": ["entail", "contradict", "neutral"]}, {"label": "entail"}),
    "multilabel": ({"vocabulary": "toxicology", "field": "substances"}, {"substances": ["opioids", "ethanol"]}),
    "numeric": ({"rel_tol": 0.05}, {"value": 12.5, "unit": "mg/dL"}),
    "icd_codes": ({}, {"codes": ["E11.9", "I10"]}),
    "entities": ({"vocabulary": "toxicology"}, {"entities": ["aspirin", "opioids"]}),
    "coverage": ({}, {"key_points": [["beta blocker", "metoprolol"], "aspirin", "no antibiotics"]}),
    "grounding": ({}, {"context": "On warfarin 5 mg daily; E11.9; Tylenol 500 mg; 12.5 mg/dL"}),
    "consistency": ({"compare": "labels", "vocabulary": "toxicology"}, {}),
    "ranking": ({"ids": "nct", "k": 3}, {"relevant": {"NCT01234567": 2, "NCT07654321": 1}}),
    "criteria_match": ({"metric": "macro_f1"}, {"criteria": {"C1": "met", "C2": "not_met"}, "evidence": [1, 4]}),
    # invalid = "zero": the default makes negative/NaN probabilities an error, which this test forbids
    "forecast": ({"classes": ["CN", "MCI", "AD"], "invalid": "zero"}, {"label": "MCI"}),
    "iou": ({}, {"box": [0, 0, 10, 10]}),
    "judge": ({}, {"answer": "aspirin"}),
    "rubric": ({}, {"rubric": [{"criterion": "Advises ER", "points": 5}, {"criterion": "Is rude", "points": -2}]}),
    # against the reference: a group comparison depends on the rest of the batch by design
    "pairwise": ({"against": "reference"}, {"answer": "aspirin"}),
    "self_rubric": ({}, {}),
    "semantic": ({"floor": 0.2}, {"answer": ["opioids", "ethanol"]}),
    "text_overlap": ({"metric": "f1"}, {"answer": ["aspirin 81 mg daily", "阳性"]}),
    "readability": ({"target_grade": [4, 8]}, {}),
    "error_correction": ({}, {"has_error": True, "sentence_id": 3, "corrected": "Start aspirin 81 mg daily."}),
    "reward_model": ({"backend": "rm"}, {}),
    "likelihood": ({"debias": True}, {"answer": "aspirin"}),
}
# kinds that need a prompt to apply (self_rubric writes its rubric from it)
PROMPTS = {"self_rubric": "What should I do about crushing chest pain?"}

FUZZ = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
# model-like output: tags, letters, numbers, labels, codes and boxes mixed with any characters
PIECES = st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "C", "(B)", "**A**", "12.5 mg/dL", "1,234", "≈ 3e-1",
    "opioids, ethanol", "Percocet", "none", "E11.9", "I10", "[0, 0, 10, 10]", "entail", " and ", "\n", "- ", "no aspirin", "Tylenol 5 mg", " denies ",
    "NCT01234567", "1. ", "PMID: 31452104", "C1: met", "C2: not met", '{"C1": "unknown"}', "Evidence: 4",
    "CN: 0.2", "MCI: 50%", '{"AD": 0.3}', "AD: -1",
    "t-1 1 3 ", "Error: yes", "Sentence: 3", "Correction: ", '{"has_error": true}', "阳性", "阴性",
])  # fmt: skip
TEXT = st.lists(st.one_of(PIECES, st.text(st.characters(exclude_categories=()), max_size=12)), max_size=12).map("".join)


def _judge_answer(request):
    """Model kinds get a deterministic in-process judge: YES, or every criterion of the schema met."""
    if request.response_schema and "verdicts" in request.response_schema["properties"]:
        ids = request.response_schema["properties"]["verdicts"]["items"]["properties"]["id"]["enum"]
        return json.dumps({"verdicts": [{"id": i, "explanation": "", "criteria_met": True} for i in ids]})
    if request.response_schema and "winner" in request.response_schema["properties"]:
        return json.dumps({"explanation": "", "winner": "A"})
    if request.response_schema and "criteria" in request.response_schema["properties"]:
        return json.dumps({"criteria": [{"criterion": "Advises ER", "points": 5}, {"criterion": "Is rude", "points": -2}]})
    return "YES"


def build(kind: str):
    params, _ = CONFIGS[kind]
    component = component_class(kind)(**params)
    if component.backend_names():
        component.bind_backends({name: FakeModelBackend(_judge_answer, name=name) for name in component.backend_names()})
    return component


def test_every_registered_kind_is_fuzzed_here():
    assert set(CONFIGS) == set(registered_kinds())


@pytest.mark.parametrize("kind", sorted(CONFIGS))
@FUZZ
@given(texts=st.lists(TEXT, min_size=1, max_size=8))
def test_batch_verdicts_are_one_per_input_and_in_range(kind, texts):
    component = build(kind)
    reference = CONFIGS[kind][1]
    prompt = PROMPTS.get(kind, "")
    batch = [Rollout(prompt=prompt, completion=t, reference=dict(reference)) for t in texts]
    scores = component.score_batch(batch)
    assert isinstance(scores, list) and len(scores) == len(texts)
    low, high = component.output_range
    for score in scores:
        assert isinstance(score, ComponentScore)
        if score.status is Status.OK:
            assert isinstance(score.value, float) and math.isfinite(score.value)
            assert low - 1e-9 <= score.value <= high + 1e-9
        else:
            assert score.value is None and score.status is Status.NOT_APPLICABLE
    # the same text scores the same alone as in a batch
    alone = [component.score_batch([Rollout(prompt=prompt, completion=t, reference=dict(reference))])[0] for t in texts]
    assert [s.value for s in alone] == [s.value for s in scores]
