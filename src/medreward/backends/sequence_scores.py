"""Scoring conversations with a local sequence-classification (reward) model: the work behind
:meth:`TransformersBackend.score <medreward.backends.transformers.TransformersBackend.score>`.

Per call: one ``AutoModelForSequenceClassification`` per (weights, device, dtype) in the process
(:func:`~medreward.backends.models.shared_model`) → each request laid out with the tokenizer's chat
template (the prompt's turns, then the completion as the assistant turn; a plain ``role: content``
layout when the tokenizer has none) → cut to the context (``truncation``, recorded in
``truncated_input``) → sorted by length and packed under ``max_batch_tokens``
(:func:`~medreward.backends.batching.run_packed`: a batch that fails, out of memory most often, is
split and retried, and only an input that fails alone gets a :class:`BackendFailure`) → one
:class:`ScoreResponse` per request in input order, with every output of the head as floats.

Padding is on the right with an attention mask, so every row keeps the positions it has alone and a
causal model's real tokens never see the padding. Classifiers such as Llama's pool at the rightmost
token that is not the configured ``pad_token_id``; that is the model's own rule and is kept. A model
whose config sets no pad token reads the last token when given one row; to keep that rule in a batch,
the padding id of each batch is one that none of its rows contains.

Truncation (the limit is ``max_context_tokens``, else the model's ``max_position_embeddings``):
``"prompt_left"`` drops prompt tokens from the start (a leading BOS token is kept), so the
completion and the template's closing tokens stay whole; if they alone exceed the limit, their start
is dropped too (the classifier reads the end). ``"completion_right"`` drops the end of the completion
(the template's closing tokens are kept); if the prompt alone exceeds the limit, its start is dropped.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..text import clean_surrogates
from .base import BackendFailure
from .batching import run_packed
from .models import load_sequence_classifier, pick_device, shared_model
from .scoring import ScoreRequest, ScoreResponse

__all__ = ["Classifier", "classifier_for", "score_conversations"]

log = logging.getLogger(__name__)

#: characters of an exception quoted in a failure message
_MESSAGE_CHARS = 300
#: stands for the completion while the chat template is rendered, to find where it lies
_PLACEHOLDER = "\u2063MEDREWARD-COMPLETION\u2063"


@dataclass
class Classifier:
    """A loaded sequence classifier, its tokenizer, and what scoring needs from them."""

    model: Any
    tokenizer: Any
    #: the model's own pad token (None: it pools at the last token of a single row)
    pad_id: int | None
    max_positions: int | None
    has_template: bool
    lock: threading.Lock = field(default_factory=threading.Lock)  # one forward at a time per model

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any) -> Classifier:
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        return cls(
            model=model,
            tokenizer=tokenizer,
            pad_id=getattr(config, "pad_token_id", None),
            max_positions=getattr(config, "max_position_embeddings", None),
            has_template=bool(getattr(tokenizer, "chat_template", None)),
        )


@dataclass
class _Input:
    ids: list[int]
    truncated: bool


def classifier_for(backend: Any) -> Classifier:
    """The backend's weights as a :class:`Classifier`, loaded once per process (and device, dtype).

    Raises:
        RuntimeError: the weights cannot be loaded as a sequence classifier (the message says why).
    """
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"needs the 'models' extra (pip install 'medreward[models]'): {', '.join(missing)} missing")
    device = pick_device(backend.config.device)
    dtype = backend.config.dtype
    source = backend.source
    key = (source.describe(), "sequence-classification", device, dtype)
    return shared_model(key, lambda: Classifier.wrap(*load_sequence_classifier(source, device, dtype)))


def score_conversations(backend: Any, requests: list[ScoreRequest]) -> list[ScoreResponse | BackendFailure]:
    """One :class:`ScoreResponse` (every head output, as floats) or :class:`BackendFailure` per
    request, in order (see the module docstring). ``backend`` is a
    :class:`~medreward.backends.transformers.TransformersBackend`; its ``packing``
    (:class:`~medreward.backends.batching.PackingStats`) accumulates the padding measured."""
    if not requests:
        return []
    failed = getattr(backend, "_score_load_error", None)
    if failed is None:
        try:
            clf = classifier_for(backend)
        except Exception as exc:  # remembered: weights that fail to load are not reloaded every batch
            failed = f"cannot load {backend.model!r} from {backend.source.describe()} as a sequence classifier: {_short(exc)}"
            log.error("backend %s: %s", backend.name, failed)
            backend._score_load_error = failed
    if failed is not None:
        return [BackendFailure("other", failed) for _ in requests]
    stats = getattr(backend, "packing", None)
    limit = backend.config.max_context_tokens or clf.max_positions
    out: list[ScoreResponse | BackendFailure | None] = [None] * len(requests)
    inputs: list[_Input] = []
    owners: list[int] = []
    for i, request in enumerate(requests):
        try:
            inputs.append(_encode(clf, request, limit))
            owners.append(i)
        except Exception as exc:  # a request the template or tokenizer refuses fails alone
            out[i] = BackendFailure("other", f"cannot build the model input: {_short(exc)}")

    def run(batch: list[_Input]) -> list[ScoreResponse]:
        started = time.perf_counter()
        rows = _forward(clf, [item.ids for item in batch])
        latency = time.perf_counter() - started
        return [
            ScoreResponse(values=row, model=backend.model, prompt_tokens=len(item.ids), truncated_input=item.truncated, latency_s=latency)
            for item, row in zip(batch, rows)
        ]

    results = run_packed(
        inputs,
        [len(item.ids) for item in inputs],
        run,
        max_batch_tokens=backend.config.batch_tokens(pick_device(backend.config.device)),
        stats=stats,
        label=f"backend {backend.name}: reward-model batch",
    )
    for i, result in zip(owners, results):
        out[i] = result
    return out  # type: ignore[return-value]


# -- input layout -----------------------------------------------------------------------------
def _encode(clf: Classifier, request: ScoreRequest, limit: int | None) -> _Input:
    messages = [{"role": str(m.get("role", "user")), "content": clean_surrogates(str(m.get("content", "")))} for m in request.messages]
    completion = clean_surrogates(request.completion)
    head, completion_ids, tail = _segments(clf, messages, completion)
    return _truncate(head, completion_ids, tail, limit, request.truncation, clf.tokenizer.bos_token_id)


def _segments(clf: Classifier, messages: list[dict[str, str]], completion: str) -> tuple[list[int], list[int], list[int]]:
    """Token ids of the prompt part, the completion and the template's closing tokens of the full
    layout. The full text is tokenised once (so ids equal those of tokenising the whole text), and
    each token goes to the part where it starts."""
    tok = clf.tokenizer
    turns = [*messages, {"role": "assistant", "content": _PLACEHOLDER}]
    if clf.has_template:
        layout = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=False)
        special = False  # the template writes its own special tokens
    else:
        layout = "".join(f"{m['role']}: {m['content']}\n" for m in turns)
        special = True  # e.g. a BERT classifier's [CLS] … [SEP]
    if layout.count(_PLACEHOLDER) != 1 or not getattr(tok, "is_fast", False):
        # the template rewrote the content, or a slow tokenizer gives no offsets: the whole layout is
        # one part (truncation then cuts its start or its end)
        turns[-1]["content"] = completion
        text = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=False) if clf.has_template else ""
        text = text or "".join(f"{m['role']}: {m['content']}\n" for m in turns)
        return [], list(tok(text, add_special_tokens=special)["input_ids"]), []
    before, after = layout.split(_PLACEHOLDER)
    text = before + completion + after
    start, end = len(before), len(before) + len(completion)
    encoded = tok(text, add_special_tokens=special, return_offsets_mapping=True)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for token, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        if a == b:  # a special token the tokenizer added: [CLS] opens, [SEP] closes
            parts[0 if not parts[1] and not parts[2] else 2].append(token)
        else:
            parts[0 if a < start else 1 if a < end else 2].append(token)
    return parts


def _truncate(head: list[int], body: list[int], tail: list[int], limit: int | None, mode: str, bos: int | None) -> _Input:
    total = len(head) + len(body) + len(tail)
    if not limit or total <= limit:
        return _Input(head + body + tail, False)
    keep_bos = bool(head) and bos is not None and head[0] == bos and limit > 1
    lead = [head[0]] if keep_bos else []
    if mode == "completion_right":
        room = limit - len(head) - len(tail)
        if room >= 0:
            return _Input(head + body[:room] + tail, True)
        rest = (head[len(lead) :] + tail)[len(head) - len(lead) + len(tail) - (limit - len(lead)) :]
        return _Input(lead + rest, True)
    # prompt_left: drop the prompt's start, then (if still too long) the start of what remains
    rest = head[len(lead) :] + body + tail
    return _Input(lead + rest[len(rest) - (limit - len(lead)) :], True)


# -- the forward pass -------------------------------------------------------------------------
def _forward(clf: Classifier, rows: list[list[int]]) -> list[tuple[float, ...]]:
    import torch

    width = max(len(r) for r in rows)
    pad = clf.pad_id if clf.pad_id is not None else _free_id(rows, clf.tokenizer)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):  # right padding: each row keeps the positions it has alone
        input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        attention[i, : len(r)] = 1
    model = clf.model
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    with clf.lock:
        restore = config.pad_token_id
        config.pad_token_id = pad  # a model without a pad token refuses batches; this id is in no row
        try:
            with torch.inference_mode():
                logits = model(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device)).logits
        finally:
            config.pad_token_id = restore
    return [tuple(float(v) for v in row) for row in logits.float().cpu().tolist()]


def _free_id(rows: list[list[int]], tokenizer: Any) -> int:
    """A token id that no row contains (the tokenizer's pad or EOS id when free), so that the
    rightmost non-padding token of each row is its last one."""
    used = {t for r in rows for t in r}
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None and candidate not in used:
            return int(candidate)
    return next(i for i in range(len(used) + 1) if i not in used)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_MESSAGE_CHARS]
