"""Specs declare model backends in [backends.NAME] tables: validation, round-trip, diff."""

from __future__ import annotations

import pytest

from medreward.compose.spec import Spec, load_spec
from medreward.errors import SpecError

TOML = """
name = "judged"

[backends.judge]
kind = "openai"
base_url = "http://127.0.0.1:8080/v1"
model = "my-judge"
api_key_env = "OPENAI_API_KEY"
max_concurrency = 8
requests_per_minute = 600

[[components]]
name = "yes"
kind = "model_backed:YesJudge"
params = { backend = "judge" }
"""


def test_backends_table_loads_and_round_trips_through_toml():
    spec = Spec.from_toml(TOML)
    judge = spec.backends["judge"]
    assert (judge.kind, judge.model, judge.max_concurrency, judge.requests_per_minute) == ("openai", "my-judge", 8, 600)
    again = Spec.from_toml(spec.to_toml())
    assert again == spec
    assert again.diff(spec) == []
    assert "[backends.judge]" in spec.to_toml()


def test_spec_without_backends_writes_no_backends_table():
    spec = load_spec("toxicology")
    assert spec.backends == {}
    assert "backends" not in spec.to_dict()
    assert "backends" not in spec.to_toml()


def test_diff_names_backend_changes():
    spec = Spec.from_toml(TOML)
    data = spec.to_dict()
    data["backends"]["judge"]["model"] = "other"
    data["backends"]["spare"] = {"kind": "openai", "model": "x"}
    other = Spec.from_dict(data)
    assert spec.diff(other) == [
        "backend 'spare' added",
        "backends.judge.model: 'my-judge' -> 'other'",
    ]
    assert other.diff(spec) == ["backend 'spare' removed", "backends.judge.model: 'other' -> 'my-judge'"]


def test_component_naming_an_undeclared_backend_is_a_spec_error():
    text = TOML.replace('params = { backend = "judge" }', 'params = { backend = "grader" }')
    with pytest.raises(SpecError) as info:
        Spec.from_toml(text, source="judged.toml")
    message = str(info.value)
    assert message.startswith("judged.toml: components.0: ")
    assert "'yes'" in message and "'grader'" in message and "[backends.grader]" in message
    assert "declared: judge" in message


def test_component_with_backend_and_no_backends_at_all():
    with pytest.raises(SpecError, match=r"spec: components.0: component 'yes' uses backend 'judge'.*declared: none"):
        Spec.from_dict({"name": "x", "components": [{"name": "yes", "kind": "model_backed:YesJudge"}]})


def test_api_key_pasted_into_api_key_env_is_rejected_without_echoing_it():
    secret = "sk-proj-abc123DEF456ghi789"
    with pytest.raises(SpecError) as info:
        Spec.from_toml(TOML.replace('"OPENAI_API_KEY"', f'"{secret}"'))
    message = str(info.value)
    assert "backends.judge.api_key_env" in message
    assert secret not in message and "abc123" not in message


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [("timeout_s", "-1", "backends.judge.timeout_s"), ("max_concurrency", "0", "backends.judge.max_concurrency"),
     ("wieght", "1", "backends.judge.wieght: unknown parameter")],
)  # fmt: skip
def test_bad_backend_fields_are_named(field, value, where):
    text = TOML.replace("max_concurrency = 8", f"{field} = {value}")
    with pytest.raises(SpecError, match=where.replace(".", r"\.")):
        Spec.from_toml(text)


@pytest.mark.parametrize("name", ["1judge", "judge one", ""])
def test_backend_names_must_be_identifiers(name):
    data = Spec.from_toml(TOML).to_dict()
    data["backends"] = {name: data["backends"]["judge"]}
    data["components"][0]["params"]["backend"] = name
    with pytest.raises(SpecError, match="backend name"):
        Spec.from_dict(data)


def test_backend_names_sharing_an_environment_variable_are_rejected():
    data = Spec.from_toml(TOML).to_dict()
    data["backends"]["judge-a"] = data["backends"]["judge_a"] = data["backends"]["judge"]
    with pytest.raises(SpecError, match="MEDREWARD_JUDGE_A_BASE_URL"):
        Spec.from_dict(data)
