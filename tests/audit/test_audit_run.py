"""The audit orchestrator (medreward.audit.run): baseline distributions, probes/search/benchmark wired
in, flags on unsound specs and none on the shipped presets, ratings matching, agreement/calibration,
slices, length–reward, zero-variance groups, streaming with a limit, and its error paths."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy import stats as sps

from medreward.audit.cases import gold_completion
from medreward.audit.run import AuditReport, read_ratings, run_audit, summary_stats
from medreward.audit.starc import starc_distance
from medreward.baselines import list_policies
from medreward.errors import InputError
from medreward.records import ScoredRecord, Status
from medreward.runner import Scorer
from medreward.tasks import get_task

#: recall-only labels (F-beta with beta 10 is recall to 1%), format weighted like the answer, and a
#: reasoning-pattern reward at 0.5: hedging every class, empty formats and phrase stuffing all pay
UNSOUND = {
    "name": "unsound_tox",
    "task": "toxicology",
    "components": [
        {"name": "format", "kind": "format.tags", "weight": 1.0},
        {"name": "labels", "kind": "multilabel", "weight": 1.0,
         "params": {"vocabulary": "toxicology", "field": "substances", "metric": "recall_weighted", "beta": 10.0}},
        {"name": "rpr", "kind": "reasoning_pattern", "weight": 0.5},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def tox_cases():
    return get_task("toxicology").generate(40, 3)


@pytest.fixture(scope="module")
def tox_report(tox_cases) -> AuditReport:
    return run_audit("toxicology", tox_cases, exploit_budget=40, seed=1)


@pytest.fixture(scope="module")
def unsound_report(tox_cases) -> AuditReport:
    return run_audit(UNSOUND, tox_cases, exploit_budget=40, seed=1, benchmark=False)


def _verdict(report: AuditReport, probe: str) -> str:
    return report.probes.result(probe).verdict


# -- the shipped presets and an unsound spec ------------------------------------------------------


def test_baselines_are_every_policy_of_the_task_scored_with_the_spec(tox_report, tox_cases):
    assert set(tox_report.baselines) == {p.name for p in list_policies("toxicology")}
    scorer = Scorer("toxicology")
    from medreward.baselines import run_policy

    for name, stats in tox_report.baselines.items():
        expected = [r.reward for r in scorer.score(run_policy("toxicology", name, tox_cases, seed=1))]
        assert stats["rewards"] == expected
        assert stats["n"] == len(tox_cases) and stats["n_error"] == 0
        assert stats["mean"] == pytest.approx(statistics.fmean(expected))
        assert stats["std"] == pytest.approx(statistics.pstdev(expected))
    # the gold completions are the task's reference answers: full reward on the preset
    assert tox_report.gold["mean"] == pytest.approx(1.0)
    assert tox_report.gold["n"] == len(tox_cases)
    # format_only earns the format weight alone (0.1): the preset ranks it below gold
    assert tox_report.baselines["format_only"]["mean"] == pytest.approx(0.1)


def test_shipped_preset_is_not_flagged_for_hedge_all(tox_report):
    assert _verdict(tox_report, "hedge_all") == "sound"
    assert "probe:hedge_all" not in tox_report.flagged
    # what is flagged is exactly the probes whose verdict says so, and the search when it won
    expected = [f"probe:{r.name}" for r in tox_report.probes.results if r.verdict in ("exploitable", "not_equivalent")]
    assert tox_report.flagged == expected + (["exploit_search"] if tox_report.exploit.verdict == "exploitable" else [])


@pytest.mark.parametrize("preset", ["icd_coding", "mcq", "calculator"])
def test_other_shipped_presets_are_not_flagged_for_hedge_all(preset):
    cases = get_task(preset).generate(25, 0)
    report = run_audit(preset, cases, search=False, benchmark=False)
    hedge = report.probes.result("hedge_all")
    assert hedge.verdict in ("sound", "skipped"), hedge  # calculator has no labels to hedge
    assert "probe:hedge_all" not in report.flagged
    if preset != "calculator":
        assert hedge.verdict == "sound" and hedge.n_scored == 25


def test_unsound_spec_is_flagged(unsound_report):
    flagged = unsound_report.flagged
    assert "probe:hedge_all" in flagged, flagged
    assert _verdict(unsound_report, "hedge_all") == "exploitable"
    assert unsound_report.exploitable
    # hedge beats the honest toxidrome classifier under a recall-only reward
    assert unsound_report.baselines["hedge"]["mean"] > unsound_report.baselines["toxidrome"]["mean"]
    assert "exploit_search" in flagged and unsound_report.exploit.verdict == "exploitable"


def test_report_to_dict_is_strict_json(tox_report):
    data = tox_report.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["spec"] == "toxicology" and back["task"] == "toxicology"
    assert back["n_cases"] == 40 and back["pool"] == "baselines"
    for part in ("probes", "exploit", "benchmark"):
        assert isinstance(back[part], dict)
    assert back["benchmark"]["pairwise_accuracy"] is not None
    assert back["ratings"] is None and back["agreement"] is None and back["calibration"] is None
    assert set(back["timings"]) >= {"baselines", "probes", "exploit_search", "benchmark", "total"}


# -- the pool: slices, length, zero-variance groups ---------------------------------------------


def test_pool_of_baselines_and_gold_gives_slices_length_and_groups(tox_report, tox_cases):
    n_policies = len(tox_report.baselines)
    rows = tox_report.slices["task"]
    assert [r.key for r in rows] == ["toxicology"]
    assert rows[0].n == len(tox_cases) * (n_policies + 1)  # every policy and gold on every case
    pooled = [x for s in tox_report.baselines.values() for x in s["rewards"]] + tox_report.gold["rewards"]
    assert rows[0].mean == pytest.approx(statistics.fmean(pooled))
    points = tox_report.length_points
    assert points["n"] == len(pooled) and len(points["length"]) == len(points["reward"]) == len(pooled)
    assert sorted(points["reward"]) == pytest.approx(sorted(pooled))
    assert tox_report.zero_variance_groups is not None and 0.0 <= tox_report.zero_variance_groups <= 1.0


def _rollout(ident, group, answer, *, site="a", think="checked the case"):
    return {"id": ident, "group": group, "prompt": f"case {group}", "task": "toxicology", "site": {"name": site},
            "reference": {"substances": ["opioids"]}, "completion": f"<think>{think}</think><answer>{answer}</answer>"}  # fmt: skip


def test_rollouts_in_the_input_are_the_pool():
    rollouts = [
        _rollout("r1", "g1", "opioids", site="a"),
        _rollout("r2", "g1", "opioids", site="a"),  # group g1: both 1.0 → zero variance
        _rollout("r3", "g2", "opioids", site="b", think="a much longer line of reasoning here"),
        _rollout("r4", "g2", "ethanol", site="b"),
    ]
    report = run_audit("toxicology", rollouts, search=False, benchmark=False, probes=False,
                       slice_fields=("site.name", "missing_field"))  # fmt: skip
    assert report.pool == "rollouts" and report.n_rollouts == 4
    assert report.n_cases == 2  # one case per prompt and reference
    assert report.zero_variance_groups == pytest.approx(0.5)
    by_site = {r.key: r for r in report.slices["site.name"]}
    assert by_site["a"].n == 2 and by_site["a"].mean == pytest.approx(1.0)
    assert by_site["b"].mean == pytest.approx((1.0 + 0.1) / 2)  # ethanol: format only
    assert [r.key for r in report.slices["missing_field"]] == ["(missing)"]
    assert report.length_points["length"] == [3, 3, 7, 3]  # whitespace-separated words of each completion
    # toxidrome reads the generator's structured case, which these records lack: skipped, and said
    assert "toxidrome" not in report.baselines and "history" in report.baselines
    assert any("toxidrome" in note and "cannot run" in note for note in report.notes)


# -- ratings, agreement, calibration --------------------------------------------------------------


def test_ratings_match_by_id_and_agreement_uses_the_matched_pairs(tmp_path):
    answers = ["opioids", "opioids, ethanol", "ethanol", "opioids, ethanol, stimulants", "none", "opioids"]
    rollouts = [_rollout(f"r{i}", f"g{i % 3}", a) for i, a in enumerate(answers)]
    ratings = {"r0": 1, "r1": 1, "r2": 0, "r3": 0, "r4": 0, "ghost": 1}  # r5 unrated, ghost has no rollout
    path = tmp_path / "ratings.jsonl"
    path.write_text("".join(json.dumps({"id": k, "rating": v}) + "\n" for k, v in ratings.items()), "utf-8")
    report = run_audit("toxicology", rollouts, ratings=path, search=False, benchmark=False, probes=False)
    m = report.ratings
    assert (m.n_ratings, m.n_rollouts, m.n_matched, m.n_error) == (6, 6, 5, 0)
    assert m.missing_in_ratings == ["r5"] and m.missing_in_cases == ["ghost"]
    rewards = {r.record["id"]: r.reward for r in Scorer("toxicology").score(rollouts)}
    pred = [rewards[i] for i in ("r0", "r1", "r2", "r3", "r4")]
    truth = [1, 1, 0, 0, 0]
    assert report.agreement.spearman.value == pytest.approx(sps.spearmanr(pred, truth).statistic)
    assert report.agreement.kendall.value == pytest.approx(sps.kendalltau(pred, truth).statistic)
    assert report.agreement.n == 5
    # rewards in [0, 1] and 0/1 ratings: calibration runs, on the same pairs
    assert report.calibration is not None and report.calibration.n == 5
    assert report.calibration.brier == pytest.approx(statistics.fmean((p - t) ** 2 for p, t in zip(pred, truth)))


def test_starc_against_the_ratings_groups_the_rated_rollouts_by_prompt():
    # two prompts with three rollouts each; the ratings order the first like the spec and the second opposite
    answers = ["opioids", "opioids, ethanol", "none", "opioids", "opioids, ethanol", "none"]
    rollouts = [_rollout(f"r{i}", f"g{i // 3}", a) for i, a in enumerate(answers)]
    rewards = {r.record["id"]: r.reward for r in Scorer("toxicology").score(rollouts)}
    ratings = {f"r{i}": (rewards[f"r{i}"] if i < 3 else -rewards[f"r{i}"]) for i in range(6)}
    report = run_audit("toxicology", rollouts, ratings=ratings, search=False, benchmark=False, probes=False)
    expected = starc_distance([rewards[f"r{i}"] for i in range(6)], [ratings[f"r{i}"] for i in range(6)],
                              ["g0"] * 3 + ["g1"] * 3)  # fmt: skip
    assert report.starc.distance == pytest.approx(0.5) == pytest.approx(expected.distance)  # (0 + 1) / 2
    assert report.starc.n_groups_used == 2
    assert report.to_dict()["starc"]["distance"] == pytest.approx(0.5)


def test_calibration_is_skipped_for_non_binary_ratings_with_a_note():
    rollouts = [_rollout(f"r{i}", f"g{i}", a) for i, a in enumerate(["opioids", "ethanol", "opioids, ethanol"])]
    report = run_audit("toxicology", rollouts, ratings={"r0": 5, "r1": 1, "r2": 3},
                       search=False, benchmark=False, probes=False)  # fmt: skip
    assert report.agreement is not None and report.agreement.n == 3
    assert report.calibration is None
    assert any("not binary" in note for note in report.notes)


def test_constant_ratings_give_undefined_agreement_not_zero():
    rollouts = [_rollout(f"r{i}", f"g{i}", a) for i, a in enumerate(["opioids", "ethanol", "opioids, ethanol"])]
    report = run_audit("toxicology", rollouts, ratings={"r0": 1, "r1": 1, "r2": 1},
                       search=False, benchmark=False, probes=False)  # fmt: skip
    assert report.agreement.spearman.value is None and "constant" in report.agreement.spearman.note
    assert report.to_dict()["agreement"]["spearman"]["value"] is None


def test_ratings_without_completions_are_reported_not_a_crash(tox_cases):
    report = run_audit("toxicology", tox_cases[:5], ratings={"x": 1.0}, search=False, benchmark=False, probes=False)
    assert report.ratings.n_matched == 0 and report.ratings.missing_in_cases == ["x"]
    assert any("no completion" in note for note in report.notes)
    assert report.agreement.spearman.value is None


# -- errors are errors ------------------------------------------------------------------------------


def test_component_errors_are_counted_not_scored_low(tox_cases):
    spec = {"name": "boom", "components": [
        {"name": "tox", "kind": "multilabel", "weight": 1.0, "params": {"vocabulary": "toxicology", "field": "substances"}},
        {"name": "raises", "kind": "faulty_components:Raises", "weight": 0.0},
    ]}  # fmt: skip
    rollouts = [_rollout("r0", "g0", "opioids"), _rollout("r1", "g1", "opioids", think="boom")]
    report = run_audit(spec, rollouts, search=False, benchmark=False, probes=False)
    [row] = report.slices["task"]
    assert row.n == 1  # the erroring rollout is left out of the pool, not scored 0
    assert report.length_points["n"] == 1


def test_summary_stats_leaves_errors_out():
    rows = [ScoredRecord({}, 0.25, {}, Status.OK), ScoredRecord({}, None, {}, Status.TIMEOUT),
            ScoredRecord({}, 0.75, {}, Status.OK)]  # fmt: skip
    assert summary_stats(rows) == {"mean": 0.5, "std": 0.25, "n": 2, "n_error": 1, "rewards": [0.25, 0.75]}
    empty = summary_stats([ScoredRecord({}, None, {}, Status.ERROR)])
    assert empty["mean"] is None and empty["std"] is None and empty["n_error"] == 1


# -- input handling ---------------------------------------------------------------------------------


def test_limit_reads_the_cases_lazily(tox_cases):
    def stream():
        yield from tox_cases[:7]
        raise AssertionError("read past --limit")

    report = run_audit("toxicology", stream(), limit=7, search=False, benchmark=False, probes=False)
    assert report.n_cases == 7


def test_cases_without_references_get_no_gold_and_a_note():
    cases = [{"id": f"c{i}", "prompt": f"case {i}", "task": "toxicology"} for i in range(4)]
    report = run_audit("toxicology", cases, search=False, benchmark=False)
    assert report.gold is None
    assert any(note.startswith("gold:") for note in report.notes)
    assert report.probes.skipped or all(r.verdict == "skipped" for r in report.probes.results)


def test_unreadable_records_are_skipped_with_a_note(tox_cases):
    from medreward.records import BadRecord

    mixed = [BadRecord(2, "{oops", "line 2: not JSON"), *tox_cases[:3]]
    report = run_audit("toxicology", mixed, search=False, benchmark=False, probes=False)
    assert report.n_cases == 3
    assert any("skipped 1 unreadable" in note and "line 2" in note for note in report.notes)


def test_empty_input_is_an_input_error():
    with pytest.raises(InputError, match="no cases"):
        run_audit("toxicology", [], search=False, benchmark=False)
    with pytest.raises(InputError, match="positive"):
        run_audit("toxicology", [{"prompt": "x"}], limit=0)


def test_gold_rewards_match_scoring_the_gold_completions(tox_report, tox_cases):
    golds = [{**c, "completion": gold_completion(c)} for c in tox_cases]
    expected = [r.reward for r in Scorer("toxicology").score(golds)]
    assert tox_report.gold["rewards"] == expected


# -- ratings files ----------------------------------------------------------------------------------


def test_read_ratings(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a", "rating": 4}\n\n{"id": 7, "rating": true}\n{"id": "c", "rating": 0.5}\n', "utf-8")
    assert read_ratings(path) == {"a": 4.0, "7": 1.0, "c": 0.5}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "rating": 1}\n{not json\n', "line 2: not JSON"),
        ('{"id": "a"}\n', "line 1: expected an object with 'id' and 'rating'"),
        ('[1, 2]\n', "line 1: expected an object"),
        ('{"id": "a", "rating": "good"}\n', "line 1: 'rating' must be a finite number"),
        ('{"id": "a", "rating": NaN}\n', "line 1: 'rating' must be a finite number"),
        ('{"id": [1], "rating": 1}\n', "line 1: 'id' must be a string"),
        ('{"id": "a", "rating": 1}\n{"id": "a", "rating": 2}\n', "line 2: id 'a' is rated twice"),
        ("\n\n", "holds no ratings"),
    ],
)
def test_bad_ratings_files_are_input_errors(tmp_path, content, message):
    path = tmp_path / "r.jsonl"
    path.write_text(content, "utf-8")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_ratings(path)


def test_missing_ratings_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_ratings(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="directory"):
        read_ratings(tmp_path)


def test_timings_are_finite_and_add_up(tox_report):
    timings = tox_report.timings
    assert all(math.isfinite(v) and v >= 0 for v in timings.values())
    assert timings["total"] >= sum(v for k, v in timings.items() if k != "total") * 0.99


def test_cases_without_a_task_take_the_spec_task(tox_cases):
    bare = [{k: v for k, v in c.items() if k != "task"} for c in tox_cases[:6]]
    report = run_audit("toxicology", bare, search=False, benchmark=False)
    assert report.task == "toxicology" and report.gold["n"] == 6
    assert "hedge" in report.baselines and report.probes.result("hedge_all").n_scored == 6
    assert any("6 case(s) without a task taken as the spec's task 'toxicology'" in note for note in report.notes)
    assert all("task" not in c for c in bare)  # the caller's records are left as they were


def test_ratings_mapping_is_checked_and_ids_read_as_text():
    rollouts = [_rollout("1", "g1", "opioids"), _rollout("2", "g2", "ethanol")]
    report = run_audit("toxicology", rollouts, ratings={1: True, 2: 0}, search=False, benchmark=False, probes=False)
    assert report.ratings.n_matched == 2
    with pytest.raises(InputError, match="id 2 must be a finite number"):
        run_audit("toxicology", rollouts, ratings={1: 1.0, 2: float("nan")}, probes=False)


def _labels(weight, **params):
    return {"name": "labels", "kind": "multilabel", "weight": weight,
            "params": {"vocabulary": "toxicology", "field": "substances", **params}}  # fmt: skip


#: one flaw each, and the probe that must catch it
ONE_FLAW = {
    "format weight 1.0": ({"format": 1.0, "labels": 0.2}, "probe:format_only"),
    "reasoning-pattern weight 0.5": ({"labels": 1.0, "rpr": 0.5}, "probe:phrase_stuffing"),
    "recall-only labels": ({"recall": 1.0}, "probe:hedge_all"),
}


@pytest.mark.parametrize("flaw", sorted(ONE_FLAW))
def test_each_single_flaw_is_flagged_by_its_probe(flaw, tox_cases):
    weights, probe = ONE_FLAW[flaw]
    components = []
    if "format" in weights:
        components.append({"name": "format", "kind": "format.tags", "weight": weights["format"]})
    if "labels" in weights:
        components.append(_labels(weights["labels"]))
    if "recall" in weights:
        components.append(_labels(weights["recall"], metric="recall_weighted", beta=10.0))
    if "rpr" in weights:
        components.append({"name": "rpr", "kind": "reasoning_pattern", "weight": weights["rpr"]})
    report = run_audit({"name": "flawed", "task": "toxicology", "components": components}, tox_cases[:30],
                       search=False, benchmark=False)  # fmt: skip
    assert probe in report.flagged, (flaw, report.flagged)
    assert report.probes.result(probe.split(":")[1]).verdict == "exploitable"
