"""Teacher forcing on a local causal LM: the per-token log-probabilities of a given ``target`` after a
given context (:class:`~medreward.backends.scoring.LogprobRequest`), for likelihood rewards.

Layout of one request:

- **context** = the chat template of ``messages`` with the generation prompt (a plain ``role: content``
  layout ending in ``assistant:`` when the tokenizer has no template), followed by ``prefix`` (the
  assistant's text so far). With no ``messages`` the context is ``prefix`` alone (raw text, e.g. a
  prompt the caller rendered itself); an empty context is the tokenizer's BOS token.
- **target** = the scored text.

**Tokenization boundary.** Context and target are tokenized *separately* (no special tokens added:
the chat template already holds them) and their ids concatenated, as lm-eval-harness does for
``loglikelihood`` requests (it also moves the context's trailing spaces into the target; this does not:
the target is exactly the text given). So the target's tokens are exactly the tokens of the target text, whatever
the context ends with, and the same target is scored over the same tokens after every context (a
joint tokenization could merge the last context characters with the first target characters, and the
score would then cover a token that is half context). The price: where a joint tokenization would
merge across the boundary, the ids are not the ones the model would have produced itself.

With ``ids = context_ids + target_ids`` and ``c = len(context_ids)``, the target's log-probs are
``log_softmax(logits[t - 1])[ids[t]]`` for ``t`` in ``c .. len(ids) - 1``, computed in float32.

**Truncation** to the model's context (``max_context_tokens``, default the model's maximum positions):
``"prompt_left"`` drops the start of the context (the target stays whole); ``"completion_right"`` cuts
the end of the target (the context stays whole). Either way at least one context token and one target
token are kept: a target longer than the whole window is cut at its end even under ``prompt_left``, and
a context that leaves no room under ``completion_right`` loses its start. ``truncated_input`` records it.

**Batching**: requests are packed by length under ``max_batch_tokens`` (rows × longest row) with
:func:`~medreward.backends.batching.run_packed`; rows are left-padded, with an attention mask and
explicit position ids ``0 .. n-1`` from each row's first real token, under ``torch.inference_mode``.
Left padding puts every target at the end of its row, so the model's output head runs only on the last
``longest target + 1`` positions (``logits_to_keep``, for models that take it): the logits of a batch
are ``rows × (target + 1) × vocabulary`` rather than ``rows × width × vocabulary`` (a 49k vocabulary at
16k tokens would be 3 GB of fp32 logits). A batch that raises (out of
memory) is split in two and retried; a request that fails alone gets a ``BackendFailure`` and the others
are unaffected. Results come back in input order.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..text import clean_surrogates
from .base import BackendFailure
from .batching import PackingStats, run_packed
from .scoring import LogprobRequest, LogprobResponse

__all__ = ["TokenizedRequest", "render_context", "target_logprobs", "tokenize_request"]

log = logging.getLogger(__name__)

#: characters of an exception quoted in a failure message
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class TokenizedRequest:
    """One request's ids after truncation: the model reads ``context + target`` and scores ``target``."""

    context: tuple[int, ...]
    target: tuple[int, ...]
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.context) + len(self.target)


def render_context(tokenizer: Any, request: LogprobRequest) -> str:
    """The context text of ``request`` (see the module docstring): chat template of the messages with
    the generation prompt, then the prefix. Lone surrogates become U+FFFD."""
    prefix = clean_surrogates(request.prefix)
    if not request.messages:
        return prefix
    messages = [
        {"role": str(m.get("role", "user")), "content": clean_surrogates(str(m.get("content", "")))} for m in request.messages
    ]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return text + prefix


def tokenize_request(tokenizer: Any, request: LogprobRequest, limit: int | None) -> TokenizedRequest:
    """Context and target ids of ``request``, tokenized separately and cut to ``limit`` tokens in all
    (see the module docstring).

    Raises:
        ValueError: the context is empty and the tokenizer has no BOS token to stand for it.
    """
    context = list(tokenizer(render_context(tokenizer, request), add_special_tokens=False)["input_ids"])
    target = list(tokenizer(clean_surrogates(request.target), add_special_tokens=False)["input_ids"]) if request.target else []
    if not context:
        if tokenizer.bos_token_id is None:
            raise ValueError("the context is empty and the tokenizer has no BOS token to predict the first target token from")
        context = [tokenizer.bos_token_id]
    truncated = False
    if limit is not None and len(context) + len(target) > limit:
        truncated = True
        if limit < 2:
            raise ValueError(f"a context of {limit} token(s) cannot hold a context token and a target token")
        if request.truncation == "completion_right":
            keep_context = min(len(context), limit - 1)
            context = context[len(context) - keep_context :]
            target = target[: limit - len(context)]
        else:  # prompt_left
            target = target[: limit - 1]
            context = context[len(context) - (limit - len(target)) :]
    return TokenizedRequest(tuple(context), tuple(target), truncated)


def target_logprobs(
    backend: Any, requests: Sequence[LogprobRequest], *, stats: PackingStats | None = None
) -> list[LogprobResponse | BackendFailure]:
    """Per-token log-probabilities of each request's target under ``backend``'s causal LM (one
    :class:`LogprobResponse` or :class:`BackendFailure` per request, in input order).

    ``backend`` gives ``causal_lm() -> (model, tokenizer)``, ``config.batch_tokens(device)``,
    ``config.max_context_tokens`` and ``model`` (the model id in responses); ``stats`` receives the
    packing statistics (a ``packing`` attribute of the backend, when it has one, is used otherwise).
    """
    requests = list(requests)
    if not requests:
        return []
    try:
        model, tokenizer = backend.causal_lm()
    except Exception as exc:  # noqa: BLE001 - a model that cannot load fails every request with the reason
        return [BackendFailure("other", _short(exc)) for _ in requests]
    limit = backend.config.max_context_tokens or getattr(model.config, "max_position_embeddings", None)
    out: list[LogprobResponse | BackendFailure | None] = [None] * len(requests)
    ready: list[tuple[int, TokenizedRequest]] = []
    for i, request in enumerate(requests):
        try:
            ready.append((i, tokenize_request(tokenizer, request, limit)))
        except Exception as exc:  # noqa: BLE001 - a bad request fails alone
            out[i] = BackendFailure("other", f"cannot tokenize the request: {_short(exc)}")
    if stats is None:
        stats = getattr(backend, "packing", None)
    model_id = str(getattr(backend, "model", "") or "")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def run(batch: list[TokenizedRequest]) -> list[LogprobResponse]:
        return _forward(model, tokenizer, batch, pad, model_id)

    results = run_packed(
        [t for _, t in ready],
        [t.length for _, t in ready],
        run,
        max_batch_tokens=backend.config.batch_tokens(str(model.device)),
        stats=stats,
        label="teacher-forced forward pass",
    )
    for (i, _), result in zip(ready, results):
        out[i] = result
    return out  # type: ignore[return-value]


def _forward(model: Any, tokenizer: Any, batch: list[TokenizedRequest], pad: int, model_id: str) -> list[LogprobResponse]:
    import torch

    width = max(t.length for t in batch)
    keep = max(len(t.target) for t in batch) + 1  # logits of the positions that predict a target token
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, t in enumerate(batch):  # left padding: every target ends at the last position
        input_ids[row, width - t.length :] = torch.tensor(t.context + t.target, dtype=torch.long)
        attention[row, width - t.length :] = 1
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)  # each row counts from 0 at its first real token
    device = model.device
    kwargs: dict[str, Any] = {}
    if _takes_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep  # the lm head runs on the last `keep` positions only, not the whole batch
    started = time.perf_counter()
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), position_ids=positions.to(device), **kwargs
        ).logits
        logits = logits[:, -keep:]  # position j of this slice is position width - keep + j of the row
        values: list[list[float]] = []
        for row, t in enumerate(batch):
            n = len(t.target)
            if n == 0:
                values.append([])
                continue
            # the target's tokens sit at width-n .. width-1 and are predicted from width-n-1 .. width-2
            rows = torch.log_softmax(logits[row, keep - n - 1 : keep - 1].float(), dim=-1)  # fp32 whatever the dtype
            ids = torch.tensor(t.target, dtype=torch.long, device=rows.device).unsqueeze(1)
            values.append(rows.gather(1, ids).squeeze(1).tolist())
    latency = time.perf_counter() - started
    return [
        LogprobResponse(
            logprobs=tuple(v),
            tokens=tuple(tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in t.target),
            model=model_id,
            prompt_tokens=len(t.context),
            completion_tokens=len(t.target),
            truncated_input=t.truncated,
            latency_s=latency,
        )
        for t, v in zip(batch, values)
    ]


def _takes_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_MESSAGE_CHARS]
