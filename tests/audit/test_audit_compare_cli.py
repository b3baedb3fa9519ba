"""``medreward compare`` through the real entry point (``python -m medreward.cli.app``): the JSON
object equals what the API and scipy compute on the same rewards, records without a reward under
either spec are left out and counted, --limit and --group-key work, the table prints, and every
user mistake exits 2 with a message and no traceback. The invocations run concurrently."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from cli_runner import ENV, cli_command, run_all
from scipy.stats import kendalltau, spearmanr

from medreward import Scorer
from medreward.audit.slices import group_keys
from medreward.audit.starc import starc_distance

ANSWERS = ["opioids", "opioids, ethanol", "benzodiazepines", "none", "cocaine", "ethanol"]
TRUTHS = [["opioids"], ["ethanol"], [], ["opioids", "ethanol"], ["stimulants"], ["benzodiazepines"]]
SPEC_B = (
    'name = "recall_only"\n[[components]]\nname = "substances"\nkind = "multilabel"\n'
    'params = { vocabulary = "toxicology", field = "substances", metric = "recall_weighted" }\n'
)


def _rollouts() -> list[dict]:
    rows = []
    for p, truth in enumerate(TRUTHS):
        for i, answer in enumerate(ANSWERS):
            completion = f"<think>findings</think><answer>{answer}</answer>" if i % 4 else answer  # some lack tags
            rows.append({"id": f"p{p}r{i}", "prompt": f"case {p}", "completion": completion,
                         "reference": {"substances": truth}, "case": {"ward": p // 2}})  # fmt: skip
            if p < 3:
                rows[-1]["site"] = {"name": "north"}
    rows.insert(7, {"id": "no-reference", "prompt": "case 1", "completion": "<answer>opioids</answer>", "reference": {}})
    rows.insert(3, {"id": "no-completion", "prompt": "case 0"})
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compare")
    rows = _rollouts()
    lines = [json.dumps(r) for r in rows]
    lines.insert(10, "{not json")
    (path / "rollouts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (path / "spec_b.toml").write_text(SPEC_B, encoding="utf-8")
    (path / "bad.toml").write_text('name = "x\n', encoding="utf-8")
    (path / "empty.jsonl").write_text("", encoding="utf-8")
    (path / "a_folder").mkdir()
    unscorable = [{"prompt": "q", "completion": "<answer>opioids</answer>", "reference": {}} for _ in range(3)]
    (path / "unscorable.jsonl").write_text("".join(json.dumps(r) + "\n" for r in unscorable), encoding="utf-8")
    return path


ERROR_CASES = {
    "missing file": (("--rollouts", "missing.jsonl", "toxicology", "spec_b.toml"), "input file 'missing.jsonl' does not exist"),
    "folder": (("--rollouts", "a_folder", "toxicology", "spec_b.toml"), "is a directory, not a file"),
    "empty file": (("--rollouts", "empty.jsonl", "toxicology", "spec_b.toml"), "empty.jsonl: no records to compare"),
    "unknown spec a": (("--rollouts", "rollouts.jsonl", "toxicolgy", "spec_b.toml"), "unknown spec 'toxicolgy'"),
    "unknown spec b": (("--rollouts", "rollouts.jsonl", "toxicology", "nope.toml"), "spec file 'nope.toml' does not exist"),
    "bad toml": (("--rollouts", "rollouts.jsonl", "toxicology", "bad.toml"), "bad.toml: invalid TOML"),
    "zero limit": (("--rollouts", "rollouts.jsonl", "toxicology", "spec_b.toml", "--limit", "0"), "--limit must be a positive number"),
    "negative n-boot": (("--rollouts", "rollouts.jsonl", "toxicology", "toxicology", "--n-boot", "-1"), "--n-boot must be 0 or more"),
    "no rollouts option": (("toxicology", "spec_b.toml"), "Missing option '--rollouts'"),
    "group key nobody has": (("--rollouts", "rollouts.jsonl", "toxicology", "spec_b.toml", "--group-key", "case.bed"),
                             "--group-key 'case.bed': no compared record has this field"),
    "one spec": (("--rollouts", "rollouts.jsonl", "toxicology"), "Missing argument 'SPEC_B'"),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess[str]]:
    base = ("compare", "toxicology", "spec_b.toml", "--rollouts", "rollouts.jsonl")
    commands = {name: ("compare", *args) for name, (args, _) in ERROR_CASES.items()}
    commands |= {
        "json": (*base, "--json", "--n-boot", "200"),
        "table": (*base, "--n-boot", "0"),
        "same spec": ("compare", "toxicology", "toxicology", "--rollouts", "rollouts.jsonl", "--json", "--n-boot", "0"),
        "limit": (*base, "--json", "--limit", "14", "--n-boot", "0"),
        "group key": (*base, "--json", "--group-key", "case.ward", "--n-boot", "0"),
        "partial group key": (*base, "--json", "--group-key", "site.name", "--n-boot", "0"),
        "unscorable": ("compare", "toxicology", "spec_b.toml", "--rollouts", "unscorable.jsonl", "--json"),
    }  # fmt: skip
    return run_all(commands, workdir)


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_user_errors_exit_2_with_a_message(runs, name):
    result = runs[name]
    assert result.returncode == 2, result.stdout + result.stderr
    assert ERROR_CASES[name][1] in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _expected(workdir: Path, rows: list[dict], group_field: str | None = None) -> dict:
    """What the command must report, from the API and scipy on the same rewards."""
    a = Scorer("toxicology").score(rows)
    b = Scorer(workdir / "spec_b.toml").score(rows)
    both = [i for i in range(len(rows)) if a[i].reward is not None and b[i].reward is not None]
    ra, rb = [a[i].reward for i in both], [b[i].reward for i in both]
    groups = group_keys([rows[i] for i in both], group_field)
    return {
        "starc": starc_distance(ra, rb, groups).distance,
        "spearman": spearmanr(ra, rb).statistic, "kendall": kendalltau(ra, rb).statistic,
        "n_compared": len(both), "statuses_a": [r.status.value for r in a], "statuses_b": [r.status.value for r in b],
    }  # fmt: skip


def _one_json_object(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_json_equals_the_api_and_scipy(runs, workdir):
    data = _one_json_object(runs["json"])
    rows = _rollouts()  # the malformed line is an error record: it is excluded, never compared
    expected = _expected(workdir, rows)
    assert data["spec_a"] == "toxicology" and data["spec_b"] == "recall_only"
    assert data["starc"] == pytest.approx(expected["starc"], abs=1e-12)
    assert data["spearman"] == pytest.approx(expected["spearman"], abs=1e-12)
    assert data["kendall"] == pytest.approx(expected["kendall"], abs=1e-12)
    assert 0.0 < data["starc"] < 1.0 and data["pearson"] is not None
    # every line is a record: the 38 rows plus the malformed one; 3 have no reward under either spec
    assert data["n_records"] == len(rows) + 1 == 39
    assert data["n_compared"] == expected["n_compared"] == 36 and data["n_excluded"] == 3
    assert data["excluded"] == {"a": {"error": 2, "not_applicable": 1}, "b": {"error": 2, "not_applicable": 1}}
    assert data["starc_detail"]["n_groups"] == 6
    assert data["starc_detail"]["ci_low"] <= data["starc"] <= data["starc_detail"]["ci_high"]
    for name in ("spearman", "kendall", "pearson"):
        stat = data["agreement"][name]
        assert stat["value"] == data[name] and stat["n"] == 36 and stat["ci_low"] <= stat["value"] <= stat["ci_high"]
    assert set(data["mean_reward"]) == {"a", "b"} and set(data["zero_variance_groups"]) == {"a", "b"}
    assert any("3 of 39 record(s) without a reward" in note for note in data["notes"])


def test_a_spec_against_itself(runs):
    data = _one_json_object(runs["same spec"])
    assert data["starc"] == pytest.approx(0.0, abs=1e-12)
    assert data["spearman"] == pytest.approx(1.0) and data["kendall"] == pytest.approx(1.0)
    assert data["starc_detail"]["ci_low"] is None  # --n-boot 0


def test_limit_reads_only_the_first_records(runs, workdir):
    data = _one_json_object(runs["limit"])
    # the first 14 lines: 13 rows (with no-completion and no-reference among them) and the malformed line 11
    rows = _rollouts()[:13]
    assert {"no-completion", "no-reference"} <= {r["id"] for r in rows}
    assert data["n_records"] == 14 and data["n_compared"] == 14 - 3
    assert data["spearman"] == pytest.approx(_expected(workdir, rows)["spearman"], abs=1e-12)


def test_group_key_names_the_groups(runs, workdir):
    data = _one_json_object(runs["group key"])
    expected = _expected(workdir, _rollouts(), "case.ward")
    assert data["starc_detail"]["n_groups"] == 3  # wards 0, 1, 2 (the records without a reward are left out)
    assert data["starc"] == pytest.approx(expected["starc"], abs=1e-12)
    assert data["starc"] != pytest.approx(_one_json_object(runs["json"])["starc"])


def test_records_without_the_group_key_form_one_group_with_a_note(runs, workdir):
    data = _one_json_object(runs["partial group key"])
    # the 18 rows of prompts 0-2 name site "north"; the 18 of prompts 3-5 have no site: one "(missing)" group
    expected = _expected(workdir, _rollouts(), "site.name")
    assert data["starc_detail"]["n_groups"] == 2
    assert data["starc"] == pytest.approx(expected["starc"], abs=1e-12)
    assert any("18 compared record(s) have no field 'site.name'" in note for note in data["notes"])


def test_nothing_comparable_gives_nulls_not_zeros(runs):
    data = _one_json_object(runs["unscorable"])
    assert data["n_records"] == 3 and data["n_compared"] == 0
    assert data["starc"] is None and data["spearman"] is None and data["kendall"] is None
    assert data["excluded"]["a"] == {"not_applicable": 3}
    assert data["mean_reward"] == {"a": None, "b": None}


def test_table(runs, workdir):
    result = runs["table"]
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    data = _one_json_object(runs["json"])
    assert "medreward compare · toxicology vs recall_only" in text
    assert f"STARC distance (0 same, 1 opposite) │ {data['starc']:.4f}" in text
    assert f"Spearman ρ │ {data['spearman']:.4f}" in text and f"Kendall τ-b │ {data['kendall']:.4f}" in text
    assert "records compared │ 36 of 39" in text
    assert "left out under toxicology: 2 error, 1 not_applicable" in text
    assert "Traceback" not in result.stderr


def test_a_named_pipe_is_read_once_and_held(runs, workdir, tmp_path):
    fifo = tmp_path / "stream.jsonl"
    os.mkfifo(fifo)
    text = (workdir / "rollouts.jsonl").read_text(encoding="utf-8")

    def feed() -> None:
        with open(fifo, "w", encoding="utf-8") as handle:
            handle.write(text)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = subprocess.run(
        cli_command("compare", "toxicology", str(workdir / "spec_b.toml"), "--rollouts", str(fifo), "--json", "--n-boot", "0"),
        cwd=workdir, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    writer.join(timeout=10)
    data = _one_json_object(result)
    expected = _one_json_object(runs["json"])
    assert data["n_records"] == expected["n_records"] and data["n_compared"] == expected["n_compared"]
    assert data["starc"] == pytest.approx(expected["starc"], abs=1e-12)
    assert data["kendall"] == pytest.approx(expected["kendall"], abs=1e-12)
