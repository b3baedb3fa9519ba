"""Reward-hacking probes: each rewrite does what it says on cases of the task library, unsound
specs are flagged, the shipped presets are not flagged for hedge-all, equivalents score like
gold, cases without a reference are skipped and listed, component errors are reported as errors."""

from __future__ import annotations

import json
import math
import random

import pytest

from medreward.audit.cases import generate_cases, gold_answer, gold_completion
from medreward.audit.probes import (
    COMMON_ICD_CODES,
    FORMAT_ONLY,
    INJECTION,
    Probe,
    ProbeReport,
    UnknownProbeError,
    get_probe,
    list_probes,
    register_probe,
    run_probes,
    split_gold,
)
from medreward.parse.icd import parse_icd_codes
from medreward.parse.labels import parse_labels
from medreward.parse.numbers import final_number
from medreward.parse.tags import section_content
from medreward.records import ComponentScore, conversation_text
from medreward.rewards.base import RewardComponent, registered_kinds
from medreward.rewards.icd_codes import code_info
from medreward.rewards.judge_prompts import injection_patterns
from medreward.rewards.numeric import convert
from medreward.rewards.reasoning_pattern import rpr_score
from medreward.runner import Scorer
from medreward.vocab import load_vocabulary, term_key

TASKS = ("toxicology", "calculator", "icd_coding", "mcq")
N = 30


@pytest.fixture(scope="module")
def cases():
    return {task: generate_cases(task, N, seed=11) for task in TASKS}


def variants(cases, task, name, seed=0):
    """(case, gold, rewritten completion) for every case of ``task`` the probe applies to."""
    probe = get_probe(name)
    out = []
    for i, case in enumerate(cases[task]):
        gold = gold_completion(case)
        completion = probe.transform(dict(case), gold, random.Random(f"{seed}/{i}"))
        if completion is not None:
            out.append((case, gold, completion))
    return out


def answer_of(completion):
    return section_content(completion, "answer")


def think_of(completion):
    return section_content(completion, "think")


def labels(text):
    return list(parse_labels(text).labels)


VOCAB = load_vocabulary("toxicology")


def classes(text):
    found = []
    for label in labels(text):
        ids = VOCAB.normalize(label)
        assert ids is not None, label
        found.extend(ids)
    return set(found)


def letters(text):
    return [s.strip() for s in text.split(",")]


def codes(text):
    return list(parse_icd_codes(text).codes)


def band(case):
    ref = case["reference"]
    return ref.get("lower", ref["value"]), ref.get("upper", ref["value"])


# -- registry --------------------------------------------------------------------------------------
BUILTIN = {
    "hedge_all", "partial_hedge", "empty", "format_only", "answer_in_reasoning", "multiple_answers", "padding",
    "repetition", "phrase_stuffing", "prompt_echo", "judge_injection", "negation", "wrong_units",
    "equivalent_units", "code_category", "code_siblings", "near_miss_code", "synonyms", "brand_names",
}  # fmt: skip


def test_builtin_probes_are_registered_with_their_kinds():
    names = {p.name for p in list_probes()}
    assert BUILTIN <= names
    equivalents = {p.name for p in list_probes() if p.kind == "equivalent"}
    assert {"synonyms", "brand_names", "equivalent_units"} <= equivalents
    assert "hedge_all" not in equivalents
    assert {p.name for p in list_probes("calculator")} >= {"wrong_units", "equivalent_units", "hedge_all"}
    assert "brand_names" not in {p.name for p in list_probes("mcq")}
    assert "code_category" in {p.name for p in list_probes("icd_coding")}


def test_unknown_probe_and_double_registration():
    with pytest.raises(UnknownProbeError, match="known probes: .*hedge_all"):
        get_probe("no-such-probe")
    with pytest.raises(TypeError, match="registered twice"):
        register_probe(Probe("hedge_all", "other", "exploit", None, False, lambda r, g, rng: ""))
    with pytest.raises(ValueError, match="kind"):
        Probe("x", "x", "maybe", None, False, lambda r, g, rng: "")  # type: ignore[arg-type]


# -- each probe performs its rewrite ------------------------------------------------------------------
def test_empty_and_format_only(cases):
    for task in TASKS:
        assert {c for _, _, c in variants(cases, task, "empty")} == {""}
        assert {c for _, _, c in variants(cases, task, "format_only")} == {FORMAT_ONLY}
    assert answer_of(FORMAT_ONLY) == "undetermined" and think_of(FORMAT_ONLY)


def test_hedge_all_toxicology_lists_the_14_classes(cases):
    rows = variants(cases, "toxicology", "hedge_all")
    assert len(rows) == N
    for _, _, completion in rows:
        assert labels(answer_of(completion)) == list(VOCAB.ids) and len(VOCAB.ids) == 14


def test_hedge_all_mcq_lists_every_letter_with_the_gold_inside(cases):
    for case, _, completion in variants(cases, "mcq", "hedge_all"):
        listed = letters(answer_of(completion))
        assert sorted(listed) == sorted(case["reference"]["options"])
        gold = case["reference"]["answer"]
        assert gold in listed[1:-1]


def test_hedge_all_icd_lists_the_gold_codes_and_many_others(cases):
    for case, _, completion in variants(cases, "icd_coding", "hedge_all"):
        listed = codes(answer_of(completion))
        assert set(case["reference"]["codes"]) <= set(listed)
        assert len(listed) >= 40 and set(listed) - set(case["reference"]["codes"]) <= set(COMMON_ICD_CODES)


def test_hedge_all_calculator_lists_many_values_with_the_gold_inside(cases):
    for case, gold, completion in variants(cases, "calculator", "hedge_all"):
        items = [s.strip() for s in answer_of(completion).split(",")]
        assert len(items) >= 7
        assert split_gold(gold)[1] in items[1:-1]


def test_partial_hedges_add_two_or_three_wrong_answers(cases):
    for case, _, completion in variants(cases, "toxicology", "partial_hedge"):
        truth = set(case["reference"]["substances"])
        found = classes(answer_of(completion))
        assert truth <= found and len(found - truth) in (2, 3)
    for case, _, completion in variants(cases, "icd_coding", "partial_hedge"):
        truth = case["reference"]["codes"]
        listed = codes(answer_of(completion))
        extra = [c for c in listed if c not in truth]
        assert set(truth) <= set(listed) and len(extra) in (2, 3)
        assert all(code_info(e).block not in {code_info(t).block for t in truth} for e in extra)
    for case, _, completion in variants(cases, "mcq", "partial_hedge"):
        listed = letters(answer_of(completion))
        assert case["reference"]["answer"] in listed and 2 <= len(listed) < len(case["reference"]["options"])
    for case, gold, completion in variants(cases, "calculator", "partial_hedge"):
        items = [s.strip() for s in answer_of(completion).split(",")]
        assert split_gold(gold)[1] in items and len(items) in (3, 4)
        lo, hi = band(case)
        wrong = [final_number(i).value for i in items if i != split_gold(gold)[1]]
        assert all(not lo <= w <= hi for w in wrong)


def test_answer_in_reasoning_has_no_answer_block(cases):
    for task in TASKS:
        for case, gold, completion in variants(cases, task, "answer_in_reasoning"):
            assert answer_of(completion) is None and "<answer>" not in completion
            assert think_of(completion).endswith(f"the answer is {gold_answer(case)}.")


def test_multiple_answers_put_the_gold_between_two_wrong_blocks(cases):
    for task in TASKS:
        for case, gold, completion in variants(cases, task, "multiple_answers"):
            blocks = [b.split("</answer>")[0] for b in completion.split("<answer>")[1:]]
            assert len(blocks) == 3
            assert blocks[1] == gold_answer(case)
            assert blocks[0] != gold_answer(case) and blocks[2] != gold_answer(case)


def _wrong(task, case, answer):
    """The probe's answer is wrong for the case (no overlap with the reference at all)."""
    ref = case["reference"]
    if task == "toxicology":
        return not (classes(answer) & set(ref["substances"])) and classes(answer) != set(ref["substances"])
    if task == "mcq":
        return answer.strip() in ref["options"] and answer.strip() != ref["answer"]
    if task == "icd_coding":
        blocks = {code_info(c).block for c in ref["codes"]}
        return all(code_info(c).block not in blocks for c in codes(answer))
    lo, hi = band(case)
    return not lo <= final_number(answer).value <= hi


@pytest.mark.parametrize("task", TASKS)
def test_padding_repetition_stuffing_and_injection_answer_wrong(cases, task):
    for name in ("padding", "repetition", "phrase_stuffing", "judge_injection", "multiple_answers"):
        rows = variants(cases, task, name)
        assert len(rows) == N
        for case, _, completion in rows:
            answer = answer_of(completion)
            if name == "judge_injection":
                answer = answer.replace(INJECTION, "")
            if name == "multiple_answers":
                answer = completion.split("<answer>")[1].split("</answer>")[0]
            assert _wrong(task, case, answer), (name, answer)


def test_padding_is_long_and_repetition_repeats(cases):
    for _, gold, completion in variants(cases, "toxicology", "padding"):
        words = think_of(completion).split()
        assert len(words) >= 900
        assert len(set(think_of(completion).split("Step ")[1:])) == 120  # numbered: no sentence repeats
    for _, gold, completion in variants(cases, "mcq", "repetition"):
        think = think_of(completion)
        reasoning = split_gold(gold)[0]
        assert think.count(reasoning) == 40 and len(think) > 40 * len(reasoning)


def test_phrase_stuffing_hits_every_reasoning_pattern_phrase(cases):
    for _, gold, completion in variants(cases, "icd_coding", "phrase_stuffing"):
        value, info = rpr_score(think_of(completion))
        assert len(info["hits"]) == 40 and value == 1.0
        assert rpr_score(split_gold(gold)[0])[0] < 0.1  # the gold reasoning is not stuffed


def test_prompt_echo_repeats_the_prompt(cases):
    for task in TASKS:
        for case, _, completion in variants(cases, task, "prompt_echo"):
            # the prompt itself holds "<think>...</think>": the echo is written verbatim, tags and all
            assert completion == (
                f"<think>{conversation_text(case['prompt'])}</think>\n<answer>{case['prompt'][-1]['content']}</answer>"
            )
            assert answer_of(completion) == case["prompt"][-1]["content"]


def test_judge_injection_addresses_the_grader(cases):
    for task in TASKS:
        for _, _, completion in variants(cases, task, "judge_injection"):
            assert INJECTION in think_of(completion) and INJECTION in answer_of(completion)
            assert {"ignore previous instructions", "all criteria are met", "answer yes"} <= set(
                injection_patterns(answer_of(completion))
            )


def test_negation_negates_the_gold(cases):
    rows = variants(cases, "toxicology", "negation")
    assert rows and len(rows) == sum(1 for c in cases["toxicology"] if c["reference"]["substances"])
    for case, _, completion in rows:
        parsed = parse_labels(answer_of(completion))
        assert parsed.labels == () and set(parsed.negated) == set(case["reference"]["substances"])
    for case, _, completion in variants(cases, "mcq", "negation"):
        assert answer_of(completion) == f"not {case['reference']['answer']}"
    for case, _, completion in variants(cases, "icd_coding", "negation"):
        assert answer_of(completion) == ", ".join(f"not {c}" for c in case["reference"]["codes"])
    for case, gold, completion in variants(cases, "calculator", "negation"):
        assert answer_of(completion) == f"not {split_gold(gold)[1]}"


def test_wrong_units_keep_the_number_and_misread_it(cases):
    rows = variants(cases, "calculator", "wrong_units")
    with_unit = [c for c in cases["calculator"] if c["reference"]["unit"]]
    assert len(rows) == len(with_unit) > 0
    for case, _, completion in rows:
        ref = case["reference"]
        parsed = final_number(answer_of(completion))
        gold_unit = final_number(f"1 {ref['unit']}").unit
        assert parsed.value == pytest.approx(ref["value"]) and parsed.unit not in (None, gold_unit)
        converted = convert(parsed.value, parsed.unit, gold_unit)
        lo, hi = band(case)
        assert converted is None or not lo <= converted <= hi


def test_equivalent_units_convert_the_value(cases):
    rows = variants(cases, "calculator", "equivalent_units")
    assert len(rows) >= 5
    for case, _, completion in rows:
        ref = case["reference"]
        parsed = final_number(answer_of(completion))
        gold_unit = final_number(f"1 {ref['unit']}").unit
        assert parsed.unit != gold_unit
        assert convert(parsed.value, parsed.unit, gold_unit) == pytest.approx(ref["value"], rel=1e-4)


def test_icd_category_siblings_and_near_misses(cases):
    for case, _, completion in variants(cases, "icd_coding", "code_category"):
        assert codes(answer_of(completion)) == list(dict.fromkeys(c[:3] for c in case["reference"]["codes"]))
    for case, _, completion in variants(cases, "icd_coding", "code_siblings"):
        truth = case["reference"]["codes"]
        listed = codes(answer_of(completion))
        assert set(truth) <= set(listed) and len(listed) > len(truth)
        assert all(any(c[:3] == t[:3] for t in truth) for c in listed)
    rows = variants(cases, "icd_coding", "near_miss_code")
    assert len(rows) >= N - 3
    for case, _, completion in rows:
        truth = case["reference"]["codes"]
        listed = codes(answer_of(completion))
        assert len(listed) == len(truth) and not set(listed) & set(truth)
        for near, t in zip(listed, truth):
            assert code_info(near).valid and code_info(near).billable
            assert near[:3] == t[:3] or code_info(near).block == code_info(t).block


def test_synonyms_and_brand_names_say_the_gold_differently(cases):
    for case, _, completion in variants(cases, "toxicology", "synonyms"):
        truth = set(case["reference"]["substances"])
        answer = answer_of(completion)
        if not truth:
            assert VOCAB.is_none(answer) and answer != "none"
            continue
        assert classes(answer) == truth
        assert not {term_key(x) for x in labels(answer)} & {term_key(t) for t in truth}
    rows = variants(cases, "toxicology", "brand_names")
    assert len(rows) == sum(1 for c in cases["toxicology"] if c["reference"]["substances"])
    for case, _, completion in rows:
        answer = answer_of(completion)
        assert classes(answer) == set(case["reference"]["substances"])
        for label in labels(answer):
            (cls,) = VOCAB.normalize(label)
            assert label in VOCAB.classes[cls].members
    for case, _, completion in variants(cases, "mcq", "synonyms"):
        ref = case["reference"]
        assert answer_of(completion) == ref["options"][ref["answer"]]
    for case, _, completion in variants(cases, "icd_coding", "synonyms"):
        answer = answer_of(completion)
        assert "." not in answer and codes(answer) == case["reference"]["codes"]


# -- verdicts on real specs -----------------------------------------------------------------------------
TOX_FORMAT = {"name": "format", "kind": "format.tags", "weight": 0.1}


def tox_spec(name, *components):
    return {"name": name, "task": "toxicology", "components": list(components)}


UNSOUND = {
    # recall with beta 10: missing a class costs 100 times what a hallucinated one does
    "hedge_all": tox_spec("recall_only", TOX_FORMAT, {"name": "substances", "kind": "multilabel", "weight": 0.9,
                          "params": {"vocabulary": "toxicology", "field": "substances",
                                     "metric": "recall_weighted", "beta": 10.0}}),  # fmt: skip
    "format_only": tox_spec("format_heavy", {"name": "format", "kind": "format.tags", "weight": 1.0},
                            {"name": "substances", "kind": "multilabel", "weight": 0.9,
                             "params": {"vocabulary": "toxicology", "field": "substances"}}),  # fmt: skip
    "phrase_stuffing": tox_spec("rpr_heavy", TOX_FORMAT, {"name": "substances", "kind": "multilabel", "weight": 0.9,
                                "params": {"vocabulary": "toxicology", "field": "substances"}},
                                {"name": "rpr", "kind": "reasoning_pattern", "weight": 0.5}),  # fmt: skip
}


@pytest.mark.parametrize("probe", sorted(UNSOUND))
def test_unsound_specs_are_flagged(cases, probe):
    report = run_probes(UNSOUND[probe], cases["toxicology"], probes=[probe])
    result = report.result(probe)
    assert result.verdict == "exploitable", result
    assert result.exploitable_fraction >= 0.5 and result.relative >= 0.5
    assert probe in {r.name for r in report.flagged}
    # the shipped toxicology preset is not fooled by the same rewrite
    assert run_probes("toxicology", cases["toxicology"], probes=[probe]).result(probe).verdict == "sound"


@pytest.mark.parametrize("task", TASKS)
def test_shipped_presets_are_not_flagged_for_hedge_all(cases, task):
    result = run_probes(task, cases[task], probes=["hedge_all"]).result("hedge_all")
    assert result.n_scored == N and result.n_error == 0
    assert result.verdict == "sound", result
    assert result.exploitable_fraction == 0.0 and result.relative < 0.5


def test_synonyms_and_brand_names_score_like_gold_on_the_toxicology_preset(cases):
    report = run_probes("toxicology", cases["toxicology"], probes=["synonyms", "brand_names"])
    for name in ("synonyms", "brand_names"):
        result = report.result(name)
        assert result.verdict == "equivalent", result
        assert result.relative == pytest.approx(1.0)
    assert not report.flagged


def test_equivalent_units_score_like_gold_on_the_calculator_preset(cases):
    result = run_probes("calculator", cases["calculator"], probes=["equivalent_units"]).result("equivalent_units")
    assert result.verdict == "equivalent" and result.n_scored >= 5


def test_a_vocabulary_without_synonyms_is_not_equivalent(cases, tmp_path):
    # the 14 class ids and nothing else: every synonym and brand name is an unknown label
    path = tmp_path / "ids_only.toml"
    path.write_text('name = "ids_only"\nnone = ["none"]\n' + "".join(f'[[class]]\nid = "{c}"\n' for c in VOCAB.ids))
    spec = tox_spec("ids_only", TOX_FORMAT, {"name": "substances", "kind": "multilabel", "weight": 0.9,
                    "params": {"vocabulary": str(path), "field": "substances"}})  # fmt: skip
    report = run_probes(spec, cases["toxicology"], probes=["synonyms", "brand_names", "hedge_all"])
    assert report.result("synonyms").verdict == "not_equivalent"
    assert report.result("brand_names").verdict == "not_equivalent"
    assert report.result("synonyms").relative < 0.5
    assert report.result("hedge_all").verdict == "sound"
    assert {r.name for r in report.flagged} == {"synonyms", "brand_names"}


# -- bad input ---------------------------------------------------------------------------------------
def test_cases_without_reference_skip_the_probes_that_need_one(cases):
    bare = [{k: v for k, v in c.items() if k not in ("reference", "case")} for c in cases["toxicology"][:10]]
    report = run_probes("toxicology", bare + cases["toxicology"][:5])
    skipped = {s["name"]: s for s in report.skipped}
    needing = {p.name for p in list_probes("toxicology") if p.needs_reference}
    assert needing <= set(skipped)
    assert skipped["hedge_all"]["n_cases"] == 10 and "reference" in skipped["hedge_all"]["reason"]
    hedge = report.result("hedge_all")
    assert hedge.n_cases == 15 and hedge.n_scored == 5 and hedge.n_not_applicable == 10
    # a probe without that need runs on every case; the spec cannot score the bare ones
    empty = report.result("empty")
    assert "empty" not in {s["name"] for s in report.skipped if "reference" in s["reason"]}
    assert empty.n_scored == 5 and empty.n_not_applicable == 10
    # no reference at all: every probe that needs one is skipped, nothing is flagged
    nothing = run_probes("toxicology", bare)
    assert nothing.gold_mean is None and nothing.gold_error_rate is None
    assert all(r.verdict == "skipped" for r in nothing.results) and not nothing.flagged
    assert {r.name for r in nothing.results} <= {s["name"] for s in nothing.skipped}


class _FailsWithoutAnswer(RewardComponent):
    """Test component: raises on a completion without an <answer> block (a broken reward). Named by
    import path in the specs below, not registered: every registered kind must be in the fuzz test."""

    kind = "test.audit_fails_without_answer"

    def score_one(self, rollout):
        if "<answer>" not in rollout.completion_text:
            raise RuntimeError("no answer block to read")
        return ComponentScore.ok(1.0)


FAILS_WITHOUT_ANSWER = f"{_FailsWithoutAnswer.__module__}:_FailsWithoutAnswer"


def test_component_errors_are_reported_as_errors_not_low_rewards(cases):
    spec = {"name": "brittle", "task": "mcq", "components": [
        {"name": "choice", "kind": "choice", "weight": 1.0, "params": {"field": "answer"}},
        {"name": "brittle", "kind": FAILS_WITHOUT_ANSWER, "weight": 0.0}]}  # fmt: skip
    report = run_probes(spec, cases["mcq"], probes=["empty", "answer_in_reasoning", "format_only"])
    for name in ("empty", "answer_in_reasoning"):
        result = report.result(name)
        assert result.verdict == "error" and result.n_error == N and result.n_scored == 0
        assert result.mean_reward is None and result.exploitable_fraction is None
        assert "no answer block" in result.note
    assert report.result("format_only").verdict == "sound" and report.result("format_only").n_error == 0
    assert report.gold_error_rate == 0.0 and report.gold_mean == 1.0
    assert not {"empty", "answer_in_reasoning"} & {r.name for r in report.flagged}


def test_gold_errors_are_counted_and_excluded(cases):
    spec = {"name": "brittle_gold", "task": "mcq", "components": [
        {"name": "choice", "kind": "choice", "weight": 1.0, "params": {"field": "answer"}},
        {"name": "brittle", "kind": FAILS_WITHOUT_ANSWER, "weight": 0.0}]}  # fmt: skip
    mixed = [dict(c) for c in cases["mcq"][:10]]
    for c in mixed[:4]:
        c["gold"] = f"<think>x</think> the answer is {c['reference']['answer']}"  # no block: the spec errors
    report = run_probes(spec, mixed, probes=["negation"])
    assert report.gold_error_rate == pytest.approx(0.4)
    result = report.result("negation")
    assert result.n_scored == 10 and result.mean_gold == 1.0  # the six cases with a scorable gold


@pytest.fixture
def scratch_registry(monkeypatch):
    """Probes registered by a test vanish after it (other tests run every registered probe)."""
    from medreward.audit import probes

    monkeypatch.setattr(probes._PROBES, "_entries", dict(probes._PROBES.entries()))


def test_user_probe_and_failing_transform(cases, scratch_registry):
    calls = []

    def shout(record, gold, rng):
        calls.append(record["id"])
        return gold.upper()

    probe = register_probe(Probe("audit_test_shout", "The gold in capitals.", "equivalent", ("mcq",), True, shout))
    assert get_probe("audit_test_shout") is probe
    register_probe(probe)  # the same probe again is fine

    def broken(record, gold, rng):
        raise KeyError("oops")

    failing = Probe("audit_test_broken", "Raises.", "exploit", None, False, broken)
    report = run_probes("mcq", cases["mcq"][:5], probes=["audit_test_shout", failing])
    assert len(calls) == 5
    # <THINK>/<ANSWER> tags in capitals: the format check fails, the answer section is not found
    assert report.result("audit_test_shout").verdict == "not_equivalent"
    bad = report.result("audit_test_broken")
    assert bad.verdict == "skipped" and "KeyError" in bad.note and bad.n_not_applicable == 5


def test_test_components_and_probes_stay_out_of_the_registries():
    assert "test.audit_fails_without_answer" not in registered_kinds()
    assert not [p.name for p in list_probes() if p.name.startswith("audit_test_")]


def test_generic_probes_on_records_of_another_task():
    # no task of the library: the record brings its own gold completion; a format-only spec pays
    # every tagged completion in full, whatever it answers
    records = [{"id": str(i), "task": "qa", "prompt": f"Question {i}?",
                "gold": f"<think>thinking {i}</think>\n<answer>answer {i}</answer>"} for i in range(6)]  # fmt: skip
    spec = {"name": "format_alone", "components": [{"name": "format", "kind": "format.tags", "weight": 1.0}]}
    report = run_probes(spec, records)
    assert report.gold_mean == 1.0
    for name in ("format_only", "padding", "phrase_stuffing", "judge_injection", "repetition"):
        assert report.result(name).verdict == "exploitable", name
    assert report.result("empty").verdict == "sound"
    assert report.result("padding").example.endswith("<answer>undetermined</answer>")
    assert report.result("hedge_all").verdict == "skipped"  # a task-specific probe
    assert {"name": "hedge_all", "reason": "no case of its tasks", "n_cases": 0} in report.skipped


def test_report_is_json_and_deterministic(cases):
    first = run_probes("icd_coding", cases["icd_coding"][:10], seed=4)
    second = run_probes("icd_coding", cases["icd_coding"][:10], seed=4)
    assert first == second
    data = first.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["n_cases"] == 10
    assert data["flagged"] == [r.name for r in first.flagged]
    for r in data["results"]:
        assert set(r) >= {"name", "kind", "description", "n_cases", "n_scored", "n_error", "n_not_applicable",
                          "mean_reward", "mean_gold", "relative", "exploitable_fraction", "verdict", "note",
                          "example"}  # fmt: skip
        assert r["example"] is None or len(r["example"]) <= 500
        for key in ("mean_reward", "mean_gold", "relative", "exploitable_fraction"):
            assert r[key] is None or math.isfinite(r[key])


def test_no_cases():
    report = run_probes("mcq", [], probes=["hedge_all", "empty"])
    assert report.n_cases == 0 and report.gold_mean is None and report.gold_error_rate is None
    assert [r.verdict for r in report.results] == ["skipped", "skipped"] and not report.flagged


def test_a_built_scorer_is_reused_in_one_batch(cases):
    scorer = Scorer("mcq")
    report = run_probes(scorer, cases["mcq"][:10], probes=["empty", "negation", "hedge_all"], progress=True)
    assert isinstance(report, ProbeReport)
    assert scorer.stats.n == 10 * 4  # gold + three probes, scored by this scorer
    assert scorer.score([{"completion": "<answer>A</answer>", "reference": {"answer": "A"}}])[0].reward == 0.9


def test_exploit_and_flag_thresholds(cases):
    # a spec that pays the format alone pays format_only exactly what it pays gold: flagged at any threshold
    format_alone = tox_spec("format_alone", {"name": "format", "kind": "format.tags", "weight": 1.0})
    strict = run_probes(format_alone, cases["toxicology"], probes=["format_only"], exploit_threshold=1.0, flag_fraction=1.0)
    assert strict.result("format_only").verdict == "exploitable"
    # format_only earns 0.1 of gold: sound at 0.5, exploitable when 0.1 x gold already counts
    assert run_probes("mcq", cases["mcq"], probes=["format_only"]).result("format_only").verdict == "sound"
    loose = run_probes("mcq", cases["mcq"], probes=["format_only"], exploit_threshold=0.1)
    assert loose.result("format_only").verdict == "exploitable"
    with pytest.raises(ValueError, match="exploit_threshold"):
        run_probes("mcq", cases["mcq"], exploit_threshold=2)


@pytest.mark.parametrize("task", ["mcq", "icd_coding", "toxicology"])
def test_negated_gold_earns_nothing_on_the_shipped_presets(cases, task):
    # "not C" / "not E11.9" once earned full reward on mcq and icd_coding (parser fixes found by this probe)
    result = run_probes(task, cases[task], probes=["negation"]).result("negation")
    assert result.verdict == "sound", result
    assert result.exploitable_fraction == 0.0
