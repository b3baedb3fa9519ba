"""``reward_model``: the score of a sequence-classification reward model (Bradley–Terry, regression or
ordinal head), alone or as an ensemble, optionally normalised; :func:`fit_normalization` fits the
normalisation on a reference set (see :class:`RewardModel`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..backends.base import BackendFailure, Message
from ..backends.models import resolve_model
from ..backends.scoring import ScoreRequest, ScoreResponse
from ..errors import SpecError
from ..records import ComponentScore, Rollout, Status, message_text
from ..text import TextTypeError, clean_surrogates
from .base import answer_section, register
from .judge import ModelComponent, ModelParams

__all__ = ["Normalization", "RewardModel", "fit_normalization", "normalization_toml"]

log = logging.getLogger(__name__)


class Normalization(BaseModel):
    """An affine normalisation ``(r - mean) / std``, fitted on a reference set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float = Field(allow_inf_nan=False)
    std: float = Field(gt=0, allow_inf_nan=False)

    def apply(self, value: float) -> float:
        return (value - self.mean) / self.std


@register
class RewardModel(ModelComponent):
    r"""``reward_model``: the score of a sequence-classification reward model (Bradley–Terry, regression
    or ordinal head), alone or as an ensemble, optionally normalised.

    The (prompt, completion) pair is laid out with the model's chat template, the completion as the
    assistant turn, and read by a local ``AutoModelForSequenceClassification`` (a ``transformers``
    backend; see :mod:`medreward.backends.sequence_scores`). The head's outputs ``o`` become one reward:

    - ``head = "scalar"`` (Bradley–Terry RMs: Skywork-Reward-V2, InternLM-XComposer2.5-Reward, WiNGPT
      auxiliary RMs): :math:`r = o_0`. The BT loss :math:`-\log\sigma(r_c - r_r)` only fixes
      differences, so the scale and offset are arbitrary: normalise (below) before mixing it with
      bounded rewards.
    - ``head = "regression"`` (HelpSteer2 attribute heads, Wang et al. arXiv 2406.08673 / 2410.01257):
      :math:`r = \sum_i w_i o_i` with ``weights`` :math:`w` (e.g. HelpSteer2's helpfulness,
      correctness, coherence, complexity, verbosity with weights ``[0.65, 0.8, 0.45, 0.55, -0.4]``, the
      Nemotron-4-340B-Reward recipe [UNVERIFIED: recalled]).
    - ``head = "ordinal"`` (OPRM, arXiv 2602.12660; docs/formulas.md#reward-models): the outputs are
      logits over ordered quality levels with values :math:`v` (``levels``, default :math:`0..n-1`);
      :math:`p = \mathrm{softmax}(o)`, expectation :math:`E = \sum_i p_i v_i`, spread
      :math:`S = \sqrt{\sum_i p_i (v_i - E)^2}`, reward :math:`r = E - \lambda S`
      (``spread_penalty`` :math:`\lambda`, default 0). OPRM publishes :math:`E` as the scalar reward
      [UNVERIFIED: secondary]; the spread penalty is our choice (a risk-averse reading of the same
      distribution).

    ``normalize = {mean, std}`` maps :math:`r \mapsto (r - \mathrm{mean}) / \mathrm{std}`, fitted on a
    reference set with :func:`fit_normalization` or ``medreward reward-model fit-norm``.

    Ensembles (``backends = ["rm1", "rm2", ...]``): each member's reward :math:`r_m` (head, then its
    normalisation) is combined by ``ensemble``: ``"mean"``; ``"min"`` (worst case); or
    ``"mean_minus_std"``, :math:`\bar r - k\,\sigma_r` (population std over members) — the
    uncertainty-weighted optimisation of Coste et al., "Reward Model Ensembles Help Mitigate
    Overoptimization" (ICLR 2024), whose mean / worst-case / UWO rules these are. ``info["ensemble_std"]``
    is the members' disagreement, which :mod:`medreward.shape.preference_strength` turns into weights
    (Secrets of RLHF II measures preference strength by an ensemble's spread).

    Output range: a reward model's value is unbounded, so the range is :math:`(-\infty, \infty)` unless
    ``clip = [low, high]`` bounds it (``info["clipped"]`` when a value was clipped).

    Statuses: a failed model call (of any ensemble member) is that sample's ``error`` (``timeout`` for a
    timeout) with ``info["error"]`` naming the backend; never a partial ensemble. A truncated input
    sets ``info["truncated"]``. ``info`` also has ``raw`` (head outputs), ``model``/``models``.

    >>> from medreward.backends.scoring import ScoreResponse
    >>> class Fixed:
    ...     name, kind, model = "rm", "fake", "fake-rm"
    ...     def score(self, requests): return [ScoreResponse((0.2, 0.5, 2.0), "fake-rm") for _ in requests]
    >>> rm = RewardModel(backend="rm", head="ordinal", levels=[1, 2, 3])
    >>> rm.bind_backends({"rm": Fixed()})
    >>> round(rm(["Take aspirin."])[0], 4)
    2.6012
    """

    kind = "reward_model"
    implied_backend: ClassVar[str | None] = "transformers"

    class Params(ModelParams):
        backend: str | None = Field(default=None, min_length=1, description="The [backends.NAME] of one reward model.")
        backends: tuple[str, ...] | None = Field(default=None, min_length=2, description="An ensemble's backends.")
        head: Literal["scalar", "regression", "ordinal"] = "scalar"
        weights: tuple[float, ...] | None = Field(default=None, min_length=1, description="regression: w_i of Σ w_i·o_i.")
        levels: tuple[float, ...] | None = Field(default=None, min_length=2, description="ordinal: the value of each level.")
        spread_penalty: float = Field(default=0.0, ge=0, allow_inf_nan=False, description="ordinal: λ of E − λ·spread.")
        ensemble: Literal["mean", "min", "mean_minus_std"] = "mean"
        k: float = Field(default=1.0, ge=0, allow_inf_nan=False, description="mean_minus_std: k of mean − k·std.")
        normalize: Normalization | tuple[Normalization, ...] | None = Field(
            default=None, description="{mean, std}, or one per ensemble member."
        )
        clip: tuple[float, float] | None = Field(default=None, description="[low, high] bounds of the value.")
        truncation: Literal["prompt_left", "completion_right"] = "prompt_left"
        answer_tag: str | None = Field(default=None, description="Score only this <tag> section of the completion.")

        @model_validator(mode="after")
        def _consistent(self) -> RewardModel.Params:
            if (self.backend is None) == (self.backends is None):
                raise ValueError("give one of 'backend' (or 'model') for one reward model, or 'backends' for an ensemble")
            if self.backends is not None and len(set(self.backends)) != len(self.backends):
                raise ValueError(f"'backends' names a backend twice: {list(self.backends)}")
            if self.head == "regression" and self.weights is None:
                raise ValueError("head 'regression' needs 'weights' (one per output of the model)")
            if self.head != "regression" and self.weights is not None:
                raise ValueError(f"'weights' is for head 'regression', not {self.head!r}")
            if self.head != "ordinal" and (self.levels is not None or self.spread_penalty):
                raise ValueError(f"'levels' and 'spread_penalty' are for head 'ordinal', not {self.head!r}")
            if isinstance(self.normalize, tuple) and len(self.normalize) != len(self.members):
                raise ValueError(f"'normalize' has {len(self.normalize)} entries for {len(self.members)} models")
            if self.clip is not None and not (math.isfinite(self.clip[0]) and self.clip[0] < self.clip[1]):
                raise ValueError("'clip' must be [low, high] with finite low < high")
            return self

        @property
        def members(self) -> tuple[str, ...]:
            return self.backends if self.backends is not None else (self.backend,)  # type: ignore[return-value]

    # -- backends -----------------------------------------------------------------------------
    def backend_names(self) -> tuple[str, ...]:
        return self.params.members

    def bind_backends(self, backends: Mapping[str, Any]) -> None:
        missing = [m for m in self.params.members if m not in backends]
        if missing:
            raise SpecError(f"{self.name}: backends {missing} are not among the bound backends {sorted(backends)}")
        self._bound = {m: backends[m] for m in self.params.members}

    def prepare(self) -> None:
        """Load every member's weights now (see :meth:`RewardComponent.prepare`)."""
        from ..backends.sequence_scores import classifier_for

        for backend in getattr(self, "_bound", {}).values():
            if getattr(backend, "kind", None) == "transformers" and hasattr(backend, "source"):
                classifier_for(backend)

    def _member(self, name: str) -> Any:
        bound = getattr(self, "_bound", None)
        if not bound:
            raise SpecError(
                f"{self.name}: no backend bound for {name!r}; score through a spec that declares [backends.{name}] "
                f"(medreward.compose.Scorer binds it), or call bind_backends({{{name!r}: backend}}) first"
            )
        return bound[name]

    def check_backends(self, configs: Mapping[str, Any]) -> None:
        """Each member is a ``transformers`` backend over a sequence classifier whose outputs suit the
        head (read from ``config.json``, without loading the weights)."""
        for name in self.params.members:
            config = configs[name]
            if config.kind != "transformers":
                raise SpecError(f"{self.name}: backend {name!r} is kind {config.kind!r}; a reward model needs kind 'transformers'")
            source = resolve_model(name, config.model)
            if source.gguf_file:
                raise SpecError(
                    f"{self.name}: model {config.model!r} is a GGUF file, which holds a causal LM, not a sequence "
                    "classifier (a reward model needs a Hugging Face directory with a *ForSequenceClassification model)"
                )
            self._check_config(config.model, _read_config(source.directory / "config.json"))

    def _check_config(self, model: str, config: Mapping[str, Any]) -> None:
        architectures = config.get("architectures") or []
        if architectures and not any(str(a).endswith("ForSequenceClassification") for a in architectures):
            raise SpecError(
                f"{self.name}: model {model!r} is a {', '.join(map(str, architectures))}, not a sequence classifier "
                "(a reward model is an AutoModelForSequenceClassification, e.g. LlamaForSequenceClassification)"
            )
        labels = config.get("id2label")
        outputs = len(labels) if isinstance(labels, Mapping) else config.get("num_labels", 2)
        problem = self._outputs_problem(int(outputs))
        if problem:
            raise SpecError(f"{self.name}: model {model!r}: {problem}")

    def _outputs_problem(self, n: int) -> str | None:
        """Why a head with ``n`` outputs does not suit the parameters (None when it does)."""
        p = self.params
        if p.head == "scalar" and n != 1:
            return f"head 'scalar' reads 1 output but the model has {n} (use head 'regression' with weights, or 'ordinal')"
        if p.head == "regression" and p.weights is not None and len(p.weights) != n:
            return f"{len(p.weights)} weights for the model's {n} outputs"
        if p.head == "ordinal" and (n < 2 or (p.levels is not None and len(p.levels) != n)):
            return f"head 'ordinal' has {len(p.levels) if p.levels else 'at least 2'} levels but the model has {n} outputs"
        return None

    @property
    def output_range(self) -> tuple[float, float]:
        return self.params.clip if self.params.clip is not None else (-math.inf, math.inf)

    # -- scoring ------------------------------------------------------------------------------
    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        p = self.params
        results: list[ComponentScore | None] = [None] * len(rollouts)
        infos: list[dict[str, Any]] = [{} for _ in rollouts]
        requests: list[ScoreRequest] = []
        owners: list[int] = []
        for i, rollout in enumerate(rollouts):
            try:
                answer = answer_section(rollout, p.answer_tag)
                messages = _messages(rollout.prompt)
            except TextTypeError as exc:
                results[i] = ComponentScore.error(f"bad input: {exc}")
                continue
            if answer is None:
                results[i] = ComponentScore.not_applicable(f"no <{p.answer_tag}> section to score")
                continue
            if len(answer) > p.max_completion_chars:  # bounds tokenisation time on a 10 MB completion
                answer = answer[: p.max_completion_chars]
                infos[i]["completion_truncated"] = True
            requests.append(ScoreRequest(messages=messages, completion=answer, truncation=p.truncation))
            owners.append(i)
        if requests:
            member_values = self._member_rewards(requests)
            for j, i in enumerate(owners):
                results[i] = self._combine([values[j] for values in member_values], infos[i])
        return results  # type: ignore[return-value]

    def _member_rewards(self, requests: list[ScoreRequest]) -> list[list[_Member]]:
        """Per ensemble member (in order), per request: the member's reward or failure."""
        out: list[list[_Member]] = []
        for m, name in enumerate(self.params.members):
            backend = self._member(name)
            answers = backend.score(requests)
            if len(answers) != len(requests):  # a broken backend must not shift scores between samples
                raise RuntimeError(f"backend {name!r} returned {len(answers)} results for {len(requests)} requests")
            out.append([self._read(name, m, a) for a in answers])
        return out

    def _read(self, name: str, index: int, answer: ScoreResponse | BackendFailure) -> _Member:
        if isinstance(answer, BackendFailure):
            return _Member(name, failure=answer)
        problem = self._outputs_problem(len(answer.values))
        if problem is None and not all(math.isfinite(v) for v in answer.values):
            problem = f"non-finite outputs {list(answer.values)}"
        if problem is not None:
            return _Member(name, failure=BackendFailure("malformed", problem), model=answer.model)
        info: dict[str, Any] = {}
        raw = self._head(answer.values, info)
        norm = self.params.normalize
        if isinstance(norm, tuple):
            norm = norm[index]
        value = raw if norm is None else norm.apply(raw)
        return _Member(name, raw=raw, value=value, response=answer, info=info, model=answer.model)

    def _head(self, outputs: Sequence[float], info: dict[str, Any]) -> float:
        p = self.params
        if p.head == "scalar":
            return float(outputs[0])
        if p.head == "regression":
            assert p.weights is not None
            return math.fsum(w * o for w, o in zip(p.weights, outputs))
        levels = p.levels if p.levels is not None else tuple(float(i) for i in range(len(outputs)))
        expectation, spread = ordinal_stats(outputs, levels)
        info.update(expectation=expectation, spread=spread)
        return expectation - p.spread_penalty * spread

    def _combine(self, members: list[_Member], info: dict[str, Any]) -> ComponentScore:
        p = self.params
        single = len(members) == 1
        trace: dict[str, Any] = (
            {"backend": members[0].name, "model": members[0].model}
            if single
            else {"backends": [m.name for m in members], "models": [m.model for m in members]}
        )
        for m in members:
            if m.failure is not None:
                status = Status.TIMEOUT if m.failure.status == "timeout" else Status.ERROR
                score = ComponentScore.error(f"{m.name}: {m.failure.message}", status)
                score.info.update(trace, **info)
                return score
        info.update(trace)
        if any(m.response is not None and m.response.truncated_input for m in members):
            info["truncated"] = True
        values = [m.value for m in members]
        if single:
            m = members[0]
            info.update(raw=list(m.response.values), **m.info)  # type: ignore[union-attr]
            if p.normalize is not None:
                info["unnormalized"] = m.raw
            value = values[0]
        else:
            mean = math.fsum(values) / len(values)
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
            info.update(members={m.name: m.value for m in members}, ensemble_mean=mean, ensemble_std=std)
            if p.ensemble == "min":
                value = min(values)
            elif p.ensemble == "mean_minus_std":
                value = mean - p.k * std
            else:
                value = mean
        if p.clip is not None:
            low, high = p.clip
            if not low <= value <= high:
                info["clipped"] = True
                value = min(max(value, low), high)
        return ComponentScore.ok(value, **info)


@dataclass
class _Member:
    """One ensemble member's reading of one request."""

    name: str
    raw: float = math.nan
    value: float = math.nan
    response: ScoreResponse | None = None
    failure: BackendFailure | None = None
    info: dict[str, Any] | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.info is None:
            self.info = {}


def ordinal_stats(logits: Sequence[float], levels: Sequence[float]) -> tuple[float, float]:
    r"""Expectation and spread (standard deviation) of the ordinal distribution
    :math:`p = \mathrm{softmax}(\text{logits})` over ``levels`` (OPRM; see the module docstring).

    >>> e, s = ordinal_stats([0.0, 0.0], [1.0, 3.0])
    >>> e, s
    (2.0, 1.0)
    """
    top = max(logits)
    weights = [math.exp(v - top) for v in logits]
    total = math.fsum(weights)
    probs = [w / total for w in weights]
    expectation = math.fsum(p * v for p, v in zip(probs, levels))
    variance = math.fsum(p * (v - expectation) ** 2 for p, v in zip(probs, levels))
    return expectation, math.sqrt(max(variance, 0.0))


def _messages(prompt: Any) -> tuple[Message, ...]:
    """The prompt as chat turns: a string is one user turn (none when empty); a conversation is
    kept with its roles."""
    if prompt is None or prompt == "":
        return ()
    if isinstance(prompt, str):
        return ({"role": "user", "content": clean_surrogates(prompt)},)
    if isinstance(prompt, list):
        turns = []
        for message in prompt:
            if not isinstance(message, Mapping):
                raise TextTypeError(f"a prompt conversation must hold message objects, not {type(message).__name__}")
            turns.append({"role": str(message.get("role", "user")), "content": clean_surrogates(message_text(message.get("content")))})
        return tuple(turns)
    raise TextTypeError(f"the prompt must be text or a conversation, got {type(prompt).__name__}")


def _read_config(path: Any) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read the model's {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


# -- fitting the normalisation ----------------------------------------------------------------
def fit_normalization(
    component: RewardModel, rollouts: Sequence[Rollout | Mapping[str, Any]]
) -> Normalization | tuple[Normalization, ...]:
    """Fit ``normalize`` on a reference set: the mean and (population) standard deviation of the
    head reward (before any normalisation) over ``rollouts``; one per member for an ensemble.
    ``component`` must have its backends bound. Samples that fail are left out (logged).

    Raises:
        ValueError: fewer than two samples scored, or the rewards do not vary (std 0).
    """
    unnormalized = RewardModel(name=component.name, **{**component.params.model_dump(), "normalize": None, "clip": None})
    unnormalized._bound = component.__dict__.get("_bound", {})
    requests: list[ScoreRequest] = []
    for r in (Rollout.coerce(x) for x in rollouts):
        try:
            answer = answer_section(r, unnormalized.params.answer_tag)
            messages = _messages(r.prompt)
        except TextTypeError:
            continue
        if answer is not None:
            requests.append(ScoreRequest(messages, answer[: unnormalized.params.max_completion_chars], unnormalized.params.truncation))
    fitted = []
    for member, readings in zip(unnormalized.params.members, unnormalized._member_rewards(requests)):
        values = [m.raw for m in readings if m.failure is None]
        if len(values) < len(readings):
            log.warning("fit-norm: %d of %d samples failed on %s and are left out", len(readings) - len(values), len(readings), member)
        if len(values) < 2:
            raise ValueError(f"{member}: {len(values)} samples scored; fitting needs at least 2")
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        if not std > 0:
            raise ValueError(f"{member}: every reward is {mean:g} (std 0): nothing to normalise by")
        fitted.append(Normalization(mean=mean, std=std))
    return fitted[0] if len(fitted) == 1 else tuple(fitted)


def normalization_toml(fitted: Normalization | Sequence[Normalization]) -> str:
    """The ``normalize = …`` line to paste into the component's ``params``.

    >>> normalization_toml(Normalization(mean=1.5, std=0.25))
    'normalize = { mean = 1.5, std = 0.25 }'
    """
    def one(n: Normalization) -> str:
        return f"{{ mean = {n.mean!r}, std = {n.std!r} }}"

    if isinstance(fitted, Normalization):
        return f"normalize = {one(fitted)}"
    return "normalize = [" + ", ".join(one(n) for n in fitted) + "]"
