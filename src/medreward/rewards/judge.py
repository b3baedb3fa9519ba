"""``judge``: YES/NO correctness against a reference answer, graded by an LLM (MediX-R1 style);
and :class:`ModelComponent`, the base of components that call a model backend."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator

from ..backends.base import Backend, BackendFailure, ChatRequest, ChatResponse, TokenLogprob
from ..errors import SpecError
from ..parse.verdicts import parse_yes_no
from ..records import ComponentScore, Rollout, Status
from ..text import TextTypeError
from .base import ComponentParams, RewardComponent, answer_section, register
from .judge_prompts import (
    JUDGE_DEFAULT_TEMPLATE,
    JUDGE_SYSTEM,
    JUDGE_VERSION,
    fence,
    injection_patterns,
    validate_judge_template,
)

__all__ = ["Judge", "ModelComponent", "ModelParams", "yes_probability"]

logger = logging.getLogger(__name__)


class ModelParams(ComponentParams):
    """Parameters every model-backed component has."""

    backend: str = Field(default="judge", min_length=1, description="Name of the spec's [backends.NAME] table.")
    max_tokens: int = Field(default=512, ge=1, le=32_768)
    #: a longer completion is cut to its first max_completion_chars characters (info["completion_truncated"])
    max_completion_chars: int = Field(default=50_000, ge=100)


@dataclass
class Outcome:
    """What one request came to after at most one retry: a parsed value, or a failure."""

    value: Any = None
    response: ChatResponse | None = None
    failure: BackendFailure | None = None
    problem: str | None = None  # unusable answer after the retry
    retried: bool = False


class ModelComponent(RewardComponent):
    """Base of components that call a model backend (docs/contracts.md#model-backed-rewards).

    The backend named by ``params.backend`` is bound by the Scorer (:meth:`bind_backends`); the
    component builds the requests of a whole batch, makes one :meth:`Backend.complete` call (two when
    answers need a retry) and maps the answers back in order. A failed call is never a score: it is
    that sample's ``error`` (``timeout`` for a timeout) with ``info["error"]``.
    """

    Params: ClassVar[type[ModelParams]] = ModelParams
    _backend: Backend | None = None

    def backend_names(self) -> tuple[str, ...]:
        return (self.params.backend,)

    def bind_backends(self, backends: Mapping[str, Any]) -> None:
        backend = backends.get(self.params.backend)
        if backend is None:
            raise SpecError(f"{self.name}: backend {self.params.backend!r} is not among the bound backends {sorted(backends)}")
        self._backend = backend

    def backend(self) -> Backend:
        if self._backend is None:
            raise SpecError(
                f"{self.name}: no backend bound for {self.params.backend!r}; score through a spec that declares "
                f"[backends.{self.params.backend}] (medreward.compose.Scorer binds it), or call "
                f"bind_backends({{{self.params.backend!r}: backend}}) first"
            )
        return self._backend

    def run_requests(
        self,
        requests: Sequence[ChatRequest],
        parse: Callable[[int, ChatResponse], tuple[Any, str | None]],
        *,
        retry: Callable[[ChatRequest, str], ChatRequest] | None = None,
    ) -> list[Outcome]:
        """Send ``requests`` in one call; ``parse(index, response)`` gives ``(value, problem)``. Requests
        whose answer has a problem are re-sent once, rebuilt by ``retry(request, problem)``, in a
        second call; a second problem makes the outcome's ``problem``."""
        if not requests:
            return []
        backend = self.backend()
        outcomes = [Outcome() for _ in requests]
        again: list[int] = []
        unusable: list[ChatRequest] = []  # answers that came back but cannot be used: never kept in the cache
        for i, result in enumerate(self._complete(backend, requests)):
            problem = self._settle(outcomes[i], result, parse, i)
            if problem is not None:
                unusable.append(requests[i])
                if retry is None:
                    outcomes[i].problem = problem
                else:
                    again.append(i)
        if again:
            rebuilt = [retry(requests[i], outcomes[i].problem or "") for i in again]  # type: ignore[misc]
            for i, request, result in zip(again, rebuilt, self._complete(backend, rebuilt)):
                outcomes[i].retried = True
                problem = self._settle(outcomes[i], result, parse, i)
                if problem is not None:
                    outcomes[i].problem = problem
                    unusable.append(request)
        if unusable:
            backend.forget(unusable)
        return outcomes

    def _complete(self, backend: Backend, requests: Sequence[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        results = backend.complete(list(requests))
        if len(results) != len(requests):  # a broken backend must not shift verdicts between samples
            raise RuntimeError(f"backend {backend.name!r} returned {len(results)} results for {len(requests)} requests")
        return results

    @staticmethod
    def _settle(outcome: Outcome, result: ChatResponse | BackendFailure, parse: Callable, index: int) -> str | None:
        outcome.failure = outcome.value = outcome.problem = None
        if isinstance(result, BackendFailure):
            outcome.failure = result
            return None
        outcome.response = result
        value, problem = parse(index, result)
        if problem is None:
            outcome.value = value
        else:
            outcome.problem = problem
        return problem

    def outcome_error(self, outcome: Outcome, info: dict[str, Any]) -> ComponentScore | None:
        """The sample's ``error``/``timeout`` score when ``outcome`` failed, else ``None``."""
        if outcome.failure is not None:
            status = Status.TIMEOUT if outcome.failure.status == "timeout" else Status.ERROR
            score = ComponentScore.error(f"{self.params.backend}: {outcome.failure.message}", status)
        elif outcome.problem is not None:
            tried = "after a retry" if outcome.retried else ""
            score = ComponentScore.error(f"unusable judge answer {tried}: {outcome.problem}".replace("  ", " "))
        else:
            return None
        score.info.update(info)
        return score

    def trace(self, outcomes: Sequence[Outcome], template: str) -> dict[str, Any]:
        """``info`` that lets a score be traced: backend, model id, template version, cache use."""
        backend = self._backend
        responses = [o.response for o in outcomes if o.response is not None]
        info: dict[str, Any] = {
            "backend": self.params.backend,
            "model": responses[0].model if responses else getattr(backend, "model", None),
            "template": template,
        }
        if responses and all(r.cached for r in responses):
            info["cached"] = True
        if any(r.truncated_input for r in responses):
            info["truncated_input"] = True
        if any(o.retried for o in outcomes):
            info["retried"] = True
        return info

    def fenced_completion(self, text: str, info: dict[str, Any]) -> str:
        """``text`` cut to ``max_completion_chars`` and fenced as data; records truncation and any
        suspected prompt injection in ``info``."""
        limit = self.params.max_completion_chars
        if len(text) > limit:
            text = text[:limit]
            info["completion_truncated"] = True
        patterns = injection_patterns(text)
        block, escaped = fence(text)
        if patterns or escaped:
            info["injection_suspected"] = True
            info["injection_patterns"] = patterns
        return block


def yes_probability(candidates: Sequence[TokenLogprob]) -> float | None:
    """P(YES) renormalised over {YES, NO} from one position's candidate tokens (case- and
    space-insensitive: ``" Yes"`` and ``"YES"`` both count as YES, their probabilities summed).
    ``None`` when no candidate is YES or NO.

    >>> import math
    >>> round(yes_probability([TokenLogprob("YES", math.log(0.6)), TokenLogprob(" no", math.log(0.2))]), 6)
    0.75
    """
    yes = no = 0.0
    for cand in candidates:
        if not (isinstance(cand.logprob, (int, float)) and math.isfinite(cand.logprob)):
            continue
        word = cand.token.strip().lower()
        if word == "yes":
            yes += math.exp(cand.logprob)
        elif word == "no":
            no += math.exp(cand.logprob)
    if yes + no <= 0.0:
        return None
    return yes / (yes + no)


@register
class Judge(ModelComponent):
    r"""YES/NO correctness of the answer against ``reference.answer``, graded by an LLM judge.

    Formula: with log-probabilities (``logprobs = true``, the default, asking for ``top_logprobs``
    candidates), :math:`R = P(\mathrm{YES}) / (P(\mathrm{YES}) + P(\mathrm{NO}))` over the first
    generated token's candidates (case/space-insensitive, variants summed); when the server returns
    no log-probs, or the first token has no YES/NO candidate, :math:`R = 1` for YES and 0 for NO read
    from the text (``info["score_source"]`` says which). Neither YES nor NO → ``error``.

    Source: the LLM-judge accuracy reward of MediX-R1 (a judge answers whether the answer agrees with
    the reference); the renormalised P(YES) is the usual soft version of a binary judge
    (docs/formulas.md#llm-judge-yesno).

    The prompt is ``template`` (a ``str.format`` template with ``{question}``, ``{reference}`` and
    ``{answer}``, validated at spec load); ``{answer}`` receives the answer fenced as data (see
    ``judge_prompts.fence``). The answer is the ``answer_tag`` section (default ``None``: the whole
    completion); a missing section scores 0 with ``info["reason"]``. Without ``reference[field]``
    the component is ``not_applicable``. ``info``: ``verdict``, ``p_yes``, ``score_source``,
    ``backend``, ``model``, ``template`` (version), ``injection_suspected`` when the answer seems to
    address the judge.

    >>> from medreward.backends import ChatResponse
    >>> class Yes:
    ...     name, kind, model = "judge", "fake", "fake-judge"
    ...     def complete(self, requests): return [ChatResponse("YES", "fake-judge") for _ in requests]
    >>> judge = Judge()
    >>> judge.bind_backends({"judge": Yes()})
    >>> judge(["Aspirin"], [{"answer": "aspirin"}])
    [1.0]
    """

    kind = "judge"

    class Params(ModelParams):
        field: str = Field(default="answer", min_length=1)
        answer_tag: str | None = None
        template: str = JUDGE_DEFAULT_TEMPLATE
        system: str | None = JUDGE_SYSTEM
        logprobs: bool = True
        top_logprobs: int = Field(default=5, ge=2, le=20)
        max_tokens: int = Field(default=4, ge=1, le=32_768)

        @field_validator("template")
        @classmethod
        def _template(cls, value: str) -> str:
            return validate_judge_template(value)

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def _version(self) -> str:
        p = self.params
        custom = p.template != JUDGE_DEFAULT_TEMPLATE or p.system != JUDGE_SYSTEM
        return JUDGE_VERSION + ("+custom" if custom else "")

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        p = self.params
        results: list[ComponentScore | None] = [None] * len(rollouts)
        infos: list[dict[str, Any]] = [{} for _ in rollouts]
        requests: list[ChatRequest] = []
        owners: list[int] = []
        version = self._version()
        for i, rollout in enumerate(rollouts):
            reference = rollout.reference.get(p.field)
            if reference is None or (isinstance(reference, str) and not reference.strip()):
                results[i] = ComponentScore.not_applicable(f"reference has no {p.field!r}")
                continue
            try:
                answer = answer_section(rollout, p.answer_tag)
                question = rollout.prompt_text
            except TextTypeError as exc:
                results[i] = ComponentScore.error(f"bad input: {exc}")
                continue
            if answer is None:
                results[i] = ComponentScore(0.0, info={"reason": f"no <{p.answer_tag}> section"})
                continue
            block = self.fenced_completion(answer, infos[i])
            content = p.template.format(question=question, reference=str(reference), answer=block)
            messages = ({"role": "system", "content": p.system},) if p.system else ()
            requests.append(
                ChatRequest(
                    messages=(*messages, {"role": "user", "content": content}),
                    template=version,
                    max_tokens=p.max_tokens,
                    top_logprobs=p.top_logprobs if p.logprobs else None,
                    reads_prefix=True,  # only the first token / leading word is read: a cut answer is whole
                )
            )
            owners.append(i)
        outcomes = self.run_requests(requests, _read_yes_no)
        for i, outcome in zip(owners, outcomes):
            info = {**self.trace([outcome], version), **infos[i]}
            failed = self.outcome_error(outcome, info)
            if failed is not None:
                results[i] = failed
                continue
            value, verdict, source = outcome.value
            info.update(verdict="YES" if verdict else "NO", score_source=source)
            if source == "logprobs":
                info["p_yes"] = value
            results[i] = ComponentScore.ok(value, **info)
        return results  # type: ignore[return-value]


def _read_yes_no(_index: int, response: ChatResponse) -> tuple[tuple[float, bool, str] | None, str | None]:
    verdict = parse_yes_no(response.text)
    if response.logprobs:
        p_yes = yes_probability(response.logprobs[0])
        if p_yes is not None:
            return (p_yes, p_yes >= 0.5 if verdict is None else verdict, "logprobs"), None
    if verdict is None:
        return None, f"neither YES nor NO in {response.text[:80]!r}"
    return (1.0 if verdict else 0.0, verdict, "text"), None

