"""Composite reward specs: TOML files (or shipped presets) that name components, weights,
gates and the aggregation.

A spec is data: it validates on load (every message names the bad field), round-trips
through TOML, and two specs can be compared with :meth:`Spec.diff`.

.. code-block:: toml

    name = "toxicology"
    aggregate = "weighted_sum"      # or "normalize_then_sum" (GDPO, per GRPO group)
    floor = 0.0                     # the reward when a gate fails

    [[components]]
    name = "format"
    kind = "format.tags"
    weight = 0.1
    gate = false                    # true: reward = floor unless value >= gate_min

    [[components]]
    name = "substances"
    kind = "multilabel"
    weight = 0.9
    params = { vocabulary = "toxicology", field = "substances" }
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import SpecError
from ..rewards.base import RewardComponent, component_class, format_validation_error

__all__ = ["ComponentSpec", "Spec", "list_presets", "load_spec", "preset_path"]

Aggregate = Literal["weighted_sum", "normalize_then_sum"]


class ComponentSpec(BaseModel):
    """One component of a spec: which kind, its weight, whether it gates, its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Key of this component in `components` and `info`.")
    kind: str = Field(min_length=1, description="Registered component kind, e.g. 'multilabel'.")
    weight: float = Field(default=1.0, allow_inf_nan=False)
    gate: bool = Field(default=False, description="If true, reward = spec.floor unless value >= gate_min.")
    gate_min: float = Field(default=1.0, allow_inf_nan=False)
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> RewardComponent:
        return component_class(self.kind)(name=self.name, **self.params)


class Spec(BaseModel):
    """A composite reward: components, weights, gates and the aggregation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    task: str | None = None
    aggregate: Aggregate = "weighted_sum"
    floor: float = Field(default=0.0, allow_inf_nan=False)
    normalize_eps: float = Field(default=1e-4, gt=0, description="eps of the GDPO z-scores.")
    components: tuple[ComponentSpec, ...] = Field(min_length=1)

    @field_validator("components")
    @classmethod
    def _unique_names(cls, components: tuple[ComponentSpec, ...]) -> tuple[ComponentSpec, ...]:
        seen: set[str] = set()
        for c in components:
            if c.name in seen:
                raise ValueError(f"component name {c.name!r} is used twice")
            seen.add(c.name)
        return components

    @model_validator(mode="after")
    def _some_weight(self) -> Spec:
        if all(c.weight == 0 for c in self.components):
            raise ValueError("every component has weight 0: the reward would always be 0")
        return self

    # -- building ----------------------------------------------------------------------------
    def build(self) -> list[RewardComponent]:
        """Instantiate the components (validating their parameters)."""
        built = []
        for i, c in enumerate(self.components):
            try:
                built.append(c.build())
            except SpecError as exc:
                raise SpecError(f"spec {self.name!r}: components[{i}] ({c.name}): {exc}") from None
        return built

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    # -- data round-trip ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "spec") -> Spec:
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(f"{source}: {format_validation_error(exc, '')}") from None
        spec.build()  # parameter errors surface at load time, naming the component
        return spec

    @classmethod
    def from_toml(cls, text: str, *, source: str = "spec") -> Spec:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{source}: invalid TOML: {exc}") from None
        return cls.from_dict(data, source=source)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def diff(self, other: Spec) -> list[str]:
        """Human-readable differences between two specs (empty when they are the same reward)."""
        out: list[str] = []
        for key in ("name", "task", "aggregate", "floor", "normalize_eps"):
            a, b = getattr(self, key), getattr(other, key)
            if a != b:
                out.append(f"{key}: {a!r} -> {b!r}")
        mine = {c.name: c for c in self.components}
        theirs = {c.name: c for c in other.components}
        for name in mine.keys() - theirs.keys():
            out.append(f"component {name!r} removed")
        for name in theirs.keys() - mine.keys():
            out.append(f"component {name!r} added")
        for name in mine.keys() & theirs.keys():
            a, b = mine[name].model_dump(), theirs[name].model_dump()
            for key in a:
                if a[key] != b[key]:
                    out.append(f"{name}.{key}: {a[key]!r} -> {b[key]!r}")
        return sorted(out)


def _presets_dir():
    return resources.files("medreward.compose") / "presets"


def list_presets() -> dict[str, Spec]:
    """The specs shipped in the package, by name."""
    out = {}
    for entry in sorted(_presets_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            out[entry.name[:-5]] = Spec.from_toml(entry.read_text("utf-8"), source=f"preset {entry.name}")
    return out


def preset_path(name: str):
    return _presets_dir() / f"{name}.toml"


def load_spec(spec: str | Path | Spec | dict[str, Any]) -> Spec:
    """Load a spec from a preset name, a TOML path, a dict, or return a :class:`Spec` as is.

    >>> load_spec("toxicology").component_names
    ('format', 'substances')
    """
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return Spec.from_dict(spec)
    text = str(spec)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise SpecError(f"spec file {text!r} does not exist")
        if path.is_dir():
            raise SpecError(f"spec path {text!r} is a directory, not a TOML file")
        try:
            content = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read spec file {text!r}: {exc}") from None
        return Spec.from_toml(content, source=path.name)
    preset = preset_path(text)
    if preset.is_file():
        return Spec.from_toml(preset.read_text("utf-8"), source=f"preset {text}")
    names = ", ".join(sorted(p.name[:-5] for p in _presets_dir().iterdir() if p.name.endswith(".toml")))
    raise SpecError(f"unknown spec {text!r}: not a file, and not a preset (presets: {names})")
