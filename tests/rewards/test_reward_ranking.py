"""``ranking``: hand-computed recall/precision/nDCG/MRR/sensitivity, equality with
scikit-learn's ndcg_score, reference shapes and their errors, answer layouts, ICD top-k recall."""

from __future__ import annotations

import doctest
import math
import pickle

import numpy as np
import pytest

from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import ranking as ranking_module
from medreward.rewards.base import component_class
from medreward.rewards.ranking import Ranking, ranking_metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def score(component, completion, reference):
    return component.score_one(Rollout(completion=completion, reference=reference))


def test_doctests():
    result = doctest.testmod(ranking_module)
    assert result.attempted > 0 and result.failed == 0


def test_registered_and_picklable():
    assert component_class("ranking") is Ranking
    comp = Ranking(ids="nct", metric="mrr", k=5)
    again = pickle.loads(pickle.dumps(comp))
    assert again.params == comp.params and again.reference_keys() == ("relevant",)


def test_hand_computed_binary():
    # relevant a, b, c; listed a x b y c; k = 3, budget = 4
    m = ranking_metrics(["a", "x", "b", "y", "c"], {"a": 1, "b": 1, "c": 1}, k=3, budget=4)
    assert m.recall == pytest.approx(2 / 3)
    assert m.precision == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg == pytest.approx(dcg / idcg)
    assert m.mrr == 1.0 and m.sensitivity == pytest.approx(2 / 3)
    assert m.found == ("a", "b") and m.missed == ("c",)
    late = ranking_metrics(["x", "y", "c"], {"a": 1, "c": 1}, k=1, budget=3)
    assert late.mrr == pytest.approx(1 / 3) and late.recall == 0.0 and late.sensitivity == 0.5


def test_hand_computed_graded_exponential_and_linear():
    grades = {"a": 3, "b": 1, "c": 2}
    ranked = ["b", "a", "z"]
    exp_dcg = (2**1 - 1) / 1 + (2**3 - 1) / math.log2(3) + 0
    exp_idcg = 7 / 1 + 3 / math.log2(3) + 1 / 2
    assert ranking_metrics(ranked, grades, 3, 3).ndcg == pytest.approx(exp_dcg / exp_idcg)
    lin = ranking_metrics(ranked, grades, 3, 3, gain="linear").ndcg
    assert lin == pytest.approx((1 + 3 / math.log2(3)) / (3 + 2 / math.log2(3) + 1 / 2))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("gain", ["linear", "exponential"])
def test_ndcg_equals_scikit_learn(k, gain):
    rng = np.random.default_rng(k)
    for _ in range(20):
        pool = [f"d{i}" for i in range(8)]
        grades = {d: int(g) for d, g in zip(pool, rng.integers(0, 4, size=8))}
        if not any(grades.values()):
            grades["d0"] = 1
        ranked = list(rng.permutation(pool))  # every pooled id listed: no ties for sklearn to average
        ours = ranking_metrics(ranked, grades, k, k, gain=gain).ndcg
        y_true = np.array([[grades[d] if gain == "linear" else 2.0 ** grades[d] - 1 for d in ranked]])
        y_score = np.array([[len(ranked) - r for r in range(len(ranked))]], dtype=float)
        assert ours == pytest.approx(sklearn_metrics.ndcg_score(y_true, y_score, k=k), abs=1e-12)


def test_component_metrics_and_info():
    comp = Ranking(ids="nct", k=2, budget=3, metric="precision")
    out = score(comp, "<answer>1. NCT00000001\n2. NCT00000009\n3. NCT00000002\n4. nct00000001</answer>",
                {"relevant": ["nct00000001", "NCT00000002", "NCT00000003"]})  # fmt: skip
    assert out.status is Status.OK and out.value == 0.5
    info = out.info
    assert info["recall"] == pytest.approx(1 / 3) and info["sensitivity"] == pytest.approx(2 / 3)
    assert info["mrr"] == 1.0 and info["found"] == ["NCT00000001"]
    assert info["missed"] == ["NCT00000002", "NCT00000003"] and info["duplicates"] == 1
    assert info["ranked"] == ["NCT00000001", "NCT00000009", "NCT00000002"] and info["n_listed"] == 3
    for metric in ("recall", "ndcg", "mrr", "sensitivity"):
        again = score(Ranking(ids="nct", k=2, budget=3, metric=metric), "<answer>NCT00000001</answer>",
                      {"relevant": ["NCT00000001", "NCT00000002"]})  # fmt: skip
        assert again.value == again.info[metric]


def test_graded_reference_object_and_json_string():
    comp = Ranking(ids="pmid", k=3, metric="ndcg", gain="linear")
    ref = {"relevant": {"111": 2, "222": 1, "333": 0}}
    a = score(comp, "<answer>PMID 222, PMID 111</answer>", ref)
    b = score(comp, "<answer>222 111</answer>", {"relevant": '{"111": 2, "222": 1, "333": 0}'})
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert a.value == pytest.approx(expected) and b.value == pytest.approx(expected)
    assert a.info["missed"] == []  # grade 0 is judged not relevant


def test_icd_top_k_recall_normalises_codes():
    comp = Ranking(ids="icd10", metric="recall", k=2)
    out = score(comp, "<answer>1. e119\n2. I10\n3. N18.3</answer>", {"relevant": ["E11.9", "N183"]})
    assert out.value == 0.5 and out.info["found"] == ["E11.9"] and out.info["missed"] == ["N18.3"]


def test_custom_pattern():
    comp = Ranking(id_pattern=r"doc-(\d+)", metric="mrr")
    assert score(comp, "<answer>doc-7 then doc-3</answer>", {"relevant": [3]}).value == 0.5


def test_answers_without_ids_or_section_score_zero_with_reason():
    comp = Ranking(ids="nct")
    none = score(comp, "<answer>no trial fits</answer>", {"relevant": ["NCT00000001"]})
    assert none.value == 0.0 and none.info["reason"] == "no ids found in the answer"
    assert none.info["missed"] == ["NCT00000001"]
    missing = score(comp, "NCT00000001", {"relevant": ["NCT00000001"]})
    assert missing.value == 0.0 and "no <answer> section" in missing.info["reason"]
    assert score(Ranking(ids="nct", answer_tag=None), "NCT00000001", {"relevant": ["NCT00000001"]}).value == 1.0


def test_missing_or_empty_reference_is_not_applicable():
    comp = Ranking()
    assert score(comp, "<answer>a</answer>", {}).status is Status.NOT_APPLICABLE
    for empty in ([], {"a": 0}, ""):
        out = score(comp, "<answer>a</answer>", {"relevant": empty})
        assert out.status is Status.NOT_APPLICABLE and "no relevant id" in out.info["reason"]


@pytest.mark.parametrize(
    ("ids", "relevant", "message"),
    [
        ("nct", ["NCT123"], "reference.relevant: 'NCT123' is not a nct id"),
        ("pmid", ["abc"], "is not a pmid id"),
        ("icd10", ["I20-I25"], "is not a icd10 id"),
        ("token", 5, "must be a list of ids or an object {id: grade}, got int"),
        ("token", {"a": -1}, "grade of 'a' must be a number >= 0"),
        ("token", {"a": "high"}, "grade of 'a' must be a number >= 0"),
        ("token", {"a": True}, "grade of 'a'"),
        ("token", "[1, 2", "is not valid JSON"),
        ("token", [None], "None is not a token id"),
    ],
)
def test_bad_reference_names_the_field(ids, relevant, message):
    with pytest.raises(RecordError, match="reference.relevant") as exc:
        score(Ranking(ids=ids), "<answer>x</answer>", {"relevant": relevant})
    assert message in str(exc.value)


def test_bad_params_fail_at_load():
    with pytest.raises(SpecError, match="id_pattern"):
        Ranking(id_pattern="(unclosed")
    with pytest.raises(SpecError, match="ranking.params.k"):
        Ranking(k=0)
    with pytest.raises(SpecError, match="ranking.params.metric"):
        Ranking(metric="map")


def test_through_medreward_score(tmp_path):
    import json

    from cli_runner import run_all

    rows = [
        {"id": "a", "completion": "<answer>1. NCT00000001\n2. NCT00000009</answer>", "reference": {"relevant": ["NCT00000001"]}},
        {"id": "b", "completion": "<answer>nothing</answer>", "reference": {"relevant": ["NCT00000001"]}},
        {"id": "c", "completion": "<answer>NCT00000001</answer>", "reference": {"relevant": ["NCT1"]}},
        {"id": "d", "completion": "<answer>NCT00000001</answer>", "reference": {}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "spec.toml").write_text(
        'name = "trials"\n[[components]]\nname = "rank"\nkind = "ranking"\nparams = { ids = "nct", metric = "mrr", k = 5 }\n',
        encoding="utf-8",
    )
    run = run_all({"r": ("score", "in.jsonl", "-s", "spec.toml", "-q", "-o", "out.jsonl")}, tmp_path)["r"]
    assert run.returncode == 0, run.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["status"] for r in out] == ["ok", "ok", "error", "not_applicable"]
    assert [r["reward"] for r in out[:2]] == [1.0, 0.0] and out[0]["info"]["rank"]["found"] == ["NCT00000001"]
    assert "reference.relevant: 'NCT1' is not a nct id" in out[2]["info"]["error"]


def test_reference_strings_split_at_blanks_unless_a_pattern_is_used():
    assert score(Ranking(ids="icd10", metric="recall"), "<answer>E11.9</answer>", {"relevant": "E11.9 N18.3"}).value == 0.5
    comp = Ranking(id_pattern=r"[A-Z][a-z]+ [0-9]+", metric="recall")
    assert score(comp, "<answer>Study 4, Study 9</answer>", {"relevant": "Study 4; Study 7"}).value == 0.5
