"""How the audit scores its own completions (medreward.audit.scoring): a spec or a built scorer, and
under a consistency gate (the ``*_consistent`` presets) completions that state their conclusion —
so gold earns full reward and the probes measure the rest of the reward, while user rollouts are
scored exactly as written."""

from __future__ import annotations

import pytest

from medreward.audit.benchmark import build_preferences, run_benchmark
from medreward.audit.cases import gold_completion
from medreward.audit.probes import run_probes
from medreward.audit.run import run_audit
from medreward.audit.scoring import (
    ConclusionStatingScorer,
    open_scorer,
    state_conclusion,
)
from medreward.records import Rollout
from medreward.runner import Scorer
from medreward.tasks import get_task


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>I weigh each option.</think>\n<answer>C</answer>",
         "<think>I weigh each option. So I conclude C.</think>\n<answer>C</answer>"),
        # the answer's whitespace is folded and a final full stop is not doubled
        ("<think>r</think><answer>opioids,\n  ethanol.</answer>",
         "<think>r So I conclude opioids, ethanol.</think><answer>opioids,\n  ethanol.</answer>"),
        # several answer blocks: the last one is the answer (as the readers take it)
        ("<think>r</think><answer>A</answer><answer>B</answer>",
         "<think>r So I conclude B.</think><answer>A</answer><answer>B</answer>"),
        ("<answer>C</answer>", "<answer>C</answer>"),  # no reasoning
        ("<think>r</think>", "<think>r</think>"),  # no answer
        ("<think>r</think><answer>  </answer>", "<think>r</think><answer>  </answer>"),  # empty answer
        ("<answer>C</answer><think>r</think>", "<answer>C</answer><think>r</think>"),  # reasoning after the answer
    ],
)  # fmt: skip
def test_state_conclusion(completion, expected):
    assert state_conclusion(completion) == expected


def test_each_compare_mode_reads_the_stated_conclusion_as_the_answer():
    """The phrase per mode is one its reader takes the answer's own value from, hedges included
    (a letter needs a claim once the reasoning is long; a number must not sit behind an "is")."""
    from medreward.audit.scoring import CONCLUSION_PHRASES
    from medreward.rewards.consistency import Consistency

    long_reasoning = "The troponin is markedly elevated at 12 ng/mL and the ECG shows ST elevation in V1-V4."
    answers = {"choice": ["C", "Metformin"], "number": ["49.2 mL/hr", "49.2 mL/hr or 60 mL/hr", "16.4, 105.78, 49.2"],
               "labels": ["opioids, ethanol", "none", "opioids, benzodiazepines, ethanol"]}
    for mode, phrase in CONCLUSION_PHRASES.items():
        component = Consistency(compare=mode, vocabulary="toxicology" if mode == "labels" else None)
        for answer in answers[mode]:
            completion = state_conclusion(f"<think>{long_reasoning}</think><answer>{answer}</answer>", phrase=phrase)
            rollout = Rollout(completion=completion, reference={"options": {"A": "Insulin", "C": "Metformin"}})
            assert component.score_one(rollout).value == 1.0, (mode, completion)


def test_state_conclusion_leaves_non_text_alone():
    messages = [{"role": "assistant", "content": "<answer>C</answer>"}]
    assert state_conclusion(messages) is messages and state_conclusion(None) is None


def test_open_scorer_wraps_only_consistency_specs_and_says_who_closes():
    plain, owned = open_scorer("mcq")
    assert isinstance(plain, Scorer) and owned
    plain.close()
    gated, owned = open_scorer("mcq_consistent")
    assert isinstance(gated, ConclusionStatingScorer) and owned and gated.spec.name == "mcq_consistent"
    gated.close()
    with Scorer("mcq_consistent") as built:
        wrapped, owned = open_scorer(built)
        assert isinstance(wrapped, ConclusionStatingScorer) and wrapped.scorer is built and not owned
        assert open_scorer(wrapped) == (wrapped, False)  # never wrapped twice


def test_the_wrapper_states_conclusions_of_dicts_and_rollouts():
    neutral = "<think>I weigh each option against the question.</think>\n<answer>C</answer>"
    record = {"id": "x", "completion": neutral, "reference": {"answer": "C"}}
    with Scorer("mcq_consistent") as scorer:
        assert scorer.score([record])[0].reward == 0.0  # the gate: no conclusion in the reasoning
        wrapped, _ = open_scorer(scorer)
        as_dict, as_rollout = wrapped.score([record, Rollout.from_dict(record)])
        streamed = list(wrapped.iter_score([record]))
    assert as_dict.reward == as_rollout.reward == streamed[0].reward == 1.0
    assert as_dict.record["completion"].endswith("So the answer is C.</think>\n<answer>C</answer>")
    assert record["completion"] == neutral  # the caller's record is not changed


@pytest.mark.parametrize(("gated", "plain"), [("mcq_consistent", "mcq"), ("toxicology_consistent", "toxicology"),
                                             ("calculator_consistent", "calculator")])  # fmt: skip
def test_probes_under_a_consistency_gate_measure_the_rest_of_the_reward(gated, plain):
    """Gold and every probe state their answer, so gold keeps full reward, the equivalents stay
    equivalent, and the gate only ever takes reward away (from answers it cannot read, such as
    format_only's "undetermined", or hedges that name several options)."""
    cases = get_task(plain).generate(12, 1)
    under_gate = run_probes(gated, cases)
    ungated = run_probes(plain, cases)
    assert under_gate.gold_mean == ungated.gold_mean == 1.0
    for a, b in zip(under_gate.results, ungated.results, strict=True):
        assert a.name == b.name and a.n_scored == b.n_scored
        if b.mean_reward is None:
            assert a.mean_reward is None
            continue
        assert a.mean_reward <= b.mean_reward + 1e-9, a.name
        if a.kind == "equivalent":
            assert a.verdict == b.verdict == "equivalent", a.name
    assert under_gate.result("format_only").mean_reward == 0.0 < ungated.result("format_only").mean_reward

    items = build_preferences(cases, seed=0)
    gated_bench, plain_bench = run_benchmark(gated, items), run_benchmark(plain, items)
    assert gated_bench.mean_chosen == plain_bench.mean_chosen == 1.0
    assert gated_bench.mean_rejected <= plain_bench.mean_rejected + 1e-9


def test_audit_states_conclusions_but_scores_user_rollouts_as_written():
    cases = get_task("mcq").generate(10, 2)
    neutral = [dict(c, completion=gold_completion(c)) for c in cases]  # right letter, reasoning concludes nothing
    report = run_audit("mcq_consistent", neutral, search=False, benchmark=False, probes=False)
    assert report.gold["mean"] == 1.0
    assert report.n_rollouts == 10 and report.pool == "rollouts"
    assert {row.mean for row in report.slices["task"]} == {0.0}  # the user's rollouts hit the gate
    assert any("state their answer" in note for note in report.notes)
    plain = run_audit("mcq", cases, search=False, benchmark=False, probes=False)
    assert not any("state their answer" in note for note in plain.notes)
