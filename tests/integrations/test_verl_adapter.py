"""verl adapter: compute_score / compute_score_batch, exact to verl 0.9.1's reward managers.

The contract tests mirror verl's calls (naive: keywords, one sample per call, from threads;
PRIME: positional; batch manager: list keywords) and its key rule (extra-info keys are taken
from sample 0). Where verl itself imports (it does on CPU), the last tests go through verl's
own loader and reward managers.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import medreward.integrations.verl as verl_adapter
from medreward import Scorer
from medreward.integrations import UnknownDataSourceError
from medreward.integrations.verl import (
    compute_score,
    compute_score_batch,
    register_data_source,
    result_keys,
    unregister_data_source,
)

TOX_GOOD = "<think>miosis</think><answer>opioids</answer>"
TOX_HALF = "<think>miosis</think><answer>opioids, ethanol</answer>"
MCQ_B = "<think>naloxone reverses opioids</think><answer>B</answer>"


def assert_float_dict(result: dict, keys: tuple[str, ...]) -> None:
    assert tuple(result) == keys
    for key, value in result.items():
        assert type(value) is float and math.isfinite(value), (key, value)
    assert sum(result[k] for k in ("status_ok", "status_not_applicable", "status_error", "status_timeout")) == 1.0


def test_positional_and_keyword_calls_agree():
    by_position = compute_score("toxicology", TOX_HALF, "opioids", {"index": 3})
    by_keyword = compute_score(data_source="toxicology", solution_str=TOX_HALF, ground_truth="opioids",
                               extra_info={"index": 3})
    assert by_position == by_keyword
    assert by_keyword["score"] == pytest.approx(0.1 + 0.9 * 2 / 3)
    assert by_keyword["substances"] == pytest.approx(2 / 3) and by_keyword["format"] == 1.0
    assert by_keyword["status_ok"] == 1.0


def test_score_equals_the_scorer_reward():
    [record] = Scorer("toxicology").score([{"completion": TOX_HALF, "reference": {"substances": ["opioids", "ethanol"]}}])
    assert compute_score("toxicology", TOX_HALF, "opioids,ethanol")["score"] == record.reward


@pytest.mark.parametrize(
    "ground_truth",
    [
        "opioids,ethanol",
        " opioids , ethanol ",
        '["opioids", "ethanol"]',
        '{"substances": ["opioids", "ethanol"]}',
        {"substances": ["opioids", "ethanol"]},
        {"substances": np.array(["opioids", "ethanol"], dtype=object)},  # a Parquet list column
        np.array(["opioids", "ethanol"], dtype=object),
        json.dumps({"substances": "opioids,ethanol"}),
    ],
)
def test_ground_truth_forms(ground_truth):
    result = compute_score("toxicology", TOX_HALF, ground_truth)
    assert result["score"] == 1.0 and result["status_ok"] == 1.0


def test_mcq_ground_truth_and_options_from_extra_info():
    assert compute_score("mcq", MCQ_B, "B")["score"] == 1.0
    assert compute_score("mcq", MCQ_B, '"B"')["score"] == 1.0
    assert compute_score("mcq", MCQ_B, "C")["score"] == pytest.approx(0.1)
    options = {"A": "Flumazenil", "B": "Atropine", "C": "Naloxone"}
    by_text = "<think>.</think><answer>Naloxone</answer>"
    assert compute_score("mcq", by_text, "C", {"reference": {"options": options}})["score"] == 1.0
    # the ground truth wins over extra_info["reference"]
    assert compute_score("mcq", MCQ_B, "B", {"reference": {"answer": "A"}})["score"] == 1.0


def test_identical_key_set_for_every_sample_even_across_data_sources_and_failures():
    keys = result_keys()
    assert keys[:5] == ("score", "status_ok", "status_not_applicable", "status_error", "status_timeout")
    assert {"format", "substances", "choice"} <= set(keys[5:])
    samples = [
        ("toxicology", TOX_GOOD, "opioids"),
        ("mcq", MCQ_B, "B"),
        ("toxicology", None, "opioids"),  # no response
        ("toxicology", TOX_GOOD, '{"substances": ['),  # unreadable ground truth
        ("toxicology", TOX_GOOD, None),  # no ground truth: the required answer does not apply
        ("toxicology", "", "opioids"),  # empty response: a wrong answer
        ("MCQ", "x" * 100_000, "A"),
    ]
    results = [compute_score(*s) for s in samples]
    # verl's reward loop: keys from sample 0, then every sample indexed by them
    first = list(results[0].keys())
    table = {k: [r[k] for r in results] for k in first}
    for r in results:
        assert_float_dict(r, keys)
    assert table["status_ok"] == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert table["status_error"] == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert table["status_not_applicable"] == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert table["score"][2:5] == [0.0, 0.0, 0.0]  # the documented sentinel: no format-only reward
    assert table["format"][4] == 1.0
    assert table["choice"][0] == 0.0 and table["substances"][1] == 0.0  # not in that sample's spec


def test_failed_score_and_ignored_verl_kwargs():
    result = compute_score("toxicology", None, "opioids", None, failed_score=-1.0,
                           reward_router_address="127.0.0.1:1", reward_model_tokenizer=object())
    assert result["score"] == -1.0 and result["status_error"] == 1.0
    assert result["substances"] == 0.0


def test_unknown_data_source_is_a_clear_value_error():
    with pytest.raises(UnknownDataSourceError) as info:
        compute_score("openai/gsm8k", TOX_GOOD, "opioids")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    for preset in ("toxicology", "mcq", "calculator", "icd_coding"):
        assert preset in message and preset in info.value.known
    assert "register_data_source" in message


def test_registered_alias_and_case_insensitive_match():
    assert compute_score("ToxIcology", TOX_GOOD, "opioids")["score"] == 1.0
    register_data_source("detox_v2", "toxicology")
    try:
        assert compute_score("detox_v2", TOX_GOOD, "opioids")["score"] == 1.0
        with pytest.raises(ValueError, match="already registered"):
            register_data_source("detox_v2", "mcq")
    finally:
        unregister_data_source("detox_v2")
    with pytest.raises(UnknownDataSourceError):
        compute_score("detox_v2", TOX_GOOD, "opioids")


def test_registered_custom_spec_adds_its_components_to_every_result():
    spec = {"name": "tox_strict", "components": [
        {"name": "strict_substances", "kind": "multilabel", "weight": 1.0,
         "params": {"vocabulary": "toxicology", "field": "substances", "metric": "jaccard"}}]}
    register_data_source("tox_strict", spec)
    try:
        tox = compute_score("toxicology", TOX_HALF, "opioids")
        strict = compute_score("tox_strict", TOX_HALF, "opioids")
        assert tuple(tox) == tuple(strict) and "strict_substances" in tox
        assert strict["score"] == pytest.approx(0.5) and tox["strict_substances"] == 0.0
    finally:
        unregister_data_source("tox_strict")
    assert "strict_substances" not in result_keys()


def test_active_data_sources_fix_the_keys_and_reject_others():
    result = compute_score("toxicology", TOX_GOOD, "opioids", active_data_sources=["toxicology"])
    assert tuple(result) == ("score", "status_ok", "status_not_applicable", "status_error", "status_timeout",
                             "format", "substances")
    with pytest.raises(UnknownDataSourceError, match="toxicology"):
        compute_score("mcq", MCQ_B, "B", active_data_sources=["toxicology"])


def test_batch_form_matches_per_sample_and_keeps_order():
    sources = np.array(["toxicology", "mcq", "toxicology", "mcq", "toxicology"], dtype=object)
    solutions = [TOX_GOOD, MCQ_B, TOX_HALF, None, ""]
    truths = ["opioids", "B", "opioids", "B", "opioids"]
    extras = [{"index": i} for i in range(5)]
    batch = compute_score_batch(data_sources=sources, solution_strs=solutions, ground_truths=truths,
                                extra_infos=extras)
    single = [compute_score(s, x, g, e) for s, x, g, e in zip(sources, solutions, truths, extras)]
    assert batch == single
    assert [r["score"] for r in batch] == [1.0, 1.0, pytest.approx(0.1 + 0.6), 0.0, 0.0]


def test_batch_with_misaligned_lists_is_an_error():
    with pytest.raises(ValueError, match="different lengths"):
        compute_score_batch(["toxicology"] * 2, [TOX_GOOD], ["opioids"] * 2, [{}] * 2)


def test_thread_safe_under_verl_style_concurrency():
    samples = [("toxicology", TOX_GOOD if i % 3 else TOX_HALF, "opioids") for i in range(60)]
    samples += [("mcq", MCQ_B, "B" if i % 2 else "A") for i in range(60)]
    expected = [compute_score(*s) for s in samples]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: compute_score(data_source=s[0], solution_str=s[1], ground_truth=s[2]), samples))
    assert got == expected


def test_timeouts_and_errors_become_flags_not_exceptions():
    spec = {"name": "faulty_v", "components": [
        {"name": "raises", "kind": "faulty_components:Raises", "weight": 1.0},
        {"name": "sleeps", "kind": "faulty_components:Sleeps", "weight": 1.0}]}
    register_data_source("faulty_v", spec)
    try:
        out = compute_score_batch(["faulty_v"] * 3, ["fine", "boom", "sleep"], [None] * 3, None, time_limit=0.3)
    finally:
        unregister_data_source("faulty_v")
    assert [r["score"] for r in out] == [1.5, 0.0, 0.0]
    assert [(r["status_error"], r["status_timeout"]) for r in out] == [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]


# -- verl itself ---------------------------------------------------------------------------------
def _import_verl():
    try:
        import verl  # noqa: F401
        from omegaconf import OmegaConf
        from verl.trainer.ppo.reward import get_custom_reward_fn
    except Exception as exc:  # noqa: BLE001 - verl is optional; any import failure means "not here"
        if os.environ.get("CI", "").lower() == "true":  # CI installs verl: its absence is a failure there
            pytest.fail(f"verl is not importable in CI (.ci/run installs verl==0.9.1 --no-deps): {exc}")
        pytest.skip(f"verl is not importable: {exc}")
    return OmegaConf, get_custom_reward_fn


@pytest.mark.parametrize("path", ["pkg://medreward.integrations.verl", Path(verl_adapter.__file__).as_posix()])
def test_verl_loads_and_calls_compute_score(path):
    OmegaConf, get_custom_reward_fn = _import_verl()
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": path, "name": "compute_score", "reward_kwargs": {"failed_score": -1.0}}}})
    fn = get_custom_reward_fn(config)
    ok = fn(data_source="toxicology", solution_str=TOX_GOOD, ground_truth="opioids", extra_info={})
    bad = fn("toxicology", None, "opioids", {})  # PRIME-style positional call
    assert ok["score"] == 1.0 and bad["score"] == -1.0
    assert tuple(ok) == tuple(bad) == result_keys()


def _char_tokenizer():
    import string

    import transformers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    specials = ["<pad>", "<unk>", "<eos>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(string.printable)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                                eos_token="<eos>")


def _data_proto(tokenizer, rows):
    """A verl batch as its trainer builds it: left-padded prompts, right-padded responses."""
    import torch
    from verl import DataProto

    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p, _, _, _ in rows]
    responses = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for _, r, _, _ in rows]
    plen, rlen = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    p_ids = torch.tensor([[pad] * (plen - len(p)) + p for p in prompts])
    r_ids = torch.tensor([r + [pad] * (rlen - len(r)) for r in responses])
    mask = torch.tensor([[0] * (plen - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (rlen - len(r))
                         for p, r in zip(prompts, responses)])
    return DataProto.from_dict(
        tensors={"prompts": p_ids, "responses": r_ids, "attention_mask": mask,
                 "input_ids": torch.cat([p_ids, r_ids], dim=1)},
        non_tensors={
            "data_source": np.array([s for _, _, s, _ in rows], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": g} for _, _, _, g in rows], dtype=object),
            "extra_info": np.array([{"index": i} for i in range(len(rows))], dtype=object),
        },
    )


ROWS = [
    ("Pupils?", TOX_GOOD, "toxicology", "opioids"),
    ("Antidote?", MCQ_B, "mcq", "B"),
    ("Pupils?", TOX_HALF, "toxicology", '{"substances": ["opioids"]}'),
]


def test_verl_naive_reward_loop_manager_runs_compute_score():
    OmegaConf, get_custom_reward_fn = _import_verl()
    import asyncio

    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": "pkg://medreward.integrations.verl", "name": "compute_score"}}})
    tokenizer = _char_tokenizer()
    data = _data_proto(tokenizer, ROWS)

    async def run():
        manager = NaiveRewardManager(config, tokenizer, get_custom_reward_fn(config))
        return [await manager.run_single(data[i:i + 1]) for i in range(len(data))]

    out = asyncio.run(run())
    assert [o["reward_score"] for o in out] == [1.0, 1.0, pytest.approx(0.1 + 0.9 * 2 / 3)]
    keys = list(out[0]["reward_extra_info"])  # verl's rule: keys of sample 0 for all
    assert keys == list(result_keys())
    assert all(list(o["reward_extra_info"]) == keys for o in out)


def test_verl_batch_reward_manager_runs_compute_score_batch():
    OmegaConf, get_custom_reward_fn = _import_verl()
    from verl.workers.reward_manager.batch import BatchRewardManager

    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": "pkg://medreward.integrations.verl", "name": "compute_score_batch"}}})
    tokenizer = _char_tokenizer()
    data = _data_proto(tokenizer, ROWS)
    manager = BatchRewardManager(tokenizer, num_examine=0, compute_score=get_custom_reward_fn(config))
    out = manager(data, return_dict=True)
    tensor, extra = out["reward_tensor"], out["reward_extra_info"]
    assert tensor.sum(dim=1).tolist() == pytest.approx([1.0, 1.0, 0.1 + 0.9 * 2 / 3])
    assert set(extra) == set(result_keys()) and all(len(v) == 3 for v in extra.values())


def test_per_sample_failures_warn_once_not_per_sample(caplog):
    import logging

    register_data_source("tox_throttle", "toxicology")
    try:
        with caplog.at_level(logging.WARNING, logger="medreward"):
            for _ in range(5):
                compute_score("tox_throttle", None, "opioids")
    finally:
        unregister_data_source("tox_throttle")
    warnings = [r for r in caplog.records if "verl/tox_throttle" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 1 samples got no reward (error: 1" in warnings[0].getMessage()


# -- every manager the docs list, through verl's own code (issue 9, item 2) ---------------------------
EXPECTED = [1.0, 1.0, pytest.approx(0.1 + 0.9 * 2 / 3)]


def _loaded(name="compute_score", path="pkg://medreward.integrations.verl", **reward_kwargs):
    OmegaConf, get_custom_reward_fn = _import_verl()
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": path, "name": name, "reward_kwargs": reward_kwargs}}})
    return get_custom_reward_fn(config)


def test_result_indexes_as_prime_reads_it():
    result = compute_score("toxicology", TOX_HALF, "opioids")
    assert float(result[0]) == result["score"] == pytest.approx(0.7)  # PRIME: float(result[0])
    assert 0 not in result and list(result) == list(result_keys()) and len(result) == len(result_keys())
    with pytest.raises(KeyError):
        result[1]
    assert pickle.loads(pickle.dumps(result)) == result and pickle.loads(pickle.dumps(result))[0] == result[0]


@pytest.mark.parametrize("path", ["pkg://medreward.integrations.verl", Path(verl_adapter.__file__).as_posix()])
def test_verl_prime_reward_manager_scores_in_its_process_pool(path):
    fn = _loaded(path=path)
    from verl.workers.reward_manager.prime import PrimeRewardManager

    data = _data_proto(_char_tokenizer(), ROWS)
    manager = PrimeRewardManager(_char_tokenizer(), num_examine=0, compute_score=fn)
    tensor = manager(data)
    # before: KeyError(0) inside PRIME, caught there, "Setting all as 0"
    assert tensor.sum(dim=1).tolist() == EXPECTED
    assert data.batch["acc"].tolist() == EXPECTED


def test_verl_naive_reward_manager_legacy():
    fn = _loaded()
    from verl.workers.reward_manager.naive import NaiveRewardManager

    out = NaiveRewardManager(_char_tokenizer(), num_examine=0, compute_score=fn)(
        _data_proto(_char_tokenizer(), ROWS), return_dict=True)
    assert out["reward_tensor"].sum(dim=1).tolist() == EXPECTED
    assert set(out["reward_extra_info"]) == set(result_keys())
    assert all(len(v) == 3 for v in out["reward_extra_info"].values())


def test_verl_dapo_reward_manager_legacy_with_overlong_buffer():
    fn = _loaded()
    from omegaconf import OmegaConf
    from verl.workers.reward_manager.dapo import DAPORewardManager

    buffer = OmegaConf.create({"enable": True, "len": 4, "penalty_factor": 1.0, "log": True})
    manager = DAPORewardManager(_char_tokenizer(), num_examine=1, compute_score=fn, max_resp_len=400,
                                overlong_buffer_cfg=buffer)
    out = manager(_data_proto(_char_tokenizer(), ROWS), return_dict=True)
    assert out["reward_tensor"].sum(dim=1).tolist() == EXPECTED  # responses well inside the buffer
    extra = out["reward_extra_info"]
    assert set(result_keys()) <= set(extra) and extra["overlong_reward"] == [0, 0, 0]


def _reward_loop_worker(tmp_path, manager_name):
    OmegaConf, _ = _import_verl()
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    tokenizer_dir = tmp_path / "tokenizer"
    _char_tokenizer().save_pretrained(tokenizer_dir)
    config = OmegaConf.create({
        "actor_rollout_ref": {"model": {"path": str(tokenizer_dir), "tokenizer_path": str(tokenizer_dir)}},
        "trainer": {"experiment_name": "medreward-test"},
        "reward": {
            "custom_reward_function": {"path": "pkg://medreward.integrations.verl", "name": "compute_score",
                                       "reward_kwargs": {}},
            "reward_manager": {"source": "register", "name": manager_name},
            "reward_model": {"enable": False},
        },
    })
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())  # PRIME's manager closes the loop it leaves set
    return RewardLoopWorker(config, None)


@pytest.mark.parametrize("manager_name", ["naive", "dapo", "gdpo"])
def test_verl_reward_loop_worker_and_key_assembly(tmp_path, manager_name):
    worker = _reward_loop_worker(tmp_path, manager_name)
    data = _data_proto(_char_tokenizer(), ROWS)
    try:
        outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    finally:
        worker.loop.close()
    assert [o["reward_score"] for o in outputs] == EXPECTED
    # RewardLoopManager.compute_rm_score: keys of sample 0, then np.array per key over all samples
    infos = [o["reward_extra_info"] for o in outputs]
    keys = list(infos[0])
    table = {key: np.array([info[key] for info in infos]) for key in keys}
    assert keys == list(result_keys())
    assert table["status_ok"].tolist() == [1.0, 1.0, 1.0] and table["choice"].tolist() == [0.0, 1.0, 0.0]
