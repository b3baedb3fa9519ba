"""Golden tests of the ``multilabel`` component (DeToxR-style set agreement)."""

from __future__ import annotations

import doctest
import math
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.multilabel as multilabel_module
from medreward.compose.spec import load_spec
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.multilabel import MultiLabel, set_agreement

ALL_14 = (
    "opioids, benzodiazepines, ethanol, stimulants, cannabinoids, antidepressants, antipsychotics, "
    "anticholinergics, acetaminophen, salicylates, anticonvulsants, cardiovascular, sedative_hypnotics, toxic_alcohols"
)


@pytest.fixture(scope="module")
def tox() -> MultiLabel:
    return MultiLabel(vocabulary="toxicology", field="substances")


def score(component: MultiLabel, answer: str | None, truth, *, completion: str | None = None):
    text = completion if completion is not None else f"<think>r</think><answer>{answer}</answer>"
    return component.score_one(Rollout(completion=text, reference={"substances": truth}))


@pytest.mark.parametrize(
    "answer, truth, expected",
    [
        ("opioids", ["opioids"], 1.0),
        ("opioids, ethanol", ["opioids", "ethanol"], 1.0),
        ("ethanol, opioids", ["opioids", "ethanol"], 1.0),  # order does not matter
        ("opioids", ["opioids", "ethanol"], 2 / 3),  # missed co-ingestion: 2·1/(1+2)
        ("opioids, benzodiazepines", ["opioids"], 2 / 3),  # hallucinated class: 2·1/(2+1)
        ("opioids, benzodiazepines", ["opioids", "ethanol"], 0.5),  # 2·1/(2+2)
        ("cocaine", ["opioids"], 0.0),
        ("none", [], 1.0),  # ∅/∅ = 1
        ("No intoxicant", [], 1.0),
        ("[]", [], 1.0),  # an explicit empty JSON list is the empty set
        ("none", ["opioids"], 0.0),  # ∅/T = 0
        ("opioids", [], 0.0),  # P/∅ = 0
        ("heroin, booze", ["opioids", "ethanol"], 1.0),  # synonyms and members
        ("heroin, fentanyl", ["opioids"], 1.0),  # two members of one class count once
        ("Percocet", ["opioids", "acetaminophen"], 1.0),  # a combination product: two ids
        ("Percocet", ["opioids"], 2 / 3),
        ("opioids, unicorn dust", ["opioids"], 2 / 3),  # unknown label = one false positive
        ("opioids, unicorn dust, Unicorn-Dust", ["opioids"], 2 / 3),  # the same unknown counts once
        ("LSD", [], 0.0),  # out-of-vocabulary substance against "no intoxicant"
        ("none, opioids", ["opioids"], 1.0),  # "none" next to real labels is ignored
        ('["Opioids", "Benzos"]', ["opioids", "benzodiazepines"], 1.0),
        ("- Opioid overdose\n- Acetaminophen toxicity", ["opioids", "acetaminophen"], 1.0),
    ],
)
def test_f1_golden(tox: MultiLabel, answer: str, truth: list[str], expected: float) -> None:
    result = score(tox, answer, truth)
    assert result.status is Status.OK
    assert result.value == pytest.approx(expected)


def test_hedging_with_all_fourteen_scores_low(tox: MultiLabel) -> None:
    result = score(tox, ALL_14, ["opioids"])
    assert result.value == pytest.approx(2 / 15)
    assert result.value < 0.2
    assert len(result.info["hallucinated"]) == 13
    jaccard = MultiLabel(vocabulary="toxicology", field="substances", metric="jaccard")
    assert score(jaccard, ALL_14, ["opioids"]).value == pytest.approx(1 / 14)


@pytest.mark.parametrize(
    "metric, answer, truth, expected",
    [
        ("jaccard", "opioids, benzodiazepines", ["opioids", "ethanol"], 1 / 3),
        ("jaccard", "opioids", ["opioids", "ethanol"], 0.5),
        ("jaccard", "none", [], 1.0),
        ("jaccard", "cocaine", ["opioids"], 0.0),
        # F_β = (1+β²)|P∩T| / (β²|T| + |P|), β = 2
        ("recall_weighted", "opioids, benzodiazepines", ["opioids"], 5 / 6),  # hallucination cheap
        ("recall_weighted", "opioids", ["opioids", "ethanol"], 5 / 9),  # a miss is expensive
        # F_{1/β}: β² → 1/4
        ("precision_weighted", "opioids, benzodiazepines", ["opioids"], 1.25 / 2.25),
        ("precision_weighted", "opioids", ["opioids", "ethanol"], 1.25 / 1.5),
        ("recall_weighted", "none", [], 1.0),
    ],
)
def test_other_metrics(metric: str, answer: str, truth: list[str], expected: float) -> None:
    component = MultiLabel(vocabulary="toxicology", field="substances", metric=metric)
    assert score(component, answer, truth).value == pytest.approx(expected)


def test_beta_one_is_f1() -> None:
    for metric in ("recall_weighted", "precision_weighted"):
        assert set_agreement(3, 2, 1, metric, beta=1.0) == pytest.approx(set_agreement(3, 2, 1, "f1"))


def test_info_lists_what_was_predicted_missed_and_hallucinated(tox: MultiLabel) -> None:
    result = score(tox, "Percocet, unicorn dust, benzos", ["opioids", "ethanol"])
    assert result.info == {
        "predicted": ["opioids", "acetaminophen", "benzodiazepines"],
        "missed": ["ethanol"],
        "hallucinated": ["acetaminophen", "benzodiazepines", "unicorn dust"],
        "unknown": ["unicorn dust"],
    }
    # |P| = 3 ids + 1 unknown = 4, |T| = 2, |P∩T| = 1
    assert result.value == pytest.approx(2 / 6)


def test_missing_or_empty_answer_scores_zero(tox: MultiLabel) -> None:
    missing = score(tox, None, [], completion="<think>no answer tag</think> none")
    assert (missing.status, missing.value) == (Status.OK, 0.0)
    assert missing.info["reason"] == "no <answer> section"
    assert missing.info["missed"] == []
    # an empty answer must not collect the ∅/∅ reward: the empty set has to be said
    for empty in ("", "   ", "**", ". ,"):
        result = score(tox, empty, [])
        assert result.value == 0.0 and result.info["reason"] == "empty answer"
    unclosed = score(tox, None, ["opioids"], completion="<answer>opioids")
    assert unclosed.value == 0.0 and unclosed.info["missed"] == ["opioids"]


def test_answer_tag_none_reads_the_whole_completion() -> None:
    component = MultiLabel(vocabulary="toxicology", field="substances", answer_tag=None)
    assert score(component, None, ["ethanol"], completion="Ethanol").value == 1.0


def test_reference_forms(tox: MultiLabel) -> None:
    assert score(tox, "opioids, ethanol", "opioids, ethanol").value == 1.0  # verl-style string
    assert score(tox, "opioids, ethanol", ' ["ethanol", "opioids"] ').value == 1.0  # JSON string
    assert score(tox, "none", "").value == 1.0  # empty string = no intoxicant
    assert score(tox, "opioids", ("opioids",)).value == 1.0
    assert score(tox, "opioids", ["opioids", "opioids"]).value == 1.0  # duplicates count once


@pytest.mark.parametrize(
    "truth",
    ["none", "None", ["none"], '["none"]', "no intoxicant", ["No substances"], ["nil"], "n/a", []],
)
def test_none_as_ground_truth_is_the_empty_set(tox: MultiLabel, truth) -> None:
    # the task prompt tells the model to answer "none"; a reference may say it the same way
    # (the vocabulary's "no answer" terms: one list for answers and references)
    assert score(tox, "none", truth).value == 1.0
    assert score(tox, "opioids", truth).value == 0.0
    assert score(tox, "opioids", truth).info["hallucinated"] == ["opioids"]


def test_none_next_to_ids_in_a_reference_is_a_data_error(tox: MultiLabel) -> None:
    with pytest.raises(RecordError, match=r"reference.substances: says 'none' and also names ids \['opioids'\]"):
        score(tox, "opioids", ["none", "opioids"])


def test_none_ground_truth_through_the_scorer_and_trl() -> None:
    from medreward.integrations.trl import reward_func
    from medreward.runner.scorer import Scorer

    good = "<think>no toxidrome</think><answer>none</answer>"
    wrong = "<think>miosis</think><answer>opioids</answer>"
    records = [{"completion": c, "reference": {"substances": t}} for c in (good, wrong) for t in ("none", ["none"])]
    scored = Scorer("toxicology", time_limit=None).score(records)
    assert [(r.status.value, r.reward) for r in scored] == [("ok", 1.0), ("ok", 1.0), ("ok", 0.1), ("ok", 0.1)]
    fn = reward_func("toxicology")
    for column in (["none", "none"], [["none"], ["none"]], ["None", '["none"]']):
        out = fn(prompts=["p", "p"], completions=[good, wrong], substances=column)
        assert out == [pytest.approx(1.0), pytest.approx(0.1)], column


def test_reference_without_the_field_is_not_applicable(tox: MultiLabel) -> None:
    for reference in ({}, {"substances": None}, {"labels": ["opioids"]}):
        result = tox.score_one(Rollout(completion="<answer>opioids</answer>", reference=reference))
        assert result.status is Status.NOT_APPLICABLE and result.value is None
        assert "substances" in result.info["reason"]


@pytest.mark.parametrize(
    "truth, message",
    [
        (["opioid"], r"'opioid' is not an id of vocabulary 'toxicology' \(did you mean 'opioids'\?\)"),
        (["Opioids"], "did you mean 'opioids'"),
        (["unicorns"], "'unicorns' is not an id"),
        ([1], "1 is not an id"),
        ("opioids, alcohol", "did you mean 'ethanol'"),
        ("[not json", "not a JSON array"),
        ('{"a": 1}', "is not an id"),
        (42, "must be a list of ids"),
    ],
)
def test_reference_with_unknown_ids_raises(tox: MultiLabel, truth, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        score(tox, "opioids", truth)


def test_runner_turns_a_bad_reference_into_an_error_record() -> None:
    from medreward.runner.scorer import Scorer

    records = [
        {"completion": "<think>miosis</think><answer>opioids</answer>", "reference": {"substances": ["opioids"]}},
        {"completion": "<think>miosis</think><answer>opioids</answer>", "reference": {"substances": ["opiod"]}},
        {"completion": "<think>miosis</think><answer>none</answer>", "reference": {}},
    ]
    ok, bad, na = Scorer("toxicology", time_limit=None).score(records)
    assert (ok.status.value, ok.reward, ok.components) == ("ok", 1.0, {"format": 1.0, "substances": 1.0})
    assert bad.status.value == "error" and "opiod" in bad.info["error"]
    assert na.components["substances"] is None


def test_params_and_preset() -> None:
    spec = load_spec("toxicology")
    [substances] = [c for c in spec.build() if c.kind == "multilabel"]
    assert isinstance(substances, MultiLabel)
    assert substances.params.vocabulary == "toxicology" and substances.params.field == "substances"
    assert component_class("multilabel") is MultiLabel
    for bad in (
        {"vocabulary": "nope"},
        {"vocabulary": "toxicology", "metric": "hamming"},
        {"vocabulary": "toxicology", "beta": 0},
        {"vocabulary": "toxicology", "colour": "red"},
        {},
    ):
        with pytest.raises(SpecError, match=r"multilabel\.params"):
            MultiLabel(**bad)


def test_pickles_and_keeps_scoring(tox: MultiLabel) -> None:
    clone = pickle.loads(pickle.dumps(tox))
    assert clone.params == tox.params
    assert score(clone, "opioids, ethanol", ["opioids"]).value == pytest.approx(2 / 3)
    assert clone.config() == {"vocabulary": "toxicology", "field": "substances"}


def test_drug_ner_is_opt_in() -> None:
    assert score(MultiLabel(vocabulary="toxicology", field="substances"), "Sublimaze", ["opioids"]).value == 0.0
    ner = MultiLabel(vocabulary="toxicology", field="substances", drug_ner=True)
    assert score(ner, "Sublimaze", ["opioids"]).value == 1.0


def test_repeated_answers_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """RL batches repeat answers and (answer, reference) pairs: each distinct answer is parsed once."""
    component = MultiLabel(vocabulary="toxicology", field="substances")
    parsed: list[str] = []
    real_parse = multilabel_module.parse_labels
    monkeypatch.setattr(multilabel_module, "parse_labels", lambda text: parsed.append(text) or real_parse(text))
    answers = ["opioids, ethanol", "opioids", "benzodiazepines, ethanol", "none", "Percocet"]
    rollouts = [
        Rollout(
            completion="<think>" + "x" * 200 + f"</think><answer>{answers[i % 5]}</answer>",
            reference={"substances": ["opioids", "ethanol"] if i % 2 else ["opioids"]},
        )
        for i in range(1000)
    ]
    results = component.score_batch(rollouts)
    assert sorted(parsed) == sorted(answers)
    assert [r.value for r in results[:2]] == [pytest.approx(2 / 3), pytest.approx(2 / 3)]
    # memoised verdicts still give each sample its own info lists
    results[0].info["predicted"].append("mutated")
    assert results[10].info["predicted"] == ["opioids", "ethanol"]


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["opioids, ethanol", "OPIOIDS", "none", "[]", "", "chloroquine, opioids", None]),
            st.one_of(
                st.lists(st.sampled_from(["opioids", "ethanol", "stimulants"]), max_size=3),
                st.just("opioids, ethanol"),
                st.just(None),
            ),
        ),
        max_size=12,
    )
)
def test_batch_scores_each_sample_as_alone(cases: list[tuple[str | None, object]]) -> None:
    rollouts = [
        Rollout(
            completion="<think>r</think>" + ("" if answer is None else f"<answer>{answer}</answer>"),
            reference={} if truth is None else {"substances": truth},
        )
        for answer, truth in cases
    ]
    batch = MultiLabel(vocabulary="toxicology", field="substances").score_batch(rollouts)
    alone = [MultiLabel(vocabulary="toxicology", field="substances").score_one(r) for r in rollouts]
    assert batch == alone


def test_unhashable_reference_items_are_that_samples_error() -> None:
    from medreward.runner.scorer import Scorer

    good = {"completion": "<think>miosis</think><answer>opioids</answer>", "reference": {"substances": ["opioids"]}}
    bad = {"completion": "<think>miosis</think><answer>opioids</answer>", "reference": {"substances": [{"id": 1}]}}
    for time_limit in (None, 10.0):
        first, broken, last = Scorer("toxicology", time_limit=time_limit).score([good, bad, good])
        assert first.reward == last.reward == 1.0
        assert broken.status.value == "error"
        assert "reference.substances: {'id': 1} is not an id of vocabulary 'toxicology'" in broken.info["error"]


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), st.lists(st.sampled_from(["opioids", "ethanol", "stimulants"]), max_size=3))
def test_any_completion_scores_in_range(text: str, truth: list[str]) -> None:
    component = MultiLabel(vocabulary="toxicology", field="substances")
    for completion in (text, f"<answer>{text}</answer>"):
        result = component.score_one(Rollout(completion=completion, reference={"substances": truth}))
        assert result.status is Status.OK
        assert 0.0 <= result.value <= 1.0 and math.isfinite(result.value)


def test_batch_output_length() -> None:
    component = MultiLabel(vocabulary="toxicology", field="substances")
    rollouts = [Rollout(completion=f"<answer>{x}</answer>", reference={"substances": []}) for x in ("none", "", "x")]
    assert [r.value for r in component.score_batch(rollouts)] == [1.0, 0.0, 0.0]
    assert component.score_batch([]) == []


def test_docstring_examples() -> None:
    assert doctest.testmod(multilabel_module).failed == 0


@pytest.mark.parametrize(
    "answer, truth, expected, negated",
    [
        ("cocaine; benzodiazepines excluded", ["stimulants"], 1.0, ["benzodiazepines"]),  # was 2/3: a hallucination
        ("opioids, no ethanol", ["opioids"], 1.0, ["ethanol"]),
        ("no opioids", [], 1.0, ["opioids"]),  # an answer that only negates states the empty set
        ("no opioids", ["opioids"], 0.0, ["opioids"]),
        ("opioids; benzodiazepines not excluded", ["opioids", "benzodiazepines"], 1.0, None),  # a pseudo-trigger
    ],
)
def test_negated_mentions_are_not_predictions(tox: MultiLabel, answer: str, truth, expected: float, negated) -> None:
    result = score(tox, answer, truth)
    assert result.value == pytest.approx(expected)
    assert result.info.get("negated") == negated
    assert not set(negated or ()) & set(result.info["hallucinated"])
