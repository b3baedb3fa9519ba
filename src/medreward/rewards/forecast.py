r"""``forecast``: probabilistic class forecasts (Brier, log-loss; mAUC and BCA over a run) and
continuous forecasts (absolute error; MAE over a run), as in the TADPOLE challenge."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from ..errors import RecordError, SpecError
from ..parse.numbers import final_number
from ..parse.probabilities import parse_probabilities
from ..records import ComponentScore, Rollout, Status
from .base import ComponentParams, RewardComponent, answer_section, register

__all__ = ["Forecast", "brier_score", "log_loss", "multiclass_auc", "tadpole_bca"]

#: probabilities are clipped to [EPS, 1 - EPS] for the log-loss, as scikit-learn's log_loss does
EPS = 2.220446049250313e-16
_SUM_TOLERANCE = 1e-6
_METRICS_HINT = "pip install 'medreward[metrics]'"


def _key(label: str) -> str:
    return " ".join(label.split()).casefold()


def brier_score(probabilities: Sequence[float], true_index: int) -> float:
    r"""Multiclass Brier score :math:`BS = \sum_c (p_c - y_c)^2 \in [0, 2]` (Brier, "Verification
    of forecasts expressed in terms of probability", Monthly Weather Review 1950, the original
    multi-category form; lower is better).

    >>> round(brier_score([0.2, 0.5, 0.3], 1), 4)  # 0.04 + 0.25 + 0.09
    0.38
    """
    return sum((p - (1.0 if c == true_index else 0.0)) ** 2 for c, p in enumerate(probabilities))


def log_loss(probabilities: Sequence[float], true_index: int) -> float:
    r"""Log-loss of one forecast, :math:`-\ln p_{y}` with :math:`p` clipped to
    :math:`[\epsilon, 1-\epsilon]` (:math:`\epsilon` = float64 machine epsilon, as
    ``sklearn.metrics.log_loss`` clips).

    >>> round(log_loss([0.2, 0.5, 0.3], 1), 4)
    0.6931
    """
    p = min(max(probabilities[true_index], EPS), 1.0 - EPS)
    return -math.log(p)


def multiclass_auc(truth: Sequence[int], probabilities: Sequence[Sequence[float]], n_classes: int) -> float | None:
    r"""Hand & Till's multiclass AUC, :math:`M = \frac{2}{c(c-1)} \sum_{i<j} \hat A(i,j)`,
    :math:`\hat A(i,j) = \frac12 [A(i|j) + A(j|i)]`, where :math:`A(i|j)` is the AUC of class
    i's probability separating the samples of class i from those of class j (Hand & Till,
    "A simple generalisation of the area under the ROC curve for multiple class classification
    problems", Machine Learning 45, 2001; the mAUC of the TADPOLE challenge). Each
    :math:`A(i|j)` is ``sklearn.metrics.roc_auc_score`` on the two classes' samples, so ties
    count one half. This equals ``roc_auc_score(multi_class="ovo", average="macro")`` when
    every class occurs; pairs with an absent class are left out (``None`` when no pair is left).

    >>> multiclass_auc([0, 1, 2], [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]], 3)
    1.0
    """
    from sklearn.metrics import roc_auc_score

    pairs = []
    present = set(truth)
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            if i not in present or j not in present:
                continue
            rows = [n for n, t in enumerate(truth) if t in (i, j)]
            a_ij = roc_auc_score([truth[n] == i for n in rows], [probabilities[n][i] for n in rows])
            a_ji = roc_auc_score([truth[n] == j for n in rows], [probabilities[n][j] for n in rows])
            pairs.append((float(a_ij) + float(a_ji)) / 2.0)
    return sum(pairs) / len(pairs) if pairs else None


def _balanced_accuracy(truth: Sequence[int], predicted: Sequence[int]) -> float:
    """``sklearn.metrics.balanced_accuracy_score`` (mean recall over the true classes), without its
    warning about predicted classes that never occur in the truth."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(truth, predicted))


def tadpole_bca(truth: Sequence[int], predicted: Sequence[int], n_classes: int) -> float:
    r"""TADPOLE's balanced classification accuracy: for each class c (one against the rest),
    :math:`\frac12 [TP/(TP+FN) + TN/(TN+FP)]`, averaged over the classes; a sensitivity or
    specificity whose denominator is 0 counts 0.5 (Marinescu et al., "The Alzheimer's Disease
    Prediction Of Longitudinal Evolution (TADPOLE) Challenge", 2020, and its evaluation script
    ``evalOneSubmission.py``). Not the same number as ``sklearn.metrics.balanced_accuracy_score``
    (the mean per-class recall), which :class:`Forecast` reports as ``balanced_accuracy``.

    >>> tadpole_bca([0, 0, 1, 2], [0, 1, 1, 2], 3)  # (3/4 + 5/6 + 1) / 3
    0.861111111111111
    """
    scores = []
    for c in range(n_classes):
        tp = sum(1 for t, p in zip(truth, predicted) if t == c and p == c)
        tn = sum(1 for t, p in zip(truth, predicted) if t != c and p != c)
        fp = sum(1 for t, p in zip(truth, predicted) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, predicted) if t == c and p != c)
        sensitivity = tp / (tp + fn) if tp + fn else 0.5
        specificity = tn / (tn + fp) if tn + fp else 0.5
        scores.append((sensitivity + specificity) / 2.0)
    return sum(scores) / len(scores)


@register
class Forecast(RewardComponent):
    r"""A forecast scored against what happened: class probabilities against the true class
    (``target = "class"``), or a number against the true value (``target = "value"``).

    **Class forecasts.** The answer gives a probability per class (JSON ``{"CN": 0.2, "MCI":
    0.5, "AD": 0.3}`` or lines ``CN: 20%``; :func:`medreward.parse.probabilities.parse_probabilities`).
    Labels match ``classes`` case-insensitively; labels outside ``classes`` are ignored and
    listed in ``info["unknown"]``; a class the answer leaves out gets probability 0
    (``info["missing"]``). Probabilities that do not sum to 1 (within 1e-6) are divided by their
    sum and flagged (``info["renormalised"] = true``, ``info["sum"]``). A negative, NaN or
    infinite probability, or probabilities summing to 0, are invalid: with ``invalid =
    "error"`` (default) the sample's status is ``error`` with ``info["error"]`` (no reward);
    with ``invalid = "zero"`` it scores 0 with ``info["reason"]`` (a penalty the policy can
    learn from). Per-sample rewards, both proper scoring rules up to an affine map (so the
    policy's best answer is its true belief):

    * ``metric = "brier"``: :math:`R = 1 - BS/2`, :math:`BS = \sum_c (p_c - y_c)^2 \in [0,2]`
      (:func:`brier_score`; Brier 1950);
    * ``metric = "log"``: :math:`R = 1 - \min(LL, L)/L` with :math:`LL = -\ln p_y` and
      :math:`L = -\ln p_{floor}` (``p_floor``, default 0.001): 1 for certainty on the true class,
      0 at or below :math:`p_y = p_{floor}`. :math:`\exp(-LL) = p_y` is *not* used: it is an
      improper rule that rewards putting all the mass on the most likely class.

    Over a run (:meth:`batch_metrics`, printed in the ``medreward score`` summary and written
    to ``--stats-json`` under ``batch_metrics``): ``mauc`` (Hand & Till multiclass AUC,
    :func:`multiclass_auc`, TADPOLE's mAUC), ``bca`` (TADPOLE's balanced classification
    accuracy, :func:`tadpole_bca`), ``balanced_accuracy`` (scikit-learn's, mean recall),
    ``accuracy``, mean ``brier`` and ``log_loss``, and ``n`` (samples with a forecast). The
    hard prediction is the class of highest probability (ties: the first in ``classes``).
    These need ``scikit-learn`` (``pip install 'medreward[metrics]'``); a spec that asks for
    them without it fails at load (``batch_metrics = false`` turns them off).

    **Value forecasts** (e.g. TADPOLE's ADAS-Cog13 or ventricle volume): the answer's final
    number (:func:`medreward.parse.numbers.final_number`, read in the reference's unit) against
    ``reference.value``: :math:`R = \exp(-|\hat v - v| / scale)` (``scale`` required, in the
    target's unit: the error that earns :math:`e^{-1} \approx 0.37`); over a run: ``mae``, ``n``.

    Source: TADPOLE challenge (Marinescu et al., 2020): mAUC and BCA for diagnosis, MAE for
    ADAS-Cog13 and ventricles. The per-sample reward transforms are medreward's choice.

    Reference: ``field`` (default ``label`` for classes, ``value`` for values). A reference
    without it is ``not_applicable``; a label outside ``classes`` or a non-numeric value raises
    :class:`~medreward.errors.RecordError` naming the field. A missing answer section, or an
    answer with no probability of a known class (no number), scores 0 with ``info["reason"]``.

    ``info`` (classes): ``probabilities`` (normalised, by class), ``predicted``, ``true``,
    ``correct``, ``brier``, ``log_loss``, ``unknown``, ``missing``, ``format``, and
    ``renormalised``/``sum`` or ``duplicates`` when they apply. (values): ``predicted``,
    ``true``, ``abs_error``.

    Params: ``target`` (``class`` | ``value``), ``classes`` (required for classes, ≥ 2
    distinct labels), ``field``, ``metric`` (``brier`` | ``log``), ``p_floor``, ``scale``,
    ``invalid`` (``error`` | ``zero``), ``batch_metrics`` (true), ``answer_tag``.

    >>> f = Forecast(classes=["CN", "MCI", "AD"], batch_metrics=False)
    >>> f(['<answer>{"CN": 0.2, "MCI": 0.5, "AD": 0.3}</answer>'], [{"label": "MCI"}])  # 1 - 0.38/2
    [0.81]
    >>> Forecast(target="value", scale=2.0)(["<answer>ADAS13 = 21</answer>"], [{"value": 19}])  # exp(-1)
    [0.36787944117144233]
    """

    kind = "forecast"

    class Params(ComponentParams):
        target: Literal["class", "value"] = "class"
        classes: tuple[str, ...] | None = Field(default=None, description="The class labels (target = class).")
        field: str | None = Field(default=None, min_length=1, description="Reference key (default: label / value).")
        metric: Literal["brier", "log"] = "brier"
        p_floor: float = Field(default=1e-3, gt=0, lt=1, allow_inf_nan=False)
        scale: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="Error that earns 1/e.")
        invalid: Literal["error", "zero"] = "error"
        batch_metrics: bool = True
        answer_tag: str | None = "answer"

        @model_validator(mode="after")
        def _consistent(self) -> Forecast.Params:
            if self.target == "class":
                if self.classes is None or len(self.classes) < 2:
                    raise ValueError("classes: give at least two class labels for target = 'class'")
                keys = [_key(c) for c in self.classes]
                if any(not k for k in keys) or len(set(keys)) != len(keys):
                    raise ValueError("classes: labels must be non-empty and distinct (ignoring case)")
            elif self.scale is None:
                raise ValueError("scale: required for target = 'value' (the error that earns exp(-1))")
            return self

    params: Params

    def setup(self) -> None:
        p = self.params
        if p.target == "class" and p.batch_metrics:
            try:
                import sklearn.metrics  # noqa: F401
            except ImportError:
                raise SpecError(
                    f"{self.name}.params.batch_metrics: the run's mAUC and BCA need scikit-learn: {_METRICS_HINT} "
                    "(or set batch_metrics = false)"
                ) from None
        self._index = {_key(c): n for n, c in enumerate(p.classes or ())}

    @property
    def _field(self) -> str:
        return self.params.field or ("label" if self.params.target == "class" else "value")

    def reference_keys(self) -> tuple[str, ...]:
        return (self._field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        raw = rollout.reference.get(self._field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{self._field}'")
        if self.params.target == "value":
            return self._score_value(rollout, raw)
        return self._score_class(rollout, raw)

    # -- class forecasts ------------------------------------------------------------------
    def _true_index(self, raw: Any) -> int:
        index = self._index.get(_key(raw)) if isinstance(raw, str) else None
        if index is None:
            raise RecordError(
                f"reference.{self._field}: {raw!r} is not one of the classes {', '.join(self.params.classes or ())}"
            )
        return index

    def _score_class(self, rollout: Rollout, raw: Any) -> ComponentScore:
        p = self.params
        classes = p.classes or ()
        true = self._true_index(raw)
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return ComponentScore(0.0, info={"reason": f"no <{p.answer_tag}> section", "true": classes[true]})
        parsed = parse_probabilities(answer)
        stated: dict[int, float] = {}
        unknown: list[str] = []
        for label, value in parsed.entries:
            index = self._index.get(_key(label))
            if index is None:
                unknown.append(label)
            elif index not in stated:
                stated[index] = value
        if not stated:
            reason = "no probability of a known class in the answer"
            return ComponentScore(0.0, info={"reason": reason, "true": classes[true], "unknown": unknown})
        bad = [f"{classes[i]}={v!r}" for i, v in stated.items() if not (math.isfinite(v) and v >= 0.0)]
        total = sum(stated.values()) if not bad else float("nan")
        if bad or total <= 0.0:
            message = f"invalid probabilities: {', '.join(bad)}" if bad else "probabilities sum to 0"
            if p.invalid == "error":
                return ComponentScore(None, Status.ERROR, {"error": message, "true": classes[true]})
            return ComponentScore(0.0, info={"reason": message, "true": classes[true], "unknown": unknown})
        probs = [stated.get(i, 0.0) / total for i in range(len(classes))]
        predicted = max(range(len(classes)), key=lambda i: (probs[i], -i))
        brier, ll = brier_score(probs, true), log_loss(probs, true)
        if p.metric == "brier":
            value = 1.0 - brier / 2.0
        else:
            cap = -math.log(p.p_floor)
            value = 1.0 - min(ll, cap) / cap
        info: dict[str, Any] = {
            "probabilities": dict(zip(classes, probs)), "predicted": classes[predicted], "true": classes[true],
            "correct": predicted == true, "brier": brier, "log_loss": ll, "unknown": unknown,
            "missing": [c for i, c in enumerate(classes) if i not in stated], "format": parsed.format,
        }  # fmt: skip
        if abs(total - 1.0) > _SUM_TOLERANCE:
            info["renormalised"] = True
            info["sum"] = total
        if parsed.duplicates:
            info["duplicates"] = parsed.duplicates
        if parsed.truncated:
            info["truncated"] = True
        return ComponentScore(min(1.0, max(0.0, value)), info=info)

    # -- value forecasts --------------------------------------------------------------------
    def _score_value(self, rollout: Rollout, raw: Any) -> ComponentScore:
        p = self.params
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise RecordError(f"reference.{self._field} must be a number, got {type(raw).__name__}")
        try:
            true = float(raw)
        except ValueError:
            raise RecordError(f"reference.{self._field}: {raw!r} is not a number") from None
        if not math.isfinite(true):
            raise RecordError(f"reference.{self._field}: {raw!r} is not a finite number")
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return ComponentScore(0.0, info={"reason": f"no <{p.answer_tag}> section", "true": true})
        number = final_number(answer)
        if number is None or not math.isfinite(number.value):
            return ComponentScore(0.0, info={"reason": "no number in the answer", "true": true})
        error = abs(number.value - true)
        assert p.scale is not None
        return ComponentScore(
            math.exp(-error / p.scale), info={"predicted": number.value, "true": true, "abs_error": error}
        )

    # -- over a run ---------------------------------------------------------------------------
    @property
    def has_batch_metrics(self) -> bool:
        return self.params.target == "value" or self.params.batch_metrics

    def batch_metrics(self, infos: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        """Metrics of the whole run from the ``info`` of the samples scored ``ok`` (see the class
        doc): mAUC, BCA, balanced accuracy, accuracy, mean Brier and log-loss for classes; MAE for
        values. ``None`` where a metric is undefined (no sample, or one class only for mAUC)."""
        if self.params.target == "value":
            errors = [float(i["abs_error"]) for i in infos if "abs_error" in i]
            return {"n": float(len(errors)), "mae": sum(errors) / len(errors) if errors else None}
        if not self.params.batch_metrics:
            return {}
        classes = list(self.params.classes or ())
        index = {c: n for n, c in enumerate(classes)}
        rows = [i for i in infos if isinstance(i.get("probabilities"), Mapping) and i.get("true") in index]
        n = len(rows)
        if not n:
            return {"n": 0.0, "mauc": None, "bca": None, "balanced_accuracy": None, "accuracy": None,
                    "brier": None, "log_loss": None}  # fmt: skip
        truth = [index[r["true"]] for r in rows]
        predicted = [index[r["predicted"]] for r in rows]
        probs = [[float(r["probabilities"][c]) for c in classes] for r in rows]
        return {
            "n": float(n),
            "mauc": multiclass_auc(truth, probs, len(classes)),
            "bca": tadpole_bca(truth, predicted, len(classes)),
            "balanced_accuracy": _balanced_accuracy(truth, predicted),
            "accuracy": sum(1 for t, p in zip(truth, predicted) if t == p) / n,
            "brier": sum(float(r["brier"]) for r in rows) / n,
            "log_loss": sum(float(r["log_loss"]) for r in rows) / n,
        }
