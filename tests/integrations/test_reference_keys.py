"""Reference keys are part of the component contract (issue 9, refactor B): components declare the
keys they read, defaults included, and the adapters look for exactly those."""

from __future__ import annotations

import pytest

from medreward import load_spec
from medreward.integrations import coerce_reference
from medreward.integrations.openrlhf import make_reward_func
from medreward.integrations.trl import reward_func
from medreward.integrations.verl import compute_score, register_data_source, unregister_data_source
from medreward.rewards import component_class

TRIAGE = {"name": "triage", "components": [
    {"name": "format", "kind": "format.tags", "weight": 0.1},
    {"name": "acuity", "kind": "classification", "weight": 0.9, "params": {"classes": ["urgent", "routine"]}}]}
URGENT = "<think>sepsis</think><answer>urgent</answer>"


@pytest.mark.parametrize(
    "kind, params, keys",
    [
        ("multilabel", {"vocabulary": "toxicology"}, ("labels",)),
        ("multilabel", {"vocabulary": "toxicology", "field": "substances"}, ("substances",)),
        ("choice", {}, ("answer", "options")),
        ("choice", {"field": "gold", "options_field": "choices"}, ("gold", "choices")),
        ("numeric", {}, ("value", "unit", "lower", "upper")),
        ("icd_codes", {}, ("codes",)),
        ("classification", {"classes": ["a", "b"]}, ("label",)),
        ("iou", {}, ("box",)),
        ("length", {"mode": "cosine", "max_length": 10}, ("correct",)),
        ("length", {"mode": "overlong", "max_length": 10, "cache_length": 2}, ()),
        ("repetition", {}, ()),
        ("format.tags", {}, ()),
    ],
)
def test_components_declare_their_reference_keys_with_defaults(kind, params, keys):
    assert component_class(kind)(**params).reference_keys() == keys


def test_spec_union_in_order_primary_first():
    assert load_spec("mcq").reference_keys() == ("answer", "options")  # options: a default nobody wrote
    assert load_spec(TRIAGE).reference_keys() == ("label",)
    assert coerce_reference("urgent", load_spec(TRIAGE)) == {"label": "urgent"}


def test_adapters_find_a_default_key_no_param_names():
    # the classification reads `label` by default: no `*field` param in the spec, and `label` is not
    # one of the first-wave task fields, so the old sniffing found no column and no primary field
    out = reward_func(TRIAGE)(prompts=["p", "p"], completions=[URGENT, URGENT], label=["urgent", "routine"])
    assert out == [1.0, pytest.approx(0.1)]
    register_data_source("triage_ref_keys", TRIAGE)
    try:
        assert compute_score("triage_ref_keys", URGENT, "urgent")["score"] == 1.0  # plain ground truth placed
    finally:
        unregister_data_source("triage_ref_keys")
    assert make_reward_func(TRIAGE, as_tensors=False)([URGENT], [""], ["urgent"])["rewards"] == [1.0]


def test_mcq_options_column_is_read_by_its_default_key():
    options = [{"A": "Flumazenil", "B": "Atropine", "C": "Naloxone"}]
    out = reward_func("mcq")(prompts=["p"], completions=["<think>.</think><answer>Naloxone</answer>"],
                             answer=["C"], options=options)
    assert out == [1.0]
