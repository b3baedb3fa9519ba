"""Golden tests of ``readability``: the three grades equal textstat's on the same inputs and hand
computations, band values by hand, offline syllable counts, bad params, bounded time, the CLI."""

from __future__ import annotations

import doctest
import json
import math
import pickle
import sys
import time

import pytest
from cli_runner import run_all

import medreward.rewards.readability as readability_module
from medreward import Spec
from medreward.errors import SpecError
from medreward.records import Rollout, Status
from medreward.rewards.readability import Readability, band_reward, readability_scores

TEXTS = [
    "The cat sat on the mat. The dog ran to the park.",
    "Drink water and rest. Take one pill every day. Call us if the pain gets worse.",
    "The patient presented with acute decompensated heart failure and was started on intravenous "
    "furosemide. Echocardiography demonstrated a reduced ejection fraction. Cardiology recommended "
    "guideline-directed medical therapy including an angiotensin receptor neprilysin inhibitor.",
    "Your blood sugar is high. This can make you tired and thirsty. Take your insulin as your nurse "
    "showed you, and check your sugar before meals.",
]


def score(component: Readability, answer: str):
    return component.score_one(Rollout(completion=f"<answer>{answer}</answer>"))


@pytest.mark.parametrize("text", TEXTS)
def test_scores_equal_textstat_on_the_same_input(text):
    ours = readability_scores(text)  # first: installs the offline CMU dictionary textstat uses
    import textstat

    assert ours["fk_grade"] == pytest.approx(textstat.flesch_kincaid_grade(text), abs=1e-12)
    assert ours["smog"] == pytest.approx(textstat.smog_index(text), abs=1e-12)
    assert ours["dale_chall"] == pytest.approx(textstat.dale_chall_readability_score(text), abs=1e-12)
    assert ours["words"] == textstat.lexicon_count(text) and ours["sentences"] == textstat.sentence_count(text)


def test_hand_computed_grades():
    # 12 one-syllable words in 2 sentences: FK = 0.39*6 + 11.8*1 - 15.59; no polysyllable: SMOG = 3.1291
    s = readability_scores(TEXTS[0])
    assert (s["words"], s["sentences"]) == (12, 2)
    assert s["fk_grade"] == pytest.approx(0.39 * 6 + 11.8 - 15.59)
    assert s["smog"] == pytest.approx(3.1291)
    # 16 words, 3 sentences, 19 syllables ("water" 2, "every" 3): FK = 0.39*16/3 + 11.8*19/16 - 15.59;
    # one word of 3+ syllables ("every"): SMOG = 1.043*sqrt(30*1/3) + 3.1291
    s = readability_scores(TEXTS[1])
    assert (s["words"], s["sentences"]) == (16, 3)
    assert s["fk_grade"] == pytest.approx(0.39 * 16 / 3 + 11.8 * 19 / 16 - 15.59)
    assert s["smog"] == pytest.approx(1.043 * math.sqrt(30 * 1 / 3) + 3.1291)
    # clinical prose reads far above plain language on every metric
    hard, easy = readability_scores(TEXTS[2]), readability_scores(TEXTS[3])
    assert all(hard[m] > easy[m] + 3 for m in ("fk_grade", "smog", "dale_chall"))


@pytest.mark.parametrize(
    "grade, decay, expected",
    [
        (6.0, "linear", 1.0), (8.0, "linear", 1.0), (7.3, "linear", 1.0),
        (9.0, "linear", 0.5), (5.0, "linear", 0.5), (10.0, "linear", 0.0), (30.0, "linear", 0.0),
        (4.5, "linear", 0.25),
        (10.0, "exponential", math.exp(-1)), (3.0, "exponential", math.exp(-1.5)), (7.0, "exponential", 1.0),
    ],
)  # fmt: skip
def test_band_values_by_hand(grade, decay, expected):
    assert band_reward(grade, 6.0, 8.0, 2.0, decay) == pytest.approx(expected)


def test_component_value_and_info():
    component = Readability(target_grade=[6, 8], tolerance=4)
    result = score(component, TEXTS[2])
    grade = readability_scores(TEXTS[2])["fk_grade"]
    assert result.status is Status.OK and result.info["grade"] == pytest.approx(grade)
    assert result.info["distance"] == pytest.approx(grade - 8)
    assert result.value == pytest.approx(max(0.0, 1 - (grade - 8) / 4))
    assert set(result.info) >= {"fk_grade", "smog", "dale_chall", "words", "sentences", "target", "metric"}
    smog = score(Readability(metric="smog", target_grade=[0, 7]), TEXTS[1])
    assert smog.info["grade"] == pytest.approx(1.043 * math.sqrt(10) + 3.1291) and smog.value == 1.0
    dale = score(Readability(metric="dale_chall", target_grade=[0, 4.9], decay="exponential"), TEXTS[2])
    assert dale.value == pytest.approx(math.exp(-(dale.info["dale_chall"] - 4.9) / 2))


def test_empty_missing_and_long_answers():
    component = Readability()
    assert score(component, "  ").value == 0.0 and score(component, " ").info["reason"] == "empty answer (no words)"
    assert score(component, "...").value == 0.0
    missing = component.score_one(Rollout(completion="plain text"))
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"
    started = time.process_time()
    long = score(component, "Take one pill each day with food. " * 30_000)  # 1 MB
    assert time.process_time() - started < 5.0  # cut at max_chars: bounded whatever the length
    assert long.info["truncated"] is True and long.status is Status.OK


def test_syllables_never_reach_the_network(monkeypatch):
    import nltk

    def no_download(*args, **kwargs):
        raise AssertionError("textstat tried to download NLTK data")

    monkeypatch.setattr(nltk, "download", no_download)
    assert readability_scores("Anticoagulation requires individualized monitoring.")["words"] == 4


@pytest.mark.parametrize(
    "params, field",
    [
        ({"target_grade": [8, 6]}, "target_grade"),
        ({"target_grade": [6, float("inf")]}, "target_grade"),
        ({"tolerance": 0}, "tolerance"),
        ({"metric": "gunning_fog"}, "metric"),
        ({"decay": "cliff"}, "decay"),
    ],
)
def test_bad_params_fail_at_load(params, field):
    with pytest.raises(SpecError, match=f"readability.params.{field}"):
        Readability(**params)


def test_missing_library_is_a_spec_error_at_load(monkeypatch):
    monkeypatch.setitem(sys.modules, "textstat", None)
    with pytest.raises(SpecError, match=r"textstat not installed\): pip install 'medreward\[metrics\]'"):
        Spec.from_dict({"name": "t", "components": [{"name": "r", "kind": "readability"}]})


def test_pickles_and_docstrings():
    component = Readability(target_grade=[0, 3], decay="exponential")
    clone = pickle.loads(pickle.dumps(component))
    assert clone.params == component.params and score(clone, TEXTS[1]).value == 1.0
    assert doctest.testmod(readability_module).failed == 0


def test_through_medreward_score(tmp_path):
    rows = [
        {"id": "plain", "completion": f"<answer>{TEXTS[1]}</answer>"},
        {"id": "jargon", "completion": f"<answer>{TEXTS[2]}</answer>"},
        {"id": "empty", "completion": "<answer></answer>"},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "spec.toml").write_text(
        'name = "plain"\n[[components]]\nname = "readability"\nkind = "readability"\n'
        "params = { target_grade = [0, 6], tolerance = 4 }\n",
        encoding="utf-8",
    )
    result = run_all({"score": ("score", "in.jsonl", "--spec", "spec.toml", "-o", "out.jsonl")}, tmp_path)["score"]
    assert result.returncode == 0, result.stderr
    out = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text("utf-8").splitlines())}
    assert out["plain"]["reward"] == 1.0
    jargon = readability_scores(TEXTS[2])["fk_grade"]
    assert out["jargon"]["reward"] == pytest.approx(max(0.0, 1 - (jargon - 6) / 4))
    assert out["empty"]["reward"] == 0.0 and out["empty"]["info"]["readability"]["reason"] == "empty answer (no words)"
