"""TRL adapter: the reward_funcs contract of trl 1.16 (without needing trl installed)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from medreward import Scorer
from medreward.integrations.trl import (
    AsyncTRLReward,
    TRLReward,
    async_reward_func,
    reward_func,
    reward_func_by_task,
    reward_funcs_per_component,
)

GOOD = "<think>miosis, apnea</think><answer>opioids</answer>"
HALF = "<think>miosis</think><answer>opioids, ethanol</answer>"  # F1 2/3 against ["opioids"]
NO_TAGS = "opioids"


def convo(text):
    return [{"role": "assistant", "content": text}]


def faulty_spec():
    return {
        "name": "faulty",
        "components": [
            {"name": "format", "kind": "format.tags", "weight": 1.0},
            {"name": "raises", "kind": "faulty_components:Raises", "weight": 1.0},
            {"name": "sleeps", "kind": "faulty_components:Sleeps", "weight": 1.0},
        ],
    }


class Recorder:
    """Stands in for TRL's log_metric / log_extra."""

    def __init__(self):
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name, value):
        assert isinstance(value, float)
        self.metrics.setdefault(name, []).append(value)

    def log_extra(self, column, values):
        self.extra.setdefault(column, []).extend(values)


def call(fn, completions, **columns):
    rec = Recorder()
    out = fn(
        prompts=["Pupils?"] * len(completions),
        completions=completions,
        completion_ids=[[1, 2]] * len(completions),
        trainer_state=object(),
        log_extra=rec.log_extra,
        log_metric=rec.log_metric,
        **columns,
    )
    return out, rec


def test_one_float_or_none_per_completion_matching_the_scorer():
    fn = reward_func("toxicology")
    completions = [GOOD, HALF, NO_TAGS, "", None]
    out, _ = call(fn, completions, substances=[["opioids"]] * 5)
    expected = [
        r.reward
        for r in Scorer("toxicology").score(
            [{"completion": c, "reference": {"substances": ["opioids"]}} for c in completions]
        )
    ]
    assert out == expected
    assert out[0] == 1.0 and out[1] == pytest.approx(0.1 + 0.9 * 2 / 3)
    assert out[3] == 0.0  # an empty completion is a wrong answer, not "not applicable"
    assert out[4] is None  # no completion at all: error, never a silent 0
    assert all(type(v) is float for v in out[:4])


def test_conversational_completions_score_like_plain_text():
    fn = reward_func("toxicology")
    plain, _ = call(fn, [GOOD, HALF], substances=[["opioids"], ["opioids"]])
    chat, _ = call(fn, [convo(GOOD), convo(HALF)], substances=[["opioids"], ["opioids"]])
    assert chat == plain


def test_name_is_stable_and_identifier_like():
    assert reward_func("toxicology").__name__ == "medreward_toxicology"
    assert reward_func("mcq", name="my_mcq").__name__ == "my_mcq"
    funcs, weights = reward_funcs_per_component("toxicology")
    assert [f.__name__ for f in funcs] == ["medreward_toxicology_format", "medreward_toxicology_substances"]
    assert weights == [0.1, 0.9]
    custom = reward_func({"name": "my-spec v2", "components": [{"name": "fmt ok", "kind": "format.tags"}]})
    assert custom.__name__ == "medreward_my_spec_v2"


@pytest.mark.parametrize(
    "columns",
    [
        {"reference": [{"substances": ["opioids"]}, {"substances": ["ethanol"]}]},
        {"reference": ['{"substances": ["opioids"]}', '{"substances": ["ethanol"]}']},
        {"reference": ["opioids", "ethanol"]},  # plain text fills the spec's main field
        {"substances": [["opioids"], ["ethanol"]]},
        {"substances": ["opioids", "ethanol"]},
    ],
)
def test_reference_columns_default_forms(columns):
    out, _ = call(reward_func("toxicology"), [GOOD, GOOD], **columns)
    assert out == [1.0, pytest.approx(0.1)]


def test_user_mapping_of_columns():
    gold = {"gold": [["opioids"], ["ethanol"]]}
    out, _ = call(reward_func("toxicology", columns={"substances": "gold"}), [GOOD, GOOD], **gold)
    assert out == [1.0, pytest.approx(0.1)]
    out, _ = call(reward_func("toxicology", reference_column="gold"), [GOOD, GOOD], **gold)
    assert out == [1.0, pytest.approx(0.1)]
    with pytest.raises(ValueError, match="no column 'gold'"):
        call(reward_func("toxicology", columns={"substances": "gold"}), [GOOD], substances=[["opioids"]])


def test_mcq_answer_and_options_columns():
    fn = reward_func("mcq")
    out, _ = call(
        fn,
        ["<think>.</think><answer>B</answer>", "<think>.</think><answer>Naloxone</answer>"],
        answer=["B", "C"],
        options=[{"A": "Flumazenil", "B": "Naloxone"}, {"A": "Flumazenil", "B": "Atropine", "C": "Naloxone"}],
    )
    assert out == [1.0, 1.0]


def test_malformed_reference_spoils_only_its_sample(caplog):
    with caplog.at_level(logging.WARNING, logger="medreward"):
        out, rec = call(reward_func("toxicology"), [GOOD, GOOD], reference=['{"substances": [', {"substances": ["opioids"]}])
    assert out == [None, 1.0]
    assert "1 of 2 samples got no reward (error: 1" in caplog.text
    assert rec.extra["medreward_toxicology/status"] == ["error", "ok"]
    assert "does not parse" in rec.extra["medreward_toxicology/info"][0]


def test_missing_reference_columns_warn_and_leave_answer_not_applicable(caplog):
    with caplog.at_level(logging.WARNING, logger="medreward"):
        out, rec = call(reward_func("toxicology"), [GOOD, NO_TAGS], unrelated=[1, 2])
    assert out == [None, None]  # substances (required) does not apply: no format-only reward
    assert "none of the reference columns" in caplog.text
    assert "2 of 2 samples are not_applicable" in caplog.text and "substances" in caplog.text
    assert rec.metrics["medreward/toxicology/substances/frac_not_applicable"] == [1.0]
    assert "medreward/toxicology/substances/mean" not in rec.metrics  # no value to average: not logged as 0
    assert rec.metrics["medreward/medreward_toxicology/frac_not_applicable"] == [1.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompts": ["p"], "completions": [GOOD, GOOD]}, "got 1 prompts but 2 completions"),
        ({"prompts": ["p", "p"], "completions": [GOOD, GOOD], "substances": [["opioids"]]}, "has 1 values but there are 2"),
        ({"prompts": ["p"], "completions": [GOOD], "reference": "opioids"}, "must be a list"),
        ({"prompts": ["p"]}, "no 'completions'"),
    ],
)
def test_misaligned_inputs_are_a_contract_violation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        reward_func("toxicology")(**kwargs)


def test_metrics_and_extra_columns():
    out, rec = call(reward_func("toxicology"), [GOOD, HALF, NO_TAGS, None], substances=[["opioids"]] * 4)
    assert out[3] is None
    m = {k: v[0] for k, v in rec.metrics.items()}
    assert m["medreward/toxicology/format/mean"] == pytest.approx(2 / 3)  # three scored samples, two formatted
    assert m["medreward/toxicology/substances/mean"] == pytest.approx((1 + 2 / 3 + 0) / 3)  # no <answer>: 0
    assert m["medreward/toxicology/substances/frac_error"] == 0.0  # the None completion never reached components
    assert m["medreward/medreward_toxicology/frac_error"] == 0.25
    assert m["medreward/medreward_toxicology/frac_none"] == 0.25
    assert m["medreward/medreward_toxicology/frac_timeout"] == 0.0
    assert rec.extra["medreward_toxicology/status"] == ["ok", "ok", "ok", "error"]
    assert len(rec.extra["medreward_toxicology/info"]) == 4
    # metrics and columns can be switched off
    _, quiet = call(reward_func("toxicology", metric_prefix=None, log_samples=False), [GOOD], substances=[["opioids"]])
    assert quiet.metrics == {} and quiet.extra == {}


def test_errors_and_timeouts_give_none_and_one_warning(caplog):
    fn = reward_func(faulty_spec(), time_limit=0.3)
    with caplog.at_level(logging.WARNING, logger="medreward"):
        out, rec = call(fn, ["<think>a</think><answer>b</answer>", "boom", "sleep"])
    assert out == [2.5, None, None]  # 1 + 1 + 0.5
    assert "2 of 3 samples got no reward (error: 1, timeout: 1)" in caplog.text
    m = {k: v[0] for k, v in rec.metrics.items()}
    assert m["medreward/faulty/raises/frac_error"] == pytest.approx(1 / 3)
    assert m["medreward/faulty/sleeps/frac_timeout"] == pytest.approx(1 / 3)


def test_per_component_funcs_recombine_to_the_spec_reward():
    funcs, weights = reward_funcs_per_component("toxicology")
    completions = [GOOD, HALF, NO_TAGS, ""]
    cols = {"substances": [["opioids"], ["opioids"], ["ethanol"], ["opioids"]]}
    whole, _ = call(reward_func("toxicology"), completions, **cols)
    parts = [call(f, completions, **cols)[0] for f in funcs]
    recombined = [sum(w * p[i] for w, p in zip(weights, parts)) for i in range(len(completions))]
    assert recombined == pytest.approx(whole)
    assert parts[1] == [1.0, pytest.approx(2 / 3), 0.0, 0.0]  # the raw component value, not weighted


def test_per_component_funcs_read_plain_references_like_the_whole_spec():
    funcs, _ = reward_funcs_per_component("toxicology")
    fmt, sub = (call(f, [GOOD, HALF], reference=["opioids", "opioids"])[0] for f in funcs)
    assert fmt == [1.0, 1.0] and sub == [1.0, pytest.approx(2 / 3)]
    clone = pickle.loads(pickle.dumps(funcs[0]))
    assert call(clone, [GOOD], reference=["opioids"])[0] == [1.0]


def test_per_component_warns_about_gates(caplog):
    gated = {
        "name": "gated",
        "components": [
            {"name": "format", "kind": "format.tags", "weight": 0.5, "gate": True},
            {"name": "substances", "kind": "multilabel", "weight": 0.5,
             "params": {"vocabulary": "toxicology", "field": "substances"}},
        ],
    }
    with caplog.at_level(logging.WARNING, logger="medreward"):
        funcs, weights = reward_funcs_per_component(gated)
    assert "cannot apply gates" in caplog.text
    assert weights == [0.5, 0.5] and len(funcs) == 2


def test_unknown_component_and_unknown_spec_fail_at_construction():
    with pytest.raises(ValueError, match="no component 'nope'"):
        TRLReward("toxicology", component="nope")
    with pytest.raises(Exception, match="presets"):
        reward_func("no_such_preset")


def test_pickle_round_trip_keeps_name_and_rewards():
    fn = reward_func("toxicology", columns={"substances": "gold"})
    clone = pickle.loads(pickle.dumps(fn))
    assert clone.__name__ == fn.__name__
    gold = {"gold": [["opioids"], ["ethanol"]]}
    assert call(clone, [GOOD, HALF], **gold)[0] == call(fn, [GOOD, HALF], **gold)[0]
    afn = pickle.loads(pickle.dumps(async_reward_func("mcq")))
    assert isinstance(afn, AsyncTRLReward) and afn.__name__ == "medreward_mcq"


def _score_in_child(fn):
    return fn.__name__, fn(prompts=["p"], completions=[GOOD], substances=[["opioids"]])


def test_reward_function_works_in_a_spawned_process():
    fn = reward_funcs_per_component("toxicology").reward_funcs[1]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        name, out = pool.submit(_score_in_child, fn).result(timeout=120)
    assert (name, out) == ("medreward_toxicology_substances", [1.0])


def test_async_variant_is_detected_and_agrees():
    afn = async_reward_func("toxicology")
    assert inspect.iscoroutinefunction(afn.__call__)
    try:
        from trl.trainer.utils import is_async_callable
    except ImportError:
        pass
    else:
        assert is_async_callable(afn) and not is_async_callable(reward_func("toxicology"))
    rec = Recorder()
    out = asyncio.run(
        afn(prompts=["p"] * 3, completions=[GOOD, HALF, None], substances=[["opioids"]] * 3,
            log_metric=rec.log_metric, log_extra=rec.log_extra)
    )
    assert out == call(reward_func("toxicology"), [GOOD, HALF, None], substances=[["opioids"]] * 3)[0]
    assert "medreward/toxicology/format/mean" in rec.metrics


def test_trl_name_helper_uses_our_name():
    utils = pytest.importorskip("trl.trainer.utils")
    assert utils.get_callable_name(reward_func("toxicology")) == "medreward_toxicology"
    funcs, _ = reward_funcs_per_component("mcq")
    assert [utils.get_callable_name(f) for f in funcs] == ["medreward_mcq_format", "medreward_mcq_choice"]


# -- issue 9, item 1: completion_ids reach the components ------------------------------------------
OVERLONG = {"name": "overlong", "components": [{"name": "length", "kind": "length", "params": {
    "mode": "overlong", "unit": "tokens", "max_length": 100, "cache_length": 20}}]}


def test_completion_ids_drive_token_length_exactly_as_trl_does():
    trl_rewards = pytest.importorskip("trl.rewards", reason="trl (the `train` extra) is not installed")
    ids = [[1] * 90, [1] * 200, [1] * 80, [1] * 81, [], [1] * 100]
    texts = ["a b c", "x " * 10, "y", "z", "", "w"]  # word counts that would all score 0.0
    ours = reward_func(OVERLONG)(prompts=["p"] * len(ids), completions=texts, completion_ids=ids)
    trl = trl_rewards.get_soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)(completion_ids=ids)
    assert ours[:2] == [-0.5, -1.0]  # the reproduction
    assert ours == pytest.approx(trl, abs=1e-12)
    # the async variant and the per-component functions pass them on too
    assert asyncio.run(async_reward_func(OVERLONG)(prompts=["p"] * 6, completions=texts, completion_ids=ids)) == ours
    [per] = reward_funcs_per_component(OVERLONG).reward_funcs
    assert per(prompts=["p"] * 6, completions=texts, completion_ids=ids) == ours


def test_completion_ids_must_align_with_completions():
    with pytest.raises(ValueError, match="completion_ids"):
        reward_func(OVERLONG)(prompts=["p", "p"], completions=["a", "b"], completion_ids=[[1]])


# -- issue 9, item 4: one callable for a dataset that mixes tasks -----------------------------------
MCQ_OK = "<think>naloxone reverses opioids</think><answer>B</answer>"
MIXED = {
    "completions": [GOOD, MCQ_OK, HALF, "<think>x</think><answer>C</answer>"],
    "task": ["toxicology", "mcq", "toxicology", "mcq"],
    "reference": ['["opioids"]', "B", '{"substances": ["opioids"]}', "B"],
}


def test_two_reward_funcs_on_mixed_rows_overpay_but_the_router_does_not():
    prompts = ["p"] * 4
    tox, mcq = reward_func("toxicology"), reward_func("mcq")
    separate = [tox(prompts=prompts, completions=MIXED["completions"], reference=MIXED["reference"]),
                mcq(prompts=prompts, completions=MIXED["completions"], reference=MIXED["reference"])]
    # TRL sums the two columns with nansum; each spec's required answer component keeps it off the
    # other task's rows (None there: the 1.1 was a format-only reward on a foreign row)
    trl_sum = [sum(v for v in pair if v is not None) for pair in zip(*separate)]
    assert [None in pair for pair in zip(*separate)] == [True] * 4
    routed = reward_func_by_task(["toxicology", "mcq"])
    out, rec = call(routed, MIXED["completions"], task=MIXED["task"], reference=MIXED["reference"])
    expected = [Scorer(t).score([{"completion": c, "reference": r}])[0].reward for t, c, r in zip(
        MIXED["task"], MIXED["completions"], [{"substances": ["opioids"]}, {"answer": "B"},
                                               {"substances": ["opioids"]}, {"answer": "B"}])]
    assert out == expected == [1.0, 1.0, pytest.approx(0.1 + 0.9 * 2 / 3), pytest.approx(0.1)]
    assert trl_sum == pytest.approx(out)
    # metrics are namespaced by spec: two specs' `format` do not average into one key
    assert rec.metrics["medreward/toxicology/format/mean"] == [1.0]
    assert rec.metrics["medreward/mcq/format/mean"] == [1.0]
    assert rec.metrics["medreward/toxicology/substances/mean"] == [pytest.approx((1 + 2 / 3) / 2)]
    assert rec.metrics["medreward/mcq/choice/mean"] == [0.5]
    assert "medreward/format/mean" not in rec.metrics
    assert rec.metrics["medreward/medreward_by_task/frac_none"] == [0.0]
    assert rec.extra["medreward_by_task/status"] == ["ok"] * 4


def test_router_reads_per_task_columns_and_completion_ids():
    spec = {"name": "tox_len", "components": [
        {"name": "substances", "kind": "multilabel", "params": {"vocabulary": "toxicology", "field": "substances"}},
        {"name": "length", "kind": "length", "weight": 0.5,
         "params": {"mode": "overlong", "unit": "tokens", "max_length": 100, "cache_length": 20}}]}
    routed = reward_func_by_task({"tox": spec, "mcq": "mcq"})
    out = routed(prompts=["p"] * 3, completions=[GOOD, MCQ_OK, GOOD], completion_ids=[[1] * 90, [1], [1] * 10],
                 task=["tox", "mcq", "tox"], substances=[["opioids"], None, ["ethanol"]], answer=[None, "B", None])
    assert out == [1.0 - 0.25, 1.0, 0.0]


def test_router_rejects_unknown_or_missing_tasks_clearly():
    from medreward.integrations import UnknownDataSourceError

    routed = reward_func_by_task(["toxicology"])
    with pytest.raises(UnknownDataSourceError, match="mcq"):
        routed(prompts=["p"], completions=[MCQ_OK], task=["mcq"], reference=["B"])
    with pytest.raises(ValueError, match="column 'task'"):
        routed(prompts=["p"], completions=[MCQ_OK], reference=["B"])
    with pytest.raises(ValueError, match="row 0 has task None"):
        routed(prompts=["p"], completions=[MCQ_OK], task=[None], reference=["B"])
    # tasks=None accepts every registered name (presets and aliases)
    assert reward_func_by_task()(prompts=["p"], completions=[MCQ_OK], task=["medqa"], reference=["B"]) == [1.0]


def test_router_async_and_pickle():
    routed = reward_func_by_task(["toxicology", "mcq"], asynchronous=True)
    assert inspect.iscoroutinefunction(routed.__call__)
    out = asyncio.run(routed(prompts=["p"] * 2, completions=[GOOD, MCQ_OK], task=["toxicology", "mcq"],
                             reference=["opioids", "B"]))
    assert out == [1.0, 1.0]
    clone = pickle.loads(pickle.dumps(reward_func_by_task(["toxicology", "mcq"])))
    assert clone(prompts=["p"], completions=[MCQ_OK], task=["mcq"], reference=["B"]) == [1.0]
