"""Specs (validation that names the bad field, presets, TOML round trip, diff) and how the Scorer
combines component scores into one reward: weights, gates, not-applicable, errors, GDPO."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medreward import Scorer, Status
from medreward.compose.aggregate import normalize_then_sum
from medreward.compose.spec import Spec, list_presets, load_spec
from medreward.errors import SpecError
from medreward.rewards.base import registered_kinds

FORMAT = {"name": "format", "kind": "format.tags"}
CHOICE = {"name": "choice", "kind": "choice", "params": {"field": "answer"}}


def spec(*components: dict, **fields) -> dict:
    return {"name": "t", "components": list(components), **fields}


def rollout(text: str, answer: str | None = "C", group: str | None = None) -> dict:
    record: dict = {"completion": text, "reference": {} if answer is None else {"answer": answer}}
    if group is not None:
        record["group"] = group
    return record


RIGHT = "<think>r</think><answer>C</answer>"
WRONG = "<think>r</think><answer>B</answer>"
UNFORMATTED_RIGHT = "<answer>C</answer>"  # no <think>: bad format, right letter


# -- specs ---------------------------------------------------------------------------------------
def test_presets_load_and_name_their_components():
    presets = list_presets()
    assert set(presets) == {"toxicology", "mcq", "calculator", "icd_coding", "healthbench", "medix", "medix_semantic",
                            "toxicology_consistent", "mcq_consistent", "calculator_consistent"}
    assert presets["toxicology"].component_names == ("format", "substances")
    assert [c.weight for c in presets["toxicology"].components] == [0.1, 0.9]


@pytest.mark.parametrize("name", ["toxicology", "mcq", "calculator", "icd_coding", "healthbench", "medix", "medix_semantic",
                                  "toxicology_consistent", "mcq_consistent", "calculator_consistent"])
def test_toml_round_trip_is_the_same_reward(name, tmp_path):
    original = load_spec(name)
    path = tmp_path / f"{name}-copy.toml"
    path.write_text(original.to_toml(), encoding="utf-8")
    again = load_spec(path)
    assert again.diff(original) == [] and again == original


def test_diff_names_what_changed():
    a = load_spec("mcq")
    data = a.to_dict()
    data["components"][1]["weight"] = 0.5
    data["components"].append({"name": "rep", "kind": "repetition"})
    b = Spec.from_dict(data)
    assert a.diff(b) == ["choice.weight: 0.9 -> 0.5", "component 'rep' added"]


@pytest.mark.parametrize(
    "data, message",
    [
        (spec(), r"^spec: components: Tuple should have at least 1 item"),
        ({"components": [FORMAT]}, r"^spec: name: Field required$"),
        (spec({**FORMAT, "weight": "heavy"}), r"components\.0\.weight: Input should be a valid number"),
        (spec({**FORMAT, "wieght": 1}), r"components\.0\.wieght: unknown parameter"),
        (spec(FORMAT, {**FORMAT}), r"component name 'format' is used twice"),
        (spec({**FORMAT, "weight": 0}), r"every component has weight 0"),
        (spec(FORMAT, aggregate="mean"), r"aggregate: Input should be 'weighted_sum' or 'normalize_then_sum'"),
        (spec({**FORMAT, "kind": "nope"}), r"^spec: components\.0\.kind: unknown component kind 'nope'; known kinds: "),
        (spec({**FORMAT, "params": {"tags": ["a b"]}}), r"^spec: components\.0\.params\.tags: "),
        (spec({"name": "x", "kind": "multilabel", "params": {"vocabulary": "no-such-vocab"}}),
         r"^spec: components\.0\.params\.vocabulary: unknown vocabulary 'no-such-vocab'"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_bad_field(data, message):
    with pytest.raises(SpecError, match=message):
        load_spec(data)


@pytest.mark.parametrize(
    "data, message",
    [
        (spec(FORMAT, {**FORMAT, "name": "f2", "wieght": 1}),
         "spec: components.1.wieght: unknown parameter"),
        (spec(FORMAT, {**FORMAT, "name": "f2", "kind": "nope"}),
         "spec: components.1.kind: unknown component kind 'nope'; known kinds: " + ", ".join(sorted(registered_kinds()))
         + " (or give a custom one as 'package.module:ClassName')"),
        (spec(FORMAT, {**FORMAT, "name": "f2", "params": {"tags": ["a b"], "colour": 1}}),
         "spec: components.1.params.tags: Value error, tag name 'a b' must be a bare name like 'answer'; "
         "components.1.params.colour: unknown parameter"),
        (spec(FORMAT, {"name": "labels", "kind": "multilabel"}),
         "spec: components.1.params.vocabulary: Field required"),
        (spec(FORMAT, {"name": "x", "kind": "nomodule_xyz:Cls"}),
         "spec: components.1.kind: component kind 'nomodule_xyz:Cls': cannot import module 'nomodule_xyz' "
         "(No module named 'nomodule_xyz')"),
    ],
)  # fmt: skip
def test_spec_errors_use_one_path_style(data, message):
    # pydantic's checks (components.1.wieght) and the component builds (components.1.params.tags)
    # name the bad field the same way, from the spec's top
    with pytest.raises(SpecError) as caught:
        load_spec(data)
    assert str(caught.value) == message
    with pytest.raises(SpecError) as from_file:
        Spec.from_toml(_toml(data), source="my.toml")
    assert str(from_file.value) == message.replace("spec:", "my.toml:", 1)


def _toml(data: dict) -> str:
    import tomli_w

    return tomli_w.dumps(data)


def test_a_spec_is_built_once_and_load_spec_takes_any_mapping(monkeypatch):
    from types import MappingProxyType

    from medreward.rewards.multilabel import MultiLabel

    data = MappingProxyType(load_spec("toxicology").to_dict())  # a read-only mapping, not a dict
    built = []
    original = MultiLabel.setup
    monkeypatch.setattr(MultiLabel, "setup", lambda self: (built.append(self), original(self))[1])
    loaded = load_spec(data)
    assert len(built) == 1  # validated by building
    scorer = Scorer(loaded, time_limit=None)
    assert len(built) == 1 and scorer.components[1] is built[0]  # the Scorer reuses that build
    assert loaded.reference_keys() == ("substances",) and len(built) == 1
    second = Scorer(loaded, time_limit=None)  # a second scorer owns fresh components (they keep memos)
    assert len(built) == 2 and second.components[1] is built[1]
    assert load_spec(data) == loaded  # the kept build is not part of the spec's value


def test_unknown_spec_name_lists_the_presets(tmp_path):
    with pytest.raises(SpecError, match=r"presets: calculator, calculator_consistent, healthbench, icd_coding, mcq, mcq_consistent, medix, "
                       r"medix_semantic, toxicology, toxicology_consistent"):
        load_spec("toxicolgy")
    with pytest.raises(SpecError, match=r"does not exist"):
        load_spec(tmp_path / "missing.toml")


# -- combining ------------------------------------------------------------------------------------
def test_weighted_sum_with_partial_credit():
    scorer = Scorer(spec({**FORMAT, "weight": 0.2}, {**CHOICE, "weight": 0.8}))
    out = scorer.score([rollout(RIGHT), rollout(WRONG), rollout(UNFORMATTED_RIGHT)])
    assert [r.reward for r in out] == [pytest.approx(1.0), pytest.approx(0.2), pytest.approx(0.8)]
    assert out[2].components == {"format": 0.0, "choice": 1.0}
    assert out[2].info["format"]["problems"] == ["missing <think>"]


def test_failed_gate_sets_the_floor_and_says_so():
    gated = spec({**FORMAT, "gate": True, "weight": 0.1}, {**CHOICE, "weight": 0.9}, floor=-1.0)
    out = Scorer(gated).score([rollout(RIGHT), rollout(UNFORMATTED_RIGHT)])
    assert out[0].reward == pytest.approx(1.0) and "gated_by" not in out[0].info
    assert out[1].reward == -1.0 and out[1].info["gated_by"] == "format"
    assert out[1].components == {"format": 0.0, "choice": 1.0}  # the values are still reported


def test_not_applicable_components_are_left_out_of_the_sum():
    scorer = Scorer(spec({**FORMAT, "weight": 0.5}, {**CHOICE, "weight": 0.5, "required": False}))
    [no_reference] = scorer.score([rollout(RIGHT, answer=None)])
    assert no_reference.status is Status.OK
    assert no_reference.reward == 0.5  # only the format component applied: allowed by required = false
    assert no_reference.components == {"format": 1.0, "choice": None}
    assert no_reference.info["choice"]["reason"].startswith("reference has no 'answer'")

    only_choice = Scorer(spec(CHOICE))
    [nothing] = only_choice.score([rollout(RIGHT, answer=None)])
    assert nothing.status is Status.NOT_APPLICABLE and nothing.reward is None


def test_an_error_in_one_component_is_an_error_for_the_sample_never_a_zero():
    scorer = Scorer(spec(FORMAT, {"name": "raises", "kind": "faulty_components:Raises"}))
    ok, failed = scorer.score([rollout(RIGHT), rollout(RIGHT + " boom")])
    assert ok.status is Status.OK and ok.reward == 2.0
    assert failed.status is Status.ERROR and failed.reward is None
    assert failed.info["error"] == "raises: ValueError: kaboom"
    assert failed.components == {"format": 1.0, "raises": None}


# -- GDPO (normalize_then_sum) ---------------------------------------------------------------------
def test_normalize_then_sum_is_gdpo_over_each_group():
    gdpo = spec({**FORMAT, "weight": 1.0}, {**CHOICE, "weight": 1.0}, aggregate="normalize_then_sum")
    texts = [RIGHT, WRONG, UNFORMATTED_RIGHT, "nothing", RIGHT, RIGHT, WRONG, WRONG]
    rows = [rollout(t, group="a" if i < 4 else "b") for i, t in enumerate(texts)]
    out = Scorer(gdpo, chunk_size=3).score(rows)  # one batch whatever the chunk size: GDPO needs the groups
    matrix = np.array([[r.components["format"], r.components["choice"]] for r in out])
    expected = normalize_then_sum(matrix, np.array([1.0, 1.0]), np.array([0, 0, 0, 0, 1, 1, 1, 1]), eps=1e-4)
    assert [r.reward for r in out] == pytest.approx(expected.tolist())
    assert all(math.isfinite(r.reward) for r in out)
    # in group b everyone is well formatted: the format component adds nothing there
    assert out[4].reward == out[5].reward and out[6].reward == out[7].reward < out[4].reward


def test_gdpo_does_not_lift_a_gated_sample():
    gdpo = spec({**FORMAT, "gate": True}, CHOICE, aggregate="normalize_then_sum", floor=0.0)
    out = Scorer(gdpo).score([rollout(t, group="g") for t in (RIGHT, WRONG, UNFORMATTED_RIGHT)])
    assert out[2].info["gated_by"] == "format" and out[2].reward == 0.0
    assert out[0].reward > out[1].reward


# -- required components: a missing reference is not a reward --------------------------------------
TOX_GOOD = "<think>miosis</think><answer>opioids</answer>"


@pytest.mark.parametrize("reference", [{}, None, {"substances": None}, {"other": ["opioids"]}, "absent"])
def test_a_missing_reference_is_not_a_reward(reference):
    record = {"completion": TOX_GOOD}
    if reference != "absent":
        record["reference"] = reference
    scored, good = Scorer("toxicology", time_limit=None).score(
        [record, {"completion": TOX_GOOD, "reference": {"substances": ["opioids"]}}]
    )
    assert (scored.status, scored.reward) == (Status.NOT_APPLICABLE, None)  # was ok 0.1: format-only
    assert scored.components == {"format": 1.0, "substances": None}  # still reported
    assert scored.info["reason"] == "required component 'substances' does not apply (reference has no 'substances')"
    assert (good.status, good.reward) == (Status.OK, 1.0)


@pytest.mark.parametrize("name", ["toxicology", "mcq", "calculator", "icd_coding"])
def test_presets_mark_their_task_component_required(name):
    preset = load_spec(name)
    assert [c.required for c in preset.components] == [None, True]
    [record] = Scorer(preset, time_limit=None).score([{"completion": TOX_GOOD, "reference": {}}])
    assert record.status is Status.NOT_APPLICABLE and record.reward is None


def test_required_default_needs_one_reference_reader_and_keeps_multi_task_specs():
    numeric = {"name": "value", "kind": "numeric", "params": {"field": "value"}}
    mixed = Scorer(spec({**FORMAT, "weight": 0.1}, CHOICE, numeric), time_limit=None)
    assert mixed.spec.requirements() == (() , (1, 2))
    mcq_row, calc_row, neither = mixed.score(
        [rollout(RIGHT), {"completion": "<think>r</think><answer>7</answer>", "reference": {"value": 7}},
         rollout(RIGHT, answer=None)]
    )  # fmt: skip
    assert (mcq_row.status, mcq_row.reward) == (Status.OK, pytest.approx(1.1))  # numeric n/a: left out
    assert (calc_row.status, calc_row.reward) == (Status.OK, pytest.approx(1.1))
    assert (neither.status, neither.reward) == (Status.NOT_APPLICABLE, None)
    assert neither.info["reason"] == "no answer component applies ('choice', 'value'; reference has no 'answer')"
    # a component that reads no reference is never required by default
    only_format = Scorer(spec(FORMAT), time_limit=None)
    assert only_format.spec.requirements() == ((), ())


def test_required_true_on_any_component_and_false_opts_out():
    required_numeric = {"name": "value", "kind": "numeric", "params": {"field": "value"}, "required": True}
    strict = Scorer(spec(CHOICE, required_numeric), time_limit=None)
    [row] = strict.score([rollout(RIGHT)])
    assert row.status is Status.NOT_APPLICABLE and row.components == {"choice": 1.0, "value": None}
    assert row.info["reason"] == "required component 'value' does not apply (reference has no 'value')"
    lenient = Scorer(spec({**FORMAT, "weight": 0.1}, {**CHOICE, "required": False}), time_limit=None)
    assert lenient.score([rollout(RIGHT, answer=None)])[0].reward == pytest.approx(0.1)


def test_required_round_trips_and_diffs(tmp_path):
    original = load_spec("toxicology")
    assert "required = true" in original.to_toml()
    again = Spec.from_toml(original.to_toml())
    assert again == original and again.requirements() == original.requirements() == ((1,), ())
    data = original.to_dict()
    data["components"][1]["required"] = False
    assert original.diff(Spec.from_dict(data)) == ["substances.required: True -> False"]
    del data["components"][1]["required"]
    assert original.diff(Spec.from_dict(data)) == ["substances.required: True -> None"]


def test_not_applicable_records_are_counted_and_warned_once_per_batch(caplog):
    import logging

    rows = [{"completion": TOX_GOOD, "reference": {}}] * 3 + [
        {"completion": TOX_GOOD, "reference": {"substances": ["opioids"]}}
    ]
    scorer = Scorer("toxicology", time_limit=None, chunk_size=2)
    with caplog.at_level(logging.WARNING, logger="medreward"):
        out = scorer.score(rows)
    assert [r.status for r in out] == [Status.NOT_APPLICABLE] * 3 + [Status.OK]
    assert scorer.stats.statuses["not_applicable"] == 3  # the CLI summary prints these counts
    warnings = [r.getMessage() for r in caplog.records if "not_applicable" in r.getMessage()]
    assert warnings == [
        "2 of 2 records are not_applicable (no reward); first: "
        "required component 'substances' does not apply (reference has no 'substances')",
        "1 of 2 records are not_applicable (no reward); first: "
        "required component 'substances' does not apply (reference has no 'substances')",
    ]


def test_presets_needing_a_missing_extra_are_listed_apart_not_fatal(monkeypatch):
    import importlib.util

    from medreward.compose.spec import unavailable_presets

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == "sentence_transformers" else real(name, *a, **k))
    presets = list_presets()
    assert "medix_semantic" not in presets and "toxicology" in presets
    assert "pip install 'medreward[models]'" in unavailable_presets()["medix_semantic"]
    monkeypatch.undo()
    assert "medix_semantic" in list_presets() and unavailable_presets() == {}
