"""OpenRLHF adapter: reward_func(queries, prompts, labels) and the /get_reward HTTP schema (0.11.2).

Contract tests mirror OpenRLHF's calls (one rollout per call, lists of length 1, queries =
prompt + response with special tokens); where openrlhf imports (``pip install --no-deps
openrlhf`` plus aiohttp/pylatexenc, CPU), the last tests load our file through OpenRLHF's own
``SingleTurnAgentExecutor`` and run its reward step with a stub generation engine.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from openrlhf_harness import StubEngine, chatml_tokenizer, executor_cls
from hypothesis import given, settings
from hypothesis import strategies as st

import medreward.integrations.openrlhf as orl
from medreward import Scorer, load_spec
from medreward.errors import MedrewardError, RecordError
from medreward.integrations import coerce_reference
from medreward.integrations.openrlhf import (
    PayloadError,
    handle_get_reward,
    make_reward_func,
    reward_func,
    split_response,
)
from scaling import assert_linear

GOOD = "<think>miosis</think><answer>opioids</answer>"
HALF = "<think>miosis</think><answer>opioids, ethanol</answer>"
CHATML_PROMPT = "<|im_start|>system\nYou are a toxicologist.<|im_end|>\n<|im_start|>user\nPupils?<|im_end|>\n<|im_start|>assistant\n"
LLAMA3_PROMPT = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nPupils?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


@pytest.mark.parametrize(
    "query, prompt, expected",
    [
        (CHATML_PROMPT + GOOD + "<|im_end|>", CHATML_PROMPT, GOOD),
        (CHATML_PROMPT + GOOD + "<|im_end|>\n<|endoftext|>", CHATML_PROMPT, GOOD),
        (CHATML_PROMPT + GOOD + "<|im_end|>", "a prompt that was re-rendered", GOOD),  # marker fallback
        (LLAMA3_PROMPT + GOOD + "<|eot_id|>", LLAMA3_PROMPT, GOOD),
        (LLAMA3_PROMPT + GOOD + "<|eot_id|>", None, GOOD),
        ("<s>" + "Q: pupils?\nA:" + GOOD + "</s>", "Q: pupils?\nA:", GOOD),  # prompt found inside
        ("<s>[INST] Q [/INST] " + GOOD + "</s><pad><pad>", "unrelated", GOOD),
        (GOOD, None, GOOD),  # nothing to split on: the whole query
        (CHATML_PROMPT + "<|im_end|>", CHATML_PROMPT, ""),  # an empty response stays empty
        # the assistant marker inside the response does not confuse the prompt-prefix split
        (CHATML_PROMPT + "say <|im_start|>assistant x", CHATML_PROMPT, "say <|im_start|>assistant x"),
    ],
)
def test_split_response(query, prompt, expected):
    assert split_response(query, prompt) == expected


def test_reward_func_returns_tensors_with_extra_logs():
    torch = pytest.importorskip("torch")
    fn = make_reward_func("toxicology")
    out = fn([CHATML_PROMPT + HALF + "<|im_end|>"], [CHATML_PROMPT], ['{"substances": ["opioids"]}'])
    assert set(out) == {"rewards", "scores", "extra_logs"}
    assert isinstance(out["rewards"], torch.Tensor) and out["rewards"].shape == (1,)
    assert out["rewards"].dtype == torch.float32 and out["scores"].shape == (1,)
    [record] = Scorer("toxicology").score([{"completion": HALF, "reference": {"substances": ["opioids"]}}])
    assert out["rewards"].item() == pytest.approx(record.reward)
    logs = {k: v.tolist() for k, v in out["extra_logs"].items()}
    assert list(logs) == ["status_ok", "status_not_applicable", "status_error", "status_timeout", "format", "substances"]
    assert logs["status_ok"] == [1.0] and logs["substances"] == [pytest.approx(2 / 3)]


def test_lists_when_torch_is_not_wanted():
    out = make_reward_func("toxicology", as_tensors=False)([GOOD, HALF], ["", ""], ["opioids", "opioids"])
    assert out["rewards"] == [1.0, pytest.approx(0.1 + 0.6)] and out["scores"] == out["rewards"]
    assert all(isinstance(v, list) and len(v) == 2 for v in out["extra_logs"].values())


def test_labels_json_or_plain_and_bad_samples_get_the_sentinel():
    fn = make_reward_func("toxicology", as_tensors=False, failed_reward=-1.0)
    queries = [GOOD, GOOD, GOOD, GOOD, None]
    labels = ['{"substances": ["opioids"]}', "opioids", '["opioids"]', '{"substances": [', "opioids"]
    out = fn(queries, [""] * 5, labels)
    assert out["rewards"] == [1.0, 1.0, 1.0, -1.0, -1.0]
    assert out["extra_logs"]["status_error"] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert out["extra_logs"]["substances"][3:] == [0.0, 0.0]


def test_mismatched_lengths_are_an_error():
    fn = make_reward_func("toxicology")
    with pytest.raises(PayloadError, match="same length"):
        fn([GOOD, GOOD], [""], ["opioids", "opioids"])
    with pytest.raises(PayloadError, match="list of strings"):
        fn(GOOD, [""], ["opioids"])


def test_module_reward_func_picks_the_spec(monkeypatch):
    monkeypatch.delenv("MEDREWARD_SPEC", raising=False)
    monkeypatch.setattr(orl, "DEFAULT_SPEC", None)
    with pytest.raises(MedrewardError, match="no medreward spec chosen"):
        reward_func([GOOD], [""], ["opioids"])
    assert reward_func([GOOD], [""], ["opioids"], spec="toxicology", as_tensors=False)["rewards"] == [1.0]
    monkeypatch.setenv("MEDREWARD_SPEC", "mcq")
    assert reward_func(["<answer>B</answer>"], [""], ["B"], as_tensors=False)["rewards"] == [pytest.approx(0.9)]
    monkeypatch.delenv("MEDREWARD_SPEC")
    monkeypatch.setattr(orl, "DEFAULT_SPEC", "toxicology")
    assert reward_func([GOOD], [""], ["opioids"], as_tensors=False)["rewards"] == [1.0]


def test_http_handler_schema():
    payload = {"query": [CHATML_PROMPT + GOOD + "<|im_end|>"], "prompts": [CHATML_PROMPT], "labels": ["opioids"]}
    body = handle_get_reward(payload, spec="toxicology")
    assert json.loads(json.dumps(body)) == body  # JSON-ready
    assert body["rewards"] == [1.0] and body["scores"] == [1.0]
    assert body["extra_logs"]["format"] == [1.0] and body["extra_logs"]["status_ok"] == [1.0]
    # labels / prompts may be absent: no prompt → marker split; no reference → not_applicable, the sentinel
    body = handle_get_reward({"query": [CHATML_PROMPT + GOOD]}, spec="toxicology")
    assert body["rewards"] == [0.0] and body["extra_logs"]["status_not_applicable"] == [1.0]
    assert body["extra_logs"]["format"] == [1.0]  # the response was split off: its format is fine


@pytest.mark.parametrize(
    "payload, message",
    [
        ([], "JSON object"),
        ({"prompts": ["x"]}, "no 'query'"),
        ({"query": "x", "prompts": ["x"], "labels": ["x"]}, "list of strings"),
        ({"query": ["a", "b"], "prompts": ["x"], "labels": ["x", "y"]}, "same length"),
    ],
)
def test_http_handler_rejects_malformed_bodies(payload, message):
    with pytest.raises(PayloadError, match=message):
        handle_get_reward(payload, spec="toxicology")


def test_unknown_spec_names_the_presets():
    with pytest.raises(ValueError, match="toxicology"):
        make_reward_func("nonexistent_task")


# -- OpenRLHF itself -------------------------------------------------------------------------------
def _run_executor(reward_file: str, response: str, label: str):
    executor = executor_cls()(remote_rm_url=reward_file)
    tokenizer = chatml_tokenizer()
    params = SimpleNamespace(max_tokens=64, logprobs=None)
    return asyncio.run(executor.execute(CHATML_PROMPT, label, params, 4096, tokenizer, StubEngine(tokenizer, response)))


def test_openrlhf_loads_a_user_file_and_uses_our_rewards(tmp_path):
    user_file = tmp_path / "medreward_openrlhf.py"
    user_file.write_text(
        "from medreward.integrations.openrlhf import make_reward_func\n"
        "reward_func = make_reward_func('toxicology')\n"
    )
    out = _run_executor(str(user_file), HALF + "<|im_end|>", '{"substances": ["opioids"]}')
    assert out["reward"] is not None, "OpenRLHF swallowed an exception from reward_func"
    assert out["reward"].tolist() == [pytest.approx(0.1 + 0.9 * 2 / 3)]
    assert out["scores"].tolist() == out["reward"].tolist()
    assert out["extra_logs"]["substances"].tolist() == [pytest.approx(2 / 3)]


def test_openrlhf_loads_our_module_file_directly(monkeypatch):
    monkeypatch.setenv("MEDREWARD_SPEC", "toxicology")
    out = _run_executor(str(Path(orl.__file__)), GOOD + "<|im_end|>", "opioids")
    assert out["reward"] is not None and out["reward"].tolist() == [1.0]


# -- untrusted text: fuzzed, bounded time ------------------------------------------------------------
_pieces = st.sampled_from(["<|im_end|>", "<|eot_id|>", "</s>", "<pad>", "<|im_start|>assistant", "[/INST]",
                           "<answer>", "\n", " ", "\ud800", "x"])
_text = st.lists(st.one_of(_pieces, st.text(max_size=8)), max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(prompt=_text, response=_text)
def test_split_response_never_fails_and_recovers_a_clean_response(prompt, response):
    query = prompt + response
    out = split_response(query, prompt)
    assert isinstance(out, str) and len(out) <= len(query)
    clean = "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "\ufffd" for c in response)
    if prompt and not any(t in clean for t in orl.END_TOKENS) and clean == clean.strip():
        assert out == clean


@settings(max_examples=200, deadline=None)
@given(query=_text, prompt=st.one_of(st.none(), _text))
def test_split_response_on_arbitrary_pairs(query, prompt):
    try:
        assert isinstance(split_response(query, prompt), str)
    except orl.ResponseSplitError:
        assert prompt and prompt.strip()  # only a prompt that cannot be found is an error


@settings(max_examples=300, deadline=None)
@given(label=st.one_of(st.text(max_size=40), _text, st.none(), st.integers(), st.floats(allow_nan=True)))
def test_any_label_becomes_a_reference_or_a_record_error(label):
    try:
        out = coerce_reference(label, load_spec("toxicology"))
    except RecordError:
        return
    assert isinstance(out, dict)


# hostile (query, prompt) builders of size k, and k of the full-size case (up to 10 MB), which is the
# large input of a scaling check in CPU time (no wall-clock bound)
HOSTILE_QUERIES = {
    "pads": (lambda k: ("<pad>" * k, None), 2_000_000),
    "pads, missing prompt": (lambda k: ("<pad> " * k, "nope"), 1_500_000),
    "blank lines": (lambda k: (" \n" * k, None), 5_000_000),
    "assistant markers": (lambda k: ("<|im_start|>assistant" * k, "p" * 10_000), 400_000),
    "near-prefix prompt": (lambda k: ("x" * k, "x" * (k // 2) + "y"), 10_000_000),
}


def _split_or_refuse(case: tuple[str, str | None]) -> str | None:
    try:
        return split_response(*case)
    except orl.ResponseSplitError:
        return None  # only a prompt that cannot be found is an error


@pytest.mark.parametrize("name", list(HOSTILE_QUERIES))
def test_huge_adversarial_queries_split_in_linear_time(name):
    make, full = HOSTILE_QUERIES[name]
    assert_linear(_split_or_refuse, make, full // 8)


# -- issue 9, item 6: a plain input template never gets the prompt scored ------------------------------
SYSTEM = "Answer as <think>your reasoning</think><answer>the substances</answer>."
PLAIN_PROMPT = f"{SYSTEM}\n\nUser: Pinpoint pupils, apnea. Substance?\nAssistant: "


def _decoded(prompt: str, response: str) -> str:
    """What OpenRLHF's decode of prompt + response tokens can look like: a BOS token in front, the
    double newline collapsed, the trailing space merged into the response's first token."""
    return "<s>" + prompt.replace("\n\n", "\n").rstrip() + response + "</s>"


def test_plain_template_query_is_split_off_the_prompt_not_scored_whole():
    query = _decoded(PLAIN_PROMPT, GOOD)
    assert not query.startswith(PLAIN_PROMPT) and PLAIN_PROMPT not in query  # the failing case of the issue
    assert split_response(query, PLAIN_PROMPT) == GOOD
    out = make_reward_func("toxicology", as_tensors=False)([query], [PLAIN_PROMPT], ['["opioids"]'])
    assert out["rewards"] == [1.0] and out["extra_logs"]["format"] == [1.0]  # was 0.9: the prompt's tags counted


def test_separator_option_splits_after_the_prompts_own_separator():
    prompt = "Say 'Assistant: <answer>X</answer>' style.\nUser: Pupils?\nAssistant:"
    query = "[raw prompt text differs]\nUser: Pupils?\nAssistant: " + GOOD  # the prompt text is not in the query
    with pytest.raises(orl.ResponseSplitError, match="separator"):
        split_response(query, "a prompt that is nowhere in it")
    assert split_response(query, "a prompt that is nowhere in it", separator="Assistant:") == GOOD
    # the prompt quotes the separator once before its own: the second occurrence ends the prompt
    quoted = prompt + " " + GOOD
    assert split_response("<s>" + quoted.replace("\n", " "), prompt.replace("Say", "say"),
                          separator="Assistant:") == GOOD
    fn = make_reward_func("toxicology", separator="Assistant:", as_tensors=False)
    assert fn([query], ["nowhere"], ['["opioids"]'])["rewards"] == [1.0]
    with pytest.raises(ValueError, match="separator"):
        make_reward_func("toxicology", separator="")


def test_unsplittable_query_is_an_error_status_not_a_scored_prompt():
    query = "System: use <think>..</think><answer>..</answer>\nQ: x\nA: " + GOOD
    out = make_reward_func("toxicology", as_tensors=False)([query], ["entirely different prompt"], ['["opioids"]'])
    assert out["rewards"] == [0.0] and out["extra_logs"]["status_error"] == [1.0]
    assert out["extra_logs"]["format"] == [0.0]  # nothing was scored
    with pytest.raises(orl.ResponseSplitError, match="does not contain the prompt"):
        split_response(query, "entirely different prompt")
    # no prompt at all: the query is the response (nothing to strip)
    assert split_response(GOOD, None) == split_response(GOOD, "") == GOOD


# -- issue 9, item 4: the task travels in the label ------------------------------------------------------
def test_labels_route_to_their_task_spec():
    fn = make_reward_func(tasks=["toxicology", "mcq"], as_tensors=False)
    mcq_ok = "<think>naloxone</think><answer>B</answer>"
    out = fn([GOOD, mcq_ok, HALF, mcq_ok, GOOD],
             [""] * 5,
             ['{"task": "toxicology", "substances": ["opioids"]}',
              '{"task": "mcq", "answer": "B", "options": {"A": "x", "B": "y"}}',
              json.dumps({"task": "toxicology", "reference": "opioids"}),
              '{"task": "calculator", "value": 3}',  # not one of this run's tasks
              '["opioids"]'])  # names no task, and there is no default spec
    assert out["rewards"] == [1.0, 1.0, pytest.approx(0.1 + 0.9 * 2 / 3), 0.0, 0.0]
    logs = out["extra_logs"]
    assert list(logs) == ["status_ok", "status_not_applicable", "status_error", "status_timeout",
                          "choice", "format", "substances"]  # the sorted union, fixed for every batch
    assert logs["status_error"] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert logs["choice"] == [0.0, 1.0, 0.0, 0.0, 0.0] and logs["substances"][0] == 1.0
    # with a default spec, labels without a task use it
    both = make_reward_func("toxicology", tasks={"mcq": "mcq"}, as_tensors=False)
    assert both([GOOD, mcq_ok], ["", ""], ['["opioids"]', '{"task": "mcq", "answer": "B"}'])["rewards"] == [1.0, 1.0]
    # and the HTTP handler routes the same way
    body = handle_get_reward({"query": [mcq_ok], "labels": ['{"task": "mcq", "answer": "B"}']}, tasks=["mcq"])
    assert body["rewards"] == [1.0]
