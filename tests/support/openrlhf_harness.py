"""OpenRLHF's own rollout client in tests: its ``SingleTurnAgentExecutor`` (the code that calls
``--reward.remote_url``, a file or an HTTP endpoint), a character-level ChatML tokenizer, and a stub
engine that plays vLLM's part by 'generating' a fixed response."""

from __future__ import annotations

import string
from types import SimpleNamespace

import pytest


def executor_cls():
    """OpenRLHF's ``SingleTurnAgentExecutor``; skips the test where openrlhf does not import."""
    try:
        from openrlhf.utils.agent import SingleTurnAgentExecutor
    except Exception as exc:  # noqa: BLE001 - optional; any import failure means "not here"
        pytest.skip(f"openrlhf is not importable: {exc}")
    return SingleTurnAgentExecutor


def chatml_tokenizer():
    """A tiny character-level tokenizer with ChatML's special tokens (no model download)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    specials = ["<pad>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(string.printable)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                                eos_token="<|im_end|>")  # fmt: skip


class StubEngine:
    """Plays vLLM's part: 'generates' a fixed response."""

    def __init__(self, tokenizer, response):
        self.ids = tokenizer(response, add_special_tokens=False)["input_ids"]

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        out = SimpleNamespace(token_ids=self.ids, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])
