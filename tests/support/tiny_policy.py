"""A tiny random Llama policy with a character-level ChatML tokenizer, saved to a folder at test
time (nothing downloaded, nothing committed): what the training tests train."""

from __future__ import annotations

import string
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "<bos>", "<|im_end|>", "<|im_start|>"]


def tiny_tokenizer(chat_template: bool = True):
    import transformers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = sorted(set(string.printable) | set("µ°³⁹…–·−²≥≤×"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<|im_end|>"
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(tokenizer, *, max_positions: int = 8192):
    """A 2-layer, 32-wide random Llama for ``tokenizer`` (seeded: the same weights every time)."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def save_tiny_policy(folder: Path, *, chat_template: bool = True) -> Path:
    """Write :func:`tiny_llama` and its tokenizer to ``folder``; returns it."""
    tokenizer = tiny_tokenizer(chat_template)
    tiny_llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
