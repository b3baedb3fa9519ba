"""``coverage``: key-point recall, lexical with phrasings, negation-aware (negative key points too),
hand-computed golden values, bad reference shapes, and the CLI."""

from __future__ import annotations

import json
import pickle

import pytest
from cli_runner import run_all

from medreward.errors import RecordError
from medreward.records import Rollout, Status
from medreward.rewards.coverage import Coverage

POINTS = [["beta blocker", "metoprolol"], "aspirin", "no antibiotics", "statin"]


def _score(answer, points=POINTS, **params):
    return Coverage(**params).score_one(Rollout(completion=f"<answer>{answer}</answer>", reference={"key_points": points}))


def test_fraction_of_key_points_by_hand():
    # beta blocker (via its phrasing "metoprolol") and aspirin: 2 of 4
    score = _score("Start metoprolol and aspirin.")
    assert score.value == 0.5
    assert score.info["stated"] == ["beta blocker", "aspirin"]
    assert score.info["missed"] == ["no antibiotics", "statin"] and score.info["contradicted"] == []
    # all four: "no antibiotics" is stated by negating antibiotics
    assert _score("Metoprolol, aspirin and a statin; do not give antibiotics.").value == 1.0


@pytest.mark.parametrize(
    ("answer", "stated"),
    [
        ("BETA-BLOCKERS are indicated", True),  # case, hyphen and plural
        ("beta\n  blocker", True),  # a wrapped line still states it
        ("Start a beta blocker.", True),
        ("betablocker", False),  # a different word
    ],
)
def test_lexical_matching(answer, stated):
    assert _score(answer, [["beta blocker"]]).value == float(stated)


@pytest.mark.parametrize(
    "answer",
    ["No aspirin.", "Aspirin was ruled out.", "Patient denies aspirin use", "without aspirin", "aspirin: excluded"],
)
def test_a_key_point_stated_only_negated_does_not_count(answer):
    score = _score(answer, ["aspirin"])
    assert score.value == 0.0 and score.info["contradicted"] == ["aspirin"]


def test_pseudo_negation_and_a_second_asserted_mention_count():
    assert _score("Aspirin cannot be ruled out as the cause", ["aspirin"]).value == 1.0
    assert _score("No heparin. Aspirin daily.", ["aspirin"]).value == 1.0
    assert _score("No aspirin. Later, aspirin daily.", ["aspirin"]).value == 1.0  # one asserted mention suffices


@pytest.mark.parametrize(
    ("answer", "value", "where"),
    [
        ("Do not give antibiotics.", 1.0, "stated"),
        ("No antibiotics.", 1.0, "stated"),
        ("Antibiotics are ruled out.", 1.0, "stated"),
        ("Give antibiotics.", 0.0, "contradicted"),  # the opposite of the key point
        ("Give fluids.", 0.0, "missed"),
    ],
)
def test_negative_key_points_need_the_answer_to_negate(answer, value, where):
    score = _score(answer, ["no antibiotics"])
    assert score.value == value and score.info[where] == ["no antibiotics"]


def test_not_applicable_and_zero_cases():
    assert Coverage().score_one(Rollout(completion="<answer>x</answer>", reference={})).status is Status.NOT_APPLICABLE
    empty = _score("aspirin", [])
    assert empty.status is Status.NOT_APPLICABLE and "reference.key_points is empty" in empty.info["reason"]
    blank = _score("   ")
    assert blank.value == 0.0 and blank.info["reason"] == "empty answer" and blank.info["missed"][0] == "beta blocker"
    no_tag = Coverage().score_one(Rollout(completion="aspirin", reference={"key_points": ["aspirin"]}))
    assert no_tag.value == 0.0 and no_tag.info["reason"] == "no <answer> section"
    assert Coverage(answer_tag=None)(["aspirin"], [{"key_points": ["aspirin", "statin"]}]) == [0.5]


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ("aspirin", r"reference\.key_points must be a list of key points"),
        ([["aspirin", 3]], r"reference\.key_points\[0\]\[1\] must be a phrase with at least one word"),
        ([[]], r"reference\.key_points\[0\] must be a phrase or a non-empty list"),
        (["aspirin", "--"], r"reference\.key_points\[1\] must be a phrase with at least one word"),
        ([{"text": "aspirin"}], r"reference\.key_points\[0\] must be a phrase or a non-empty list"),
    ],
)
def test_bad_reference_shapes_name_the_field(points, message):
    with pytest.raises(RecordError, match=message):
        _score("aspirin", points)


def test_custom_field_and_pickling():
    component = Coverage(field="points")
    assert component.reference_keys() == ("points",)
    clone = pickle.loads(pickle.dumps(component))
    assert clone(["<answer>aspirin</answer>"], [{"points": ["aspirin", "statin"]}]) == [0.5]


def test_through_medreward_score(tmp_path):
    spec = 'name = "cov"\n[[components]]\nname = "coverage"\nkind = "coverage"\n'
    rows = [
        {"completion": "<answer>Metoprolol and aspirin; no antibiotics.</answer>", "reference": {"key_points": POINTS}},
        {"completion": "<answer>No aspirin.</answer>", "reference": {"key_points": ["aspirin"]}},
        {"completion": "<answer>aspirin</answer>", "reference": {"key_points": "aspirin"}},
    ]
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = run_all({"score": ("score", "in.jsonl", "--spec", "spec.toml", "-o", "out.jsonl")}, tmp_path)["score"]
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert [r["status"] for r in out] == ["ok", "ok", "error"]
    assert out[0]["reward"] == 0.75 and out[0]["info"]["coverage"]["missed"] == ["statin"]
    assert out[1]["reward"] == 0.0 and out[1]["info"]["coverage"]["contradicted"] == ["aspirin"]
    assert "reference.key_points must be a list" in out[2]["info"]["error"]
