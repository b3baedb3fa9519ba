"""A real TRL GRPOTrainer run (tiny random Llama, char-level tokenizer, CPU) with medreward rewards.

Nothing is downloaded: the model and the tokenizer are built here. Needs the `train` extra
(torch, transformers, trl, datasets); skipped without it.
"""

from __future__ import annotations

import math
import string

import pytest

pytestmark = [pytest.mark.train, pytest.mark.slow]

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")

from medreward.integrations.trl import (
    async_reward_func,
    reward_func,
    reward_funcs_per_component,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer():
    """A character-level tokenizer with ChatML-style special tokens, built in memory."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    chars = sorted(set(string.printable))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(tokenizer):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return transformers.LlamaForCausalLM(config)


def toxicology_dataset():
    rows = [
        ("Pinpoint pupils, apnea, coma. Substance?", ["opioids"]),
        ("Agitation, mydriasis, tachycardia after a party. Substance?", ["stimulants"]),
        ("Slurred speech, ataxia, odor of alcohol. Substance?", ["ethanol"]),
        ("Miosis and ethanol odor. Substances?", ["opioids", "ethanol"]),
    ]
    return datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": q}], "substances": subs} for q, subs in rows]
    )


def test_grpo_trainer_logs_medreward_rewards(tmp_path):
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    whole = reward_func("toxicology")
    concurrent = async_reward_func("toxicology", name="medreward_toxicology_async")
    per_component, weights = reward_funcs_per_component("toxicology")
    args = trl.GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        logging_steps=1,
        learning_rate=1e-4,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        reward_weights=[1.0, 0.0, *weights],
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[whole, concurrent, *per_component],
        args=args,
        train_dataset=toxicology_dataset(),
        processing_class=tokenizer,
    )
    trainer.train()

    logs = [entry for entry in trainer.state.log_history if "rewards/medreward_toxicology/mean" in entry]
    assert len(logs) == 2, trainer.state.log_history
    for entry in logs:
        for key in (
            "rewards/medreward_toxicology/mean",
            "rewards/medreward_toxicology_async/mean",
            "rewards/medreward_toxicology_format/mean",
            "rewards/medreward_toxicology_substances/mean",
            "medreward/toxicology/format/mean",
            "medreward/toxicology/substances/mean",
            "medreward/toxicology/substances/frac_error",
            "medreward/medreward_toxicology/frac_none",
        ):
            assert key in entry, (key, sorted(entry))
            assert math.isfinite(entry[key])
        # random text has no <answer>: every sample is scored (not None), and scores 0
        assert entry["medreward/medreward_toxicology/frac_none"] == 0.0
        assert entry["rewards/medreward_toxicology/mean"] == entry["rewards/medreward_toxicology_async/mean"]
        # the spec's reward equals TRL's weighted sum of the per-component callables
        expected = 0.1 * entry["rewards/medreward_toxicology_format/mean"] + 0.9 * entry[
            "rewards/medreward_toxicology_substances/mean"
        ]
        assert entry["rewards/medreward_toxicology/mean"] == pytest.approx(expected, abs=1e-6)
