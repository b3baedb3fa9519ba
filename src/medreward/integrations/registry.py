"""The data-source registry: which spec a trainer-side name (verl's ``data_source``, a TRL
``task`` value, an OpenRLHF label's ``"task"``, a spec name given to any adapter) scores with.

Every preset is registered under its own name, plus :data:`DEFAULT_ALIASES`. The registry is
process-wide (one :class:`DataSourceRegistry`), so a reward module that registers names at
import time makes them visible to every adapter in that process. It is imported with
absolute imports by the adapters: an adapter that a trainer loads *by file path* shares it.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from medreward.compose.spec import Spec, load_spec
from medreward.errors import MedrewardError
from medreward.integrations.references import to_builtin

__all__ = [
    "DEFAULT_ALIASES",
    "ENV_SPEC",
    "DataSourceRegistry",
    "SpecLike",
    "UnknownDataSourceError",
    "data_sources",
    "load_spec_like",
    "preset_names",
    "register_data_source",
    "registry_version",
    "resolve_data_source",
    "resolve_spec",
    "spec_backend_names",
    "spec_component_names",
    "task_specs",
    "unregister_data_source",
]

SpecLike = str | Path | Spec | Mapping[str, Any]

#: Environment variable naming the spec (preset, data-source alias or TOML path) of the
#: adapters that have no per-sample task (OpenRLHF, reward-kit) when no ``spec`` is given.
ENV_SPEC = "MEDREWARD_SPEC"

#: Aliases shipped by default (dataset names users commonly put in ``data_source``).
DEFAULT_ALIASES: dict[str, str] = {
    "medqa": "mcq",
    "medmcqa": "mcq",
    "medcalc_bench": "calculator",
    "icd10cm": "icd_coding",
}


class UnknownDataSourceError(MedrewardError, ValueError):
    """A trainer named a ``data_source`` / spec that no preset or registered alias matches.

    ``known`` lists the names that would have worked.
    """

    def __init__(self, name: Any, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(
            f"unknown data_source {name!r}; known: {', '.join(self.known)}. "
            "Register another with medreward.integrations.register_data_source(name, spec)"
        )


def preset_names() -> list[str]:
    """The names of the shipped presets."""
    folder = resources.files("medreward.compose") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


class DataSourceRegistry:
    """Names → specs, thread-safe; filled with the presets and default aliases on first use.

    ``version`` grows with every change, so caches derived from the registry (verl's result
    keys) know when to recompute.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._names: dict[str, SpecLike] = {}
        self.version = 0

    def _filled(self) -> dict[str, SpecLike]:
        # called with the lock held
        if not self._names:
            for name in preset_names():
                self._names[name] = name
            for alias, target in DEFAULT_ALIASES.items():
                self._names.setdefault(alias, target)
        return self._names

    def register(self, name: str, spec: SpecLike, *, replace: bool = False) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a data source name must be a non-empty string, got {name!r}")
        if not isinstance(spec, (str, Path, Spec, Mapping)):
            raise TypeError(f"spec must be a preset name, a path, a Spec or a dict, got {type(spec).__name__}")
        with self._lock:
            names = self._filled()
            if name in names and not replace and names[name] != spec:
                raise ValueError(f"data source {name!r} is already registered; pass replace=True to change it")
            names[name] = spec
            self.version += 1

    def unregister(self, name: str) -> None:
        with self._lock:
            if self._filled().pop(name, None) is not None:
                self.version += 1

    def items(self) -> dict[str, SpecLike]:
        with self._lock:
            return dict(sorted(self._filled().items()))

    def resolve(self, name: Any) -> SpecLike:
        name = to_builtin(name)
        with self._lock:
            names = self._filled()
            if isinstance(name, str):
                if name in names:
                    return names[name]
                folded = {k.casefold(): k for k in names}
                key = folded.get(name.strip().casefold())
                if key is not None:
                    return names[key]
            raise UnknownDataSourceError(name, sorted(names))

    def after_fork(self) -> None:
        """A forked child may inherit the lock held by another thread: give it a fresh one."""
        self._lock = threading.RLock()


_REGISTRY = DataSourceRegistry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REGISTRY.after_fork)


def register_data_source(name: str, spec: SpecLike, *, replace: bool = False) -> None:
    """Make ``name`` (a verl ``data_source``, a TRL ``task`` value, or any spec name the adapters
    accept) score with ``spec``.

    ``spec`` is a preset name, a TOML path, a :class:`~medreward.compose.Spec` or a dict.
    Register at import time of your reward module, so that every worker process sees it.

    >>> register_data_source("my_tox", "toxicology")
    >>> resolve_data_source("my_tox")
    'toxicology'
    >>> unregister_data_source("my_tox")
    """
    _REGISTRY.register(name, spec, replace=replace)


def unregister_data_source(name: str) -> None:
    """Forget ``name`` (a no-op for a name that is not registered)."""
    _REGISTRY.unregister(name)


def data_sources() -> dict[str, SpecLike]:
    """The registered data sources: every preset under its own name, the default aliases, yours."""
    return _REGISTRY.items()


def registry_version() -> int:
    """A number that changes whenever a data source is registered or removed."""
    return _REGISTRY.version


def resolve_data_source(name: Any) -> SpecLike:
    """The spec registered for ``name`` (exact match first, then case-insensitive).

    Raises :class:`UnknownDataSourceError` (a ``ValueError``) that lists the known names.
    """
    return _REGISTRY.resolve(name)


def task_specs(tasks: Mapping[str, SpecLike] | Sequence[str] | None) -> dict[str, SpecLike] | None:
    """The ``tasks=`` option of the multi-task adapters as ``{task: spec}``.

    A mapping is taken as is; a list of names is resolved as registered data sources (raising
    :class:`UnknownDataSourceError` for an unknown one); ``None`` stays ``None`` (every
    registered name is accepted, resolved when first seen).
    """
    if tasks is None:
        return None
    if isinstance(tasks, str):
        raise TypeError("tasks must be a mapping {task: spec} or a list of task names, not one string")
    if isinstance(tasks, Mapping):
        return dict(tasks)
    return {str(t): resolve_data_source(t) for t in tasks}


def resolve_spec(spec: SpecLike | None, *, default: SpecLike | None = None) -> SpecLike:
    """The spec an adapter without per-sample tasks should use.

    Order: ``spec`` → ``$MEDREWARD_SPEC`` → ``default``. A string is a registered data
    source / preset name, else a TOML path; anything else is used as is.
    """
    chosen: SpecLike | None = spec
    if chosen is None or chosen == "":
        chosen = os.environ.get(ENV_SPEC) or default
    if chosen is None:
        raise MedrewardError(
            f"no medreward spec chosen: pass spec=..., set ${ENV_SPEC}, or set the module's DEFAULT_SPEC "
            f"(presets: {', '.join(preset_names())})"
        )
    if isinstance(chosen, str):
        try:
            return resolve_data_source(chosen)
        except UnknownDataSourceError:
            if chosen.endswith(".toml") or Path(chosen).exists():
                return chosen
            raise
    return chosen


def load_spec_like(spec: SpecLike) -> Spec:
    """A :class:`Spec` from a registered name, a preset, a path, a dict or a Spec."""
    if isinstance(spec, str):
        try:
            spec = resolve_data_source(spec)
        except UnknownDataSourceError:
            pass  # a path, or an unknown name that load_spec reports with the preset list
    return load_spec(dict(spec) if isinstance(spec, Mapping) else spec)  # type: ignore[arg-type]


def spec_component_names(spec: SpecLike) -> tuple[str, ...]:
    """Component names of a spec without building its components (no data loads).

    A spec that cannot even be read raises :class:`~medreward.errors.SpecError` via
    :func:`~medreward.compose.load_spec`.
    """
    if isinstance(spec, Spec):
        return spec.component_names
    data = _raw_spec(spec)
    components = data.get("components") if isinstance(data, Mapping) else None
    if isinstance(components, list) and all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in components):
        return tuple(c["name"] for c in components)
    return load_spec(spec if not isinstance(spec, Mapping) else dict(spec)).component_names  # type: ignore[arg-type]


def spec_backend_names(spec: SpecLike) -> tuple[str, ...]:
    """Names of a spec's model backends (``()`` for a rule-based spec, read without building it);
    a spec with backends, declared or implied by a component's ``params.model``, is loaded."""
    if isinstance(spec, Spec):
        return tuple(spec.backends)
    data = _raw_spec(spec)
    components = data.get("components") if isinstance(data, Mapping) else None
    if (
        isinstance(data, Mapping)
        and not data.get("backends")
        and isinstance(components, list)
        and not any(isinstance(c, Mapping) and isinstance(c.get("params"), Mapping) and "model" in c["params"] for c in components)
    ):
        return ()
    return tuple(load_spec(spec if not isinstance(spec, Mapping) else dict(spec)).backends)  # type: ignore[arg-type]


def _raw_spec(spec: SpecLike) -> Any:
    """The spec's TOML data as written (a mapping, a .toml file or a preset), or None."""
    if isinstance(spec, Mapping):
        return spec
    text = str(spec)
    preset = resources.files("medreward.compose") / "presets" / f"{text}.toml"
    path = Path(text)
    try:
        if path.suffix == ".toml" and path.is_file():
            return tomllib.loads(path.read_text("utf-8"))
        if preset.is_file():
            return tomllib.loads(preset.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    return None
