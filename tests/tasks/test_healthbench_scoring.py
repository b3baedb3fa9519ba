"""HealthBench JSONL → the task loader → rollout records → the ``healthbench`` preset, against a
deterministic judge (tests/support/keyword_judge.py: a criterion is met iff the phrase it quotes
occurs in the response), in process, through ``medreward score`` against a loopback server, and
through the TRL task router. Expected scores are computed by hand below.

HealthBench's per-example score (simple-evals ``calculate_score``): Σ points of met criteria /
Σ positive points; the preset's reward clips it to [0, 1].
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_runner import run_all
from keyword_judge import KeywordJudge, KeywordJudgeServer, build_keyword_judge

from medreward import Scorer, Status
from medreward.compose.spec import Spec, list_presets, load_spec
from medreward.integrations.registry import resolve_data_source
from medreward.rewards.rubric import parse_rubric
from medreward.tasks.mcq import load_mcq

IDEAL = "This could be a heart attack. Call emergency services now and chew 300 mg of aspirin unless you are allergic."

# Three made-up items in HealthBench's field layout (prompt messages, rubrics, example_tags,
# prompt_id, ideal_completions_data where physicians wrote one, canary).
ITEMS = [
    {
        "prompt": [{"role": "user", "content": "I'm 58 and have crushing chest pain spreading to my left arm for 20 minutes. What should I do?"}],
        "rubrics": [
            {"criterion": 'Advises calling "emergency services" immediately', "points": 10, "tags": ["axis:accuracy"]},
            {"criterion": 'Suggests chewing "aspirin" if not allergic', "points": 5, "tags": ["axis:completeness"]},
            {"criterion": 'Recommends to "wait and see"', "points": -8, "tags": ["axis:accuracy"]},
            {"criterion": 'Tells the user to "drive to the hospital" themselves', "points": -4, "tags": ["axis:accuracy"]},
        ],
        "example_tags": ["theme:emergency_referrals", "physician_agreed_category:emergent"],
        "prompt_id": "hb-chest",
        "ideal_completions_data": {"ideal_completion": IDEAL, "ideal_completions_group": "Group 1",
                                   "ideal_completions_ref_completions": ["ref a", "ref b"]},
        "canary": "made-up test data",
    },
    {
        "prompt": [{"role": "user", "content": "My kid has a fever of 39.2. What can I give?"}],
        "rubrics": [
            {"criterion": 'Asks for the child\'s age ("how old")', "points": 6, "tags": ["axis:context_awareness"]},
            {"criterion": 'Mentions "paracetamol" dosing by weight', "points": 4, "tags": ["axis:completeness"]},
            {"criterion": 'Recommends "aspirin" for the child', "points": -10, "tags": ["axis:accuracy"]},
        ],
        "example_tags": ["theme:context_seeking"],
        "prompt_id": "hb-fever",
        "ideal_completions_data": None,
        "canary": "made-up test data",
    },
    {
        "prompt": [
            {"role": "user", "content": "I can't sleep."},
            {"role": "assistant", "content": "How long has this been going on?"},
            {"role": "user", "content": "About three weeks, since I started night shifts."},
        ],
        "rubrics": [
            {"criterion": 'Mentions "sleep hygiene"', "points": 5, "tags": ["axis:completeness"]},
            {"criterion": 'Suggests "melatonin" without caveats', "points": -3, "tags": ["axis:accuracy"]},
        ],
        "example_tags": ["theme:global_health"],
        "prompt_id": "hb-sleep",
        "canary": "made-up test data",
    },
]

# (prompt_id, completion, raw HealthBench score by hand, clipped reward)
ROLLOUTS = [
    ("hb-chest", IDEAL, (10 + 5) / 15, 1.0),
    ("hb-chest", "Probably a pulled muscle: wait and see, and drive to the hospital if it gets worse.", (-8 - 4) / 15, 0.0),
    ("hb-chest", "Call emergency services right away.", 10 / 15, 10 / 15),
    ("hb-fever", "How old is your child? Paracetamol dosing depends on weight.", (6 + 4) / 10, 1.0),
    ("hb-fever", "Give aspirin and paracetamol.", (4 - 10) / 10, 0.0),
    ("hb-sleep", "Good sleep hygiene helps, and melatonin may too.", (5 - 3) / 5, 0.4),
    ("hb-sleep", "Try harder.", 0.0, 0.0),
]


def _write_items(path: Path) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in ITEMS), encoding="utf-8")
    return path


def _rollouts(tmp_path: Path) -> list[dict]:
    result = load_mcq(_write_items(tmp_path / "healthbench_sample.jsonl"))
    assert result.problems == []
    cases = {case["id"]: case for case in result.cases}
    return [{**cases[pid], "id": f"{pid}-{k}", "completion": text} for k, (pid, text, _, _) in enumerate(ROLLOUTS)]


def test_the_loader_writes_the_reference_the_rubric_component_reads(tmp_path):
    result = load_mcq(_write_items(tmp_path / "hb.jsonl"))
    assert result.layouts == {"healthbench": 3} and result.problems == []
    chest, fever, sleep = result.cases
    assert chest["task"] == "healthbench" and chest["id"] == "hb-chest"
    assert chest["reference"] == {"rubric": ITEMS[0]["rubrics"], "ideal_answer": IDEAL}
    assert fever["reference"] == {"rubric": ITEMS[1]["rubrics"]}  # no physician completion: no ideal_answer
    assert sleep["prompt"] == ITEMS[2]["prompt"]
    assert chest["case"]["example_tags"] == ITEMS[0]["example_tags"]
    items = parse_rubric(chest["reference"]["rubric"])
    assert [(i.id, i.points, i.tags) for i in items] == [
        ("c1", 10.0, ("axis:accuracy",)), ("c2", 5.0, ("axis:completeness",)),
        ("c3", -8.0, ("axis:accuracy",)), ("c4", -4.0, ("axis:accuracy",)),
    ]  # fmt: skip


def test_the_loader_reports_rubric_items_the_scorer_could_not_read(tmp_path):
    bad = [dict(ITEMS[2], prompt_id=f"bad-{i}", rubrics=[r]) for i, r in enumerate([
        {"criterion": "  ", "points": 5}, {"criterion": "x", "points": 5, "tags": [1]},
    ])]  # fmt: skip
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in bad), encoding="utf-8")
    result = load_mcq(path)
    assert result.cases == []
    assert [str(p) for p in result.problems] == [
        "line 1: healthbench: rubric 0 must be an object with a non-empty string 'criterion'",
        "line 2: healthbench: rubric 0: 'tags' must be a list of strings",
    ]


def _spec(mode: str) -> Spec:
    data = load_spec("healthbench").to_dict()
    data["components"][0]["params"]["mode"] = mode
    return Spec.from_dict(data)


@pytest.mark.parametrize("mode, calls", [("batched", 7), ("per_criterion", 3 * 4 + 2 * 3 + 2 * 2)])
def test_the_healthbench_preset_scores_loaded_cases_as_computed_by_hand(tmp_path, mode, calls):
    rows = _rollouts(tmp_path)
    KeywordJudge.built.clear()
    with Scorer(_spec(mode), backend_factory=build_keyword_judge, use_cache=False) as scorer:
        out = scorer.score(rows)
    assert [r.status for r in out] == [Status.OK] * len(ROLLOUTS)
    assert [r.reward for r in out] == pytest.approx([reward for *_, reward in ROLLOUTS])
    assert [r.info["rubric"]["raw_score"] for r in out] == pytest.approx([raw for _, _, raw, _ in ROLLOUTS])
    # the ideal answer meets both positive criteria and neither negative one; per axis likewise
    assert [c["met"] for c in out[0].info["rubric"]["criteria"]] == [True, True, False, False]
    assert out[0].info["rubric"]["axis_scores"] == {"accuracy": 1.0, "completeness": 1.0}
    assert out[1].info["rubric"]["axis_scores"] == {"accuracy": pytest.approx(-12 / 10), "completeness": 0.0}
    [judge] = KeywordJudge.built
    assert judge.model == "medreward-judge" and len(judge.requests) == calls
    assert scorer.stats.backends["judge"].calls == calls
    # HealthBench's benchmark number: the mean of the raw scores, clipped once (simple-evals)
    mean = sum(raw for _, _, raw, _ in ROLLOUTS) / len(ROLLOUTS)
    assert min(1.0, max(0.0, sum(r.info["rubric"]["raw_score"] for r in out) / len(out))) == pytest.approx(mean)


def test_a_record_without_a_rubric_is_not_applicable_and_makes_no_call():
    KeywordJudge.built.clear()
    with Scorer("healthbench", backend_factory=build_keyword_judge, use_cache=False) as scorer:
        [r] = scorer.score([{"completion": "Call emergency services.", "reference": {"answer": "x"}}])
    assert r.status is Status.NOT_APPLICABLE and r.reward is None
    assert all(not b.requests for b in KeywordJudge.built)


def test_the_medix_preset_scores_format_and_judge():
    rows = [
        {"prompt": "Pinpoint pupils, slow breathing: which class?", "completion": "<think>miosis</think><answer>Opioids</answer>",
         "reference": {"answer": "opioids"}},
        {"prompt": "Same", "completion": "<think>miosis</think><answer>benzodiazepines</answer>", "reference": {"answer": "opioids"}},
        {"prompt": "Same", "completion": "opioids", "reference": {"answer": "opioids"}},  # no tags: no format, no <answer>
    ]  # fmt: skip
    with Scorer("medix", backend_factory=build_keyword_judge, use_cache=False) as scorer:
        out = scorer.score(rows)
    assert [r.components for r in out] == [
        {"format": 1.0, "judge": 1.0}, {"format": 1.0, "judge": 0.0}, {"format": 0.0, "judge": 0.0},
    ]  # fmt: skip
    assert [r.reward for r in out] == pytest.approx([1.0, 0.1, 0.0])
    assert out[0].info["judge"]["verdict"] == "YES" and out[0].info["judge"]["score_source"] == "text"
    assert "reason" in out[2].info["judge"]  # the missing <answer> section is said, and made no call
    assert scorer.stats.backends["judge"].calls == 2


def test_the_task_name_routes_to_the_preset():
    assert resolve_data_source("healthbench") == "healthbench"
    assert load_spec("healthbench").task == "healthbench"
    for name in ("healthbench", "medix"):
        spec = list_presets()[name]
        assert spec.backends["judge"].base_url == "http://127.0.0.1:8080/v1"
        assert "--backend-url" in spec.description and "MEDREWARD_JUDGE_BASE_URL" in spec.description


@pytest.fixture
def judge_server():
    pytest.importorskip("aiohttp")
    with KeywordJudgeServer() as server:
        yield server


def test_loading_listing_and_showing_the_presets_makes_no_call(judge_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDREWARD_JUDGE_BASE_URL", judge_server.url)
    load_spec("healthbench"), load_spec("medix")
    Scorer("healthbench", cache=tmp_path / "c.sqlite").close()  # backends are built on the first batch
    runs = run_all({"list": ("specs",), "show": ("specs", "show", "healthbench")}, tmp_path,
                   env={"MEDREWARD_JUDGE_BASE_URL": judge_server.url})  # fmt: skip
    assert runs["list"].returncode == 0 and "healthbench" in runs["list"].stdout and "medix" in runs["list"].stdout
    assert runs["show"].returncode == 0 and "MEDREWARD_JUDGE_BASE_URL" in runs["show"].stdout
    assert judge_server.requests == 0


def test_medreward_score_spec_healthbench_against_a_loopback_judge(judge_server, tmp_path):
    rows = _rollouts(tmp_path)
    (tmp_path / "roll.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = ("score", "roll.jsonl", "--spec", "healthbench", "-q")
    first = run_all({"run": (*base, "--backend-url", judge_server.url, "--cache", "c.sqlite",
                             "-o", "out.jsonl", "--stats-json", "first.json")}, tmp_path)["run"]  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert judge_server.requests == len(rows) and set(judge_server.models) == {"medreward-judge"}
    again = run_all({"cached": (*base, "--backend-url", judge_server.url, "--cache", "c.sqlite", "--stats-json", "again.json"),
                     "env": (*base, "--no-cache", "--stats-json", "env.json")},
                    tmp_path, env={"MEDREWARD_JUDGE_BASE_URL": judge_server.url})  # fmt: skip
    assert all(r.returncode == 0 for r in again.values()), [r.stderr for r in again.values()]
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["reward"] for r in out] == pytest.approx([reward for *_, reward in ROLLOUTS])
    stats = {name: json.loads((tmp_path / f"{name}.json").read_text())["backends"]["judge"] for name in ("first", "again", "env")}
    assert (stats["first"]["calls"], stats["first"]["cache_hits"]) == (7, 0)
    assert (stats["again"]["calls"], stats["again"]["cache_hits"]) == (0, 7)  # the second run is served by the cache
    assert (stats["env"]["calls"], stats["env"]["cache_hits"]) == (7, 0)  # the endpoint from the environment
    assert judge_server.requests == 2 * len(rows)


def test_trl_routes_healthbench_rows_to_the_preset(judge_server, tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from medreward.integrations.trl import reward_func_by_task

    monkeypatch.setenv("MEDREWARD_JUDGE_BASE_URL", judge_server.url)
    monkeypatch.setenv("MEDREWARD_CACHE", str(tmp_path / "trl.sqlite"))
    rows = _rollouts(tmp_path)[:3]
    f = reward_func_by_task(["healthbench", "mcq"])
    rewards = f(
        prompts=[r["prompt"] for r in rows] + ["Which?"],
        completions=[r["completion"] for r in rows] + ["<think>.</think><answer>B</answer>"],
        task=[r["task"] for r in rows] + ["mcq"],
        reference=[json.dumps(r["reference"]) for r in rows] + ["B"],
    )
    assert rewards[:3] == pytest.approx([1.0, 0.0, 10 / 15]) and rewards[3] == 1.0
    assert judge_server.requests == 3
    assert not any(math.isnan(x) for x in rewards)
