"""``forecast``: hand-computed Brier / log-loss rewards, renormalisation, invalid probabilities,
value forecasts, and the run-level metrics (Hand & Till mAUC, TADPOLE BCA, balanced accuracy)
checked by hand and against scikit-learn, through the Scorer (in process and in workers) and
through ``medreward score`` (summary and --stats-json)."""

from __future__ import annotations

import builtins
import doctest
import json
import math
import pickle

import numpy as np
import pytest
from cli_runner import run_all

from medreward import Scorer
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import forecast as module
from medreward.rewards.base import component_class
from medreward.rewards.forecast import Forecast, brier_score, log_loss, multiclass_auc, tadpole_bca

sklearn_metrics = pytest.importorskip("sklearn.metrics")
CLASSES = ["CN", "MCI", "AD"]


def score(component, completion, reference):
    return component.score_one(Rollout(completion=completion, reference=reference))


def test_doctests():
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_registered_and_picklable():
    assert component_class("forecast") is Forecast
    comp = Forecast(classes=CLASSES, metric="log")
    assert pickle.loads(pickle.dumps(comp)).params == comp.params
    assert comp.reference_keys() == ("label",) and Forecast(target="value", scale=1.0).reference_keys() == ("value",)


def test_brier_and_log_rewards_by_hand():
    ans = '<answer>{"CN": 0.2, "MCI": 0.5, "AD": 0.3}</answer>'
    brier = score(Forecast(classes=CLASSES), ans, {"label": "AD"})
    assert brier.info["brier"] == pytest.approx(0.04 + 0.25 + 0.49)
    assert brier.value == pytest.approx(1 - 0.78 / 2)
    assert brier.info["log_loss"] == pytest.approx(-math.log(0.3))
    assert brier.info["predicted"] == "MCI" and brier.info["correct"] is False and brier.info["format"] == "json"
    log = score(Forecast(classes=CLASSES, metric="log", p_floor=0.01), ans, {"label": "ad"})
    assert log.value == pytest.approx(1 - math.log(1 / 0.3) / math.log(100))
    floor = score(Forecast(classes=CLASSES, metric="log", p_floor=0.01), "<answer>CN: 1</answer>", {"label": "AD"})
    assert floor.value == 0.0 and floor.info["missing"] == ["MCI", "AD"]
    sure = score(Forecast(classes=CLASSES, metric="log"), "<answer>AD: 100%</answer>", {"label": "AD"})
    assert sure.value == pytest.approx(1.0)


def test_per_sample_losses_equal_scikit_learn():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=40)
    truth = rng.integers(0, 3, size=40)
    ours_brier = np.mean([brier_score(p, t) for p, t in zip(probs, truth)])
    ours_log = np.mean([log_loss(p, t) for p, t in zip(probs, truth)])
    assert ours_brier == pytest.approx(sklearn_metrics.brier_score_loss(truth, probs, labels=[0, 1, 2]), abs=1e-12)
    assert ours_log == pytest.approx(sklearn_metrics.log_loss(truth, probs, labels=[0, 1, 2]), abs=1e-12)


def test_percentages_renormalisation_and_flags():
    comp = Forecast(classes=CLASSES)
    out = score(comp, "<answer>CN: 20%\nMCI: 20%\nAD: 40%\nFTD: 20%</answer>", {"label": "AD"})
    assert out.info["renormalised"] is True and out.info["sum"] == pytest.approx(0.8)
    assert out.info["probabilities"] == pytest.approx({"CN": 0.25, "MCI": 0.25, "AD": 0.5})
    assert out.info["unknown"] == ["FTD"]
    clean = score(comp, "<answer>CN: 0.25\nMCI: 0.25\nAD: 0.5</answer>", {"label": "AD"})
    assert "renormalised" not in clean.info and clean.value == out.value


@pytest.mark.parametrize("answer", ["CN: -0.2\nAD: 1.2", "CN: NaN\nAD: 1", '{"CN": Infinity, "AD": 0.5}', "CN: 0\nAD: 0"])
def test_invalid_probabilities_are_errors_or_zero(answer):
    err = score(Forecast(classes=CLASSES), f"<answer>{answer}</answer>", {"label": "AD"})
    assert err.status is Status.ERROR and err.value is None
    assert "invalid probabilities" in err.info["error"] or "sum to 0" in err.info["error"]
    zero = score(Forecast(classes=CLASSES, invalid="zero"), f"<answer>{answer}</answer>", {"label": "AD"})
    assert zero.status is Status.OK and zero.value == 0.0 and zero.info["reason"] == err.info["error"]


def test_answers_without_known_probabilities_score_zero():
    comp = Forecast(classes=CLASSES)
    out = score(comp, "<answer>FTD: 0.9</answer>", {"label": "AD"})
    assert out.value == 0.0 and out.info["unknown"] == ["FTD"] and "no probability" in out.info["reason"]
    assert score(comp, "AD: 1", {"label": "AD"}).info["reason"] == "no <answer> section"


def test_value_forecasts():
    comp = Forecast(target="value", scale=4.0)
    out = score(comp, "<answer>Predicted ADAS-Cog13 in 12 months: 22.5</answer>", {"value": 20.5})
    assert out.value == pytest.approx(math.exp(-0.5)) and out.info["abs_error"] == pytest.approx(2.0)
    assert score(comp, "<answer>unchanged</answer>", {"value": 3}).info["reason"] == "no number in the answer"
    assert score(comp, "<answer>3</answer>", {"value": "3.0"}).value == 1.0


def test_missing_reference_is_not_applicable():
    assert score(Forecast(classes=CLASSES), "<answer>AD: 1</answer>", {}).status is Status.NOT_APPLICABLE
    assert score(Forecast(target="value", scale=1.0), "<answer>1</answer>", {"label": "AD"}).status is Status.NOT_APPLICABLE


@pytest.mark.parametrize(
    ("params", "reference", "message"),
    [
        ({"classes": CLASSES}, {"label": "FTD"}, "reference.label: 'FTD' is not one of the classes CN, MCI, AD"),
        ({"classes": CLASSES}, {"label": 2}, "reference.label: 2 is not one of the classes"),
        ({"target": "value", "scale": 1.0}, {"value": "high"}, "reference.value: 'high' is not a number"),
        ({"target": "value", "scale": 1.0}, {"value": [1]}, "reference.value must be a number, got list"),
        ({"target": "value", "scale": 1.0}, {"value": "nan"}, "not a finite number"),
    ],
)
def test_bad_reference_names_the_field(params, reference, message):
    with pytest.raises(RecordError) as exc:
        score(Forecast(**params), "<answer>AD: 1</answer>", reference)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("params", "field"),
    [({}, "classes"), ({"classes": ["AD"]}, "classes"), ({"classes": ["AD", "ad"]}, "distinct"),
     ({"target": "value"}, "scale"), ({"classes": CLASSES, "p_floor": 0}, "p_floor")],
)  # fmt: skip
def test_bad_params_fail_at_load(params, field):
    with pytest.raises(SpecError, match=field):
        Forecast(**params)


def test_missing_scikit_learn_is_a_spec_error(monkeypatch):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(SpecError, match=r"pip install 'medreward\[metrics\]'") as exc:
        Forecast(classes=CLASSES)
    assert "forecast.params.batch_metrics" in str(exc.value)
    Forecast(classes=CLASSES, batch_metrics=False)  # per-sample rewards need no scikit-learn
    Forecast(target="value", scale=1.0)


# -- run-level metrics -----------------------------------------------------------------------------
def test_hand_and_till_by_hand_and_equal_to_scikit_learn_ovo():
    y = [0, 1, 2, 0]
    p = [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5], [0.3, 0.5, 0.2]]
    # A^(0,1) = (A(0|1) + A(1|0))/2 = (0.75 + 0.5)/2; A^(0,2) = A^(1,2) = 1
    assert multiclass_auc(y, p, 3) == pytest.approx((0.625 + 1 + 1) / 3)
    assert multiclass_auc(y, p, 3) == pytest.approx(sklearn_metrics.roc_auc_score(y, p, multi_class="ovo", average="macro"))
    rng = np.random.default_rng(7)
    for _ in range(30):
        c = int(rng.integers(2, 5))
        truth = list(rng.permutation(list(range(c)) + list(rng.integers(0, c, size=12))))
        probs = np.round(rng.dirichlet(np.ones(c), size=len(truth)), 1) + 1e-3  # ties
        probs = (probs / probs.sum(axis=1, keepdims=True)).tolist()
        expected = (
            sklearn_metrics.roc_auc_score(truth, probs, multi_class="ovo", average="macro")
            if c > 2 else sklearn_metrics.roc_auc_score(truth, [q[1] for q in probs])
        )  # fmt: skip
        assert multiclass_auc(truth, probs, c) == pytest.approx(expected, abs=1e-12)
    assert multiclass_auc([1, 1], [[0.5, 0.5], [0.2, 0.8]], 3) is None  # one class: undefined
    assert multiclass_auc([0, 1, 1], [[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.4, 0]], 3) == 1.0  # absent class left out


def test_tadpole_bca_by_hand():
    # class 0: sens 1/2, spec 2/2; class 1: sens 1, spec 2/3; class 2: sens 1, spec 1
    assert tadpole_bca([0, 0, 1, 2], [0, 1, 1, 2], 3) == pytest.approx((0.75 + 5 / 6 + 1) / 3)
    # a class never true nor predicted: sensitivity 0.5 by TADPOLE's convention, specificity 1
    assert tadpole_bca([0, 1], [0, 1], 3) == pytest.approx((1 + 1 + 0.75) / 3)


ROWS = [
    ("CN", '{"CN": 0.7, "MCI": 0.2, "AD": 0.1}'),
    ("MCI", "CN: 30%\nMCI: 40%\nAD: 30%"),
    ("AD", '{"CN": 0.2, "MCI": 0.3, "AD": 0.5}'),
    ("CN", '{"CN": 0.3, "MCI": 0.5, "AD": 0.2}'),
    ("AD", "no idea"),  # scored 0 without a forecast: not in the run metrics
    ("MCI", "CN: -1\nMCI: 2"),  # invalid: error, not in the run metrics
]


def _records():
    return [{"id": str(i), "completion": f"<answer>{a}</answer>", "reference": {"label": t}} for i, (t, a) in enumerate(ROWS)]


SPEC = {"name": "tadpole", "components": [{"name": "dx", "kind": "forecast", "params": {"classes": CLASSES}}]}


def _expected():
    y = [0, 1, 2, 0]
    p = [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5], [0.3, 0.5, 0.2]]
    pred = [0, 1, 2, 1]
    return {
        "n": 4.0,
        "mauc": 0.875,
        "bca": tadpole_bca(y, pred, 3),
        "balanced_accuracy": sklearn_metrics.balanced_accuracy_score(y, pred),
        "accuracy": 0.75,
        "brier": sklearn_metrics.brier_score_loss(y, p, labels=[0, 1, 2]),
        "log_loss": sklearn_metrics.log_loss(y, p, labels=[0, 1, 2]),
    }


def test_scorer_reports_run_metrics():
    with Scorer(SPEC, chunk_size=2) as scorer:
        scored = scorer.score(_records())
    assert [r.status for r in scored][-1] is Status.ERROR
    assert scorer.stats.batch_metrics["dx"] == pytest.approx(_expected())
    assert scorer.stats.to_dict()["batch_metrics"]["dx"]["mauc"] == pytest.approx(0.875)
    assert scorer.stats.batch_metric_lines()[0].startswith("dx over the run: n 4, mauc 0.875, bca ")


def test_value_forecasts_report_mae():
    spec = {"name": "adas", "components": [{"name": "adas", "kind": "forecast", "params": {"target": "value", "scale": 5}}]}
    records = [{"completion": f"<answer>{a}</answer>", "reference": {"value": v}} for a, v in [(20, 22), (15, 14), ("?", 3)]]
    with Scorer(spec) as scorer:
        scorer.score(records)
    assert scorer.stats.batch_metrics == {"adas": {"n": 2.0, "mae": 1.5}}


def test_specs_without_run_metrics_keep_nothing():
    spec = {"name": "plain", "components": [{"name": "dx", "kind": "forecast",
                                              "params": {"classes": CLASSES, "batch_metrics": False}}]}  # fmt: skip
    with Scorer(spec) as scorer:
        scorer.score(_records())
    assert scorer.stats.observations == {} and scorer.stats.batch_metrics == {}
    assert scorer.stats.to_dict()["batch_metrics"] == {}


def test_medreward_score_prints_and_writes_run_metrics(tmp_path):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    (tmp_path / "tadpole.toml").write_text(
        'name = "tadpole"\n[[components]]\nname = "dx"\nkind = "forecast"\nparams = { classes = ["CN", "MCI", "AD"] }\n',
        encoding="utf-8",
    )
    base = ("score", "in.jsonl", "-s", "tadpole.toml", "-q")
    runs = run_all({"one": (*base, "--stats-json", "one.json", "-o", "one.jsonl"),
                    "workers": (*base, "--stats-json", "two.json", "-w", "2", "--chunk-size", "2")}, tmp_path)  # fmt: skip
    for name, stats_file in (("one", "one.json"), ("workers", "two.json")):
        run = runs[name]
        assert run.returncode == 0, run.stderr
        assert "dx over the run: n 4, mauc 0.875" in run.stdout
        stats = json.loads((tmp_path / stats_file).read_text())
        assert stats["batch_metrics"]["dx"] == pytest.approx(_expected())
    scored = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert [r["status"] for r in scored] == ["ok"] * 5 + ["error"]
    assert "invalid probabilities" in scored[-1]["info"]["error"]
