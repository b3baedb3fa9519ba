"""Loading the policy: paths checked before loading, a chat template required, eos aligned with
the model's generation config."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from tiny_policy import save_tiny_policy  # noqa: E402

from medreward.errors import InputError  # noqa: E402
from medreward.training.models import check_model_source, load_policy, load_tokenizer  # noqa: E402


def test_sources_are_checked_without_loading(tmp_path):
    with pytest.raises(InputError, match="no such folder .* nothing is downloaded"):
        check_model_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a model folder"):
        check_model_source(str(tmp_path / "empty"))


def test_tokenizer_without_chat_template_is_refused(tmp_path):
    source = check_model_source(str(save_tiny_policy(tmp_path / "plain", chat_template=False)))
    with pytest.raises(InputError, match="no chat template"):
        load_tokenizer(source)


def test_eos_follows_the_generation_config(tmp_path):
    folder = save_tiny_policy(tmp_path / "m")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.eos_token = "<bos>"  # as SmolLM2's GGUF tokenizer reports <|im_start|>
    tok.pad_token = "<bos>"
    tok.save_pretrained(folder)
    model, tokenizer = load_policy(check_model_source(str(folder)))
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
