"""What ``--ray`` refuses before a cluster starts (no Ray needed): the missing extra, specs that
cannot be split into batches, inputs and option combinations it cannot serve."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from medreward.cli.app import app
from medreward.errors import InputError, MedrewardError, SpecError

runner = CliRunner()


@pytest.fixture
def no_ray(monkeypatch):
    """Ray not installed: importing it fails as it does without the extra."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)


def rollouts(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"completion": "<answer>opioids</answer>", "reference": {"substances": ["opioids"]}}) + "\n")
    return path


def test_without_the_extra_the_error_names_the_install_command(no_ray, tmp_path):
    from medreward.distributed import score_dataset
    from medreward.distributed.ray_scoring import import_ray

    with pytest.raises(MedrewardError, match=r"pip install 'medreward\[ray\]'"):
        import_ray()
    with pytest.raises(MedrewardError, match=r"pip install 'medreward\[ray\]'"):
        score_dataset(rollouts(tmp_path), "toxicology", tmp_path / "out.jsonl")


def test_cli_without_the_extra_is_a_message_not_a_traceback(no_ray, tmp_path):
    result = runner.invoke(app, ["score", str(rollouts(tmp_path)), "-s", "toxicology", "--ray", "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert "pip install 'medreward[ray]'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "spec, says",
    [
        ({"name": "g", "aggregate": "normalize_then_sum", "components": [
            {"name": "f", "kind": "format.tags"}, {"name": "g", "kind": "format.tags"}]},
         "normalize_then_sum"),
        ({"name": "p", "components": [{"name": "pw", "kind": "ray_faults:ComparesItsGroup"}]}, "GRPO group"),
    ],
)  # fmt: skip
def test_specs_that_need_the_whole_input_or_group_are_refused(tmp_path, spec, says):
    from medreward.distributed import score_dataset

    with pytest.raises(SpecError, match=says):
        score_dataset(rollouts(tmp_path), spec)


def test_inputs_it_cannot_split_are_refused(tmp_path):
    from medreward.distributed import score_dataset

    array = tmp_path / "in.json"
    array.write_text(json.dumps([{"completion": "x"}]))
    with pytest.raises(InputError, match="JSON array"):
        score_dataset(array, "toxicology")
    with pytest.raises(InputError, match="does not exist"):
        score_dataset(tmp_path / "missing.jsonl", "toxicology")
    with pytest.raises(InputError, match="output path is the input file"):
        score_dataset(rollouts(tmp_path), "toxicology", tmp_path / "in.jsonl")


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--address", "auto"], "--address needs --ray"),
        (["--ray", "--resume"], "--resume is not available with --ray"),
        (["--ray", "--isolation", "process"], "--isolation process is not available with --ray"),
    ],
)
def test_cli_option_combinations_it_cannot_serve(tmp_path, extra, says):
    result = runner.invoke(app, ["score", str(rollouts(tmp_path)), "-s", "toxicology", "-o", str(tmp_path / "o.jsonl"), *extra])
    assert result.exit_code == 2, result.output
    assert says in result.output
