"""The toxicology case generator: determinism, record shape, frequencies, noise knobs, and the
clinical consistency validator (it must accept every generated case and catch contradictions)."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest

from medreward.io import open_writer
from medreward.tasks import get_task
from medreward.tasks import toxicology as tox
from medreward.tasks.toxicology import (
    CLASS_IDS,
    ToxicologyConfig,
    check_consistency,
    generate_toxicology,
    load_toxidromes,
    observed_findings,
)
from medreward.vocab import load_vocabulary


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return generate_toxicology(1000, seed=11)


def _jsonl_bytes(records: list[dict], path) -> bytes:
    with open_writer(path) as writer:
        for record in records:
            writer.write(record)
    return path.read_bytes()


# -- determinism ------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_jsonl(tmp_path):
    first = _jsonl_bytes(generate_toxicology(300, seed=5), tmp_path / "a.jsonl")
    second = _jsonl_bytes(generate_toxicology(300, seed=5), tmp_path / "b.jsonl")
    other = _jsonl_bytes(generate_toxicology(300, seed=6), tmp_path / "c.jsonl")
    assert first == second
    assert first != other
    assert first.count(b"\n") == 300


def test_case_i_does_not_depend_on_n():
    assert generate_toxicology(40, seed=9)[:15] == generate_toxicology(15, seed=9)


def test_generation_does_not_touch_global_random():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_toxicology(20, seed=1)
    assert random.random() == expected


# -- record shape -----------------------------------------------------------------------------
def test_registered_with_its_preset():
    info = get_task("toxicology")
    assert info.preset == "toxicology"
    assert info.generate(2, 0) == generate_toxicology(2, 0)


def test_record_shape(cases):
    ids = [c["id"] for c in cases]
    assert len(set(ids)) == len(ids)
    for c in cases[:200]:
        assert set(c) == {"id", "prompt", "task", "reference", "case"}
        assert c["task"] == "toxicology"
        system, user = c["prompt"]
        assert (system["role"], user["role"]) == ("system", "user")
        assert "<think>" in system["content"] and "<answer>" in system["content"]
        assert all(cls in system["content"] for cls in CLASS_IDS)
        substances = c["reference"]["substances"]
        assert substances == sorted(set(substances), key=CLASS_IDS.index) and len(substances) <= 3
        # the hidden truth never reaches the prompt
        assert "truth" not in user["content"] and "severity" not in user["content"]
        assert c["case"]["narrative"] in user["content"]
        assert set(c["case"]["truth"]) >= {"profiles", "mimic", "masking", "history"}


def test_prompt_shows_missing_values_as_not_recorded():
    [case] = generate_toxicology(1, seed=4, config=ToxicologyConfig(missing_vitals=1.0, labs=0.0, ecg=0.0))
    vitals = case["case"]["vitals"]
    assert all(vitals[k] is None for k in vitals if k != "gcs") and isinstance(vitals["gcs"], int)
    user = case["prompt"][1]["content"]
    assert "HR not recorded" in user and "BP not recorded" in user and f"GCS {vitals['gcs']}" in user
    assert "ECG: not yet obtained" in user and "Laboratory: results pending" in user


def test_every_agent_name_maps_to_its_class_in_the_vocabulary():
    vocab = load_vocabulary("toxicology")
    for profile in load_toxidromes().profiles.values():
        for agent in profile.agents:
            assert vocab.normalize(agent.name) == (profile.cls,), (profile.id, agent.name)


def test_table_names_its_sources():
    sources = load_toxidromes().sources
    text = " ".join(s["citation"] for s in sources)
    for needle in ("Goldfrank", "Tintinalli", "Holstege", "Toxidromes"):
        assert needle in text


# -- frequencies ------------------------------------------------------------------------------
def test_class_count_and_class_frequencies(cases):
    counts = Counter(len(c["reference"]["substances"]) for c in cases)
    n = len(cases)
    assert 0.05 <= counts[0] / n <= 0.16  # "no intoxicant" cases (10% chosen)
    assert 0.34 <= counts[1] / n <= 0.50
    assert (counts[2] + counts[3]) / n >= 0.38  # poly-substance is common
    classes = Counter(s for c in cases for s in c["reference"]["substances"])
    assert set(classes) == set(CLASS_IDS)  # every class occurs
    assert classes.most_common(1)[0][0] == "ethanol"
    assert classes["opioids"] > classes["toxic_alcohols"] and classes["benzodiazepines"] > classes["salicylates"]
    multi = [c for c in cases if len(c["reference"]["substances"]) >= 2]
    with_ethanol = sum("ethanol" in c["reference"]["substances"] for c in multi) / len(multi)
    assert with_ethanol >= 0.3  # co-ingestion with ethanol is boosted
    mimics = Counter(c["case"]["truth"]["mimic"] for c in cases if not c["reference"]["substances"])
    assert len(mimics) >= 4 and None not in mimics


# -- consistency --------------------------------------------------------------------------
def test_every_generated_case_is_consistent(cases):
    bad = {c["id"]: check_consistency(c) for c in cases if check_consistency(c)}
    assert bad == {}


def test_generator_redraws_a_case_that_fails_the_check(monkeypatch):
    calls = []

    def fail_first(record):
        calls.append(record["id"])
        return ["forced failure"] if len(calls) == 1 else check_consistency(record)

    monkeypatch.setattr(tox, "check_consistency", fail_first)
    [redrawn] = tox.generate_toxicology(1, seed=21)
    monkeypatch.undo()
    [normal] = tox.generate_toxicology(1, seed=21)
    assert len(calls) >= 2
    assert redrawn != normal and check_consistency(redrawn) == []


def _single(cases, cls, profile=None):
    for c in cases:
        profiles = c["case"]["truth"]["profiles"]
        if c["reference"]["substances"] == [cls] and (profile is None or profiles[0]["profile"] == profile):
            return copy.deepcopy(c)
    raise AssertionError(f"no single {cls} case")


def test_lone_opioid_with_mydriasis_and_tachycardia_is_rejected(cases):
    case = _single(cases, "opioids", "opioid")
    assert check_consistency(case) == []
    case["case"]["exam"]["pupils"] = "widely dilated"
    case["case"]["vitals"]["hr"] = 138
    problems = " | ".join(check_consistency(case))
    assert "pupils 'widely dilated'" in problems and "hr 138 is high" in problems


def test_masking_co_ingestant_explains_the_same_findings(cases):
    case = _single(cases, "opioids", "opioid")
    case["case"]["exam"]["pupils"] = "widely dilated"
    case["case"]["vitals"]["hr"] = 138
    case["case"]["ecg"] = None
    stimulant = {"class": "stimulants", "profile": "stimulant", "agent": "cocaine", "severity": 1.0}
    case["case"]["truth"]["profiles"].append(stimulant)
    case["reference"]["substances"] = ["opioids", "stimulants"]
    assert [p for p in check_consistency(case) if "history" not in p] == []


def test_lone_profile_must_show_a_hallmark(cases):
    case = _single(cases, "opioids", "opioid")
    case["case"]["exam"]["pupils"] = "normal"
    case["case"]["vitals"]["rr"] = 16
    assert any("shows none of its hallmarks" in p for p in check_consistency(case))


def test_unexplained_sign_and_impossible_report_are_rejected(cases):
    case = _single(cases, "benzodiazepines")
    case["case"]["exam"]["signs"] = ["tinnitus"]
    case["case"]["vitals"]["gcs"] = 6
    problems = " | ".join(check_consistency(case))
    assert "sign 'tinnitus' is not produced" in problems
    assert "needs a patient who can report" in problems


def test_reference_that_differs_from_the_truth_is_rejected(cases):
    case = _single(cases, "ethanol")
    case["reference"]["substances"] = ["ethanol", "opioids"]
    assert any("differs from the profiles" in p for p in check_consistency(case))
    case["reference"]["substances"] = ["unicorns"]
    assert any("unknown substance ids" in p for p in check_consistency(case))


def test_history_roles_must_agree_with_the_reference():
    config = ToxicologyConfig(distractor_meds=1.0, evidence=1.0, misleading_history=0.0)
    case = next(c for c in generate_toxicology(30, seed=2, config=config) if c["reference"]["substances"])
    roles = case["case"]["truth"]["history"]
    evidence = next(i for i, r in enumerate(roles) if r["role"] == "evidence")
    distractor = next(i for i, r in enumerate(roles) if r["role"] == "distractor")
    flipped = copy.deepcopy(case)
    flipped["case"]["truth"]["history"][evidence]["role"] = "distractor"
    flipped["case"]["truth"]["history"][distractor]["role"] = "evidence"
    problems = " | ".join(check_consistency(flipped))
    assert "was in fact taken" in problems and "not in the reference" in problems


# -- noise knobs and combination rules ---------------------------------------------------------
def test_noise_knobs():
    always = ToxicologyConfig(misleading_history=1.0, distractor_meds=1.0)
    for case in generate_toxicology(60, seed=3, config=always):
        roles = Counter(r["role"] for r in case["case"]["truth"]["history"])
        assert roles["misleading"] == 1 and roles["distractor"] >= 1
    quiet = ToxicologyConfig(misleading_history=0.0, distractor_meds=0.0, evidence=0.0)
    for case in generate_toxicology(60, seed=3, config=quiet):
        assert {r["role"] for r in case["case"]["truth"]["history"]} <= {"denial"}
    with pytest.raises(ValueError, match="masking"):
        ToxicologyConfig(masking=1.5)
    with pytest.raises(ValueError, match="count_weights"):
        ToxicologyConfig(count_weights=(1.0, 0.0))  # type: ignore[arg-type]


def test_masking_pairs_cancel_opposing_effects():
    pairs = {tuple(p) for p in load_toxidromes().masking_pairs}
    masked = generate_toxicology(300, seed=8, config=ToxicologyConfig(masking=1.0, count_weights=(0, 0, 1, 0)))
    assert all(tuple(p["profile"] for p in c["case"]["truth"]["profiles"]) in pairs for c in masked)
    speedballs = [c for c in masked if [p["profile"] for p in c["case"]["truth"]["profiles"]] == ["opioid", "stimulant"]]
    lone_opioids = [c for c in generate_toxicology(300, seed=8, config=ToxicologyConfig(count_weights=(0, 1, 0, 0)))
                    if c["case"]["truth"]["profiles"][0]["profile"] == "opioid"]  # fmt: skip
    assert len(speedballs) >= 15 and len(lone_opioids) >= 15

    def pinpoint(group):
        return sum(c["case"]["exam"]["pupils"] == "pinpoint" for c in group) / len(group)

    # the stimulant's mydriasis masks the opioid's miosis
    assert pinpoint(lone_opioids) >= 0.5 and pinpoint(speedballs) <= 0.1
    assert all("pupils" in c["case"]["truth"]["masked_axes"] for c in speedballs)


def test_ethanol_blunts_the_toxic_alcohol_anion_gap():
    masked = generate_toxicology(300, seed=12, config=ToxicologyConfig(masking=1.0, count_weights=(0, 0, 1, 0), labs=1.0))
    pairs = ({"ethanol", "methanol"}, {"ethanol", "ethylene_glycol"})
    blocked = [c["case"]["labs"]["anion_gap"] for c in masked
               if {p["profile"] for p in c["case"]["truth"]["profiles"]} in pairs]
    singles = generate_toxicology(800, seed=12, config=ToxicologyConfig(count_weights=(0, 1, 0, 0), labs=1.0))
    alone = [c["case"]["labs"]["anion_gap"] for c in singles
             if c["case"]["truth"]["profiles"][0]["profile"] in ("methanol", "ethylene_glycol")]  # fmt: skip
    assert len(blocked) >= 20 and len(alone) >= 10
    # without ethanol the gap is high (> 20); with it, mostly below the abnormal threshold of 16
    assert sum(alone) / len(alone) > 20
    assert sum(blocked) / len(blocked) < 16


def test_observed_findings_reads_only_public_fields(cases):
    case = copy.deepcopy(cases[0]["case"])
    before = observed_findings(case)
    case["truth"] = {"profiles": [{"profile": "opioid"}], "mimic": "sepsis"}
    assert observed_findings(case) == before


def test_toxidromes_file_is_valid_toml_with_all_classes():
    import tomllib
    from importlib import resources

    data = tomllib.loads(resources.files("medreward.tasks").joinpath("data", "toxidromes.toml").read_text("utf-8"))
    assert {p["class"] for p in data["profile"]} == set(CLASS_IDS)
    assert abs(sum(data["frequencies"]["count_weights"]) - 1.0) < 1e-9
    json.dumps(data)  # plain data


def test_statements_need_a_patient_who_can_make_them():
    config = ToxicologyConfig(evidence=1.0, misleading_history=1.0)
    generated = generate_toxicology(150, seed=17, config=config)
    statements = [c for c in generated if any(item["source"] == "patient" for item in c["case"]["history"])]
    assert statements and all(c["case"]["vitals"]["gcs"] >= 13 for c in statements)
    case = copy.deepcopy(statements[0])
    case["case"]["vitals"]["gcs"] = 7
    assert any("a statement by a patient with GCS 7" in p for p in check_consistency(case))
