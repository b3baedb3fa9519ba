"""What every trainer adapter shares: spec resolution, ground-truth parsing, a thread-safe
scorer cache and the flat float schema of verl / OpenRLHF.

This module keeps the process-wide state (the data-source registry and the scorer cache).
It is imported with absolute imports by the adapters, so an adapter that a trainer loads
*by file path* (verl ``custom_reward_function.path``, OpenRLHF ``--reward.remote_url x.py``)
shares this state with ``import medreward.integrations.verl``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medreward.compose.spec import Spec, load_spec
from medreward.errors import MedrewardError, RecordError
from medreward.records import BadRecord, ScoredRecord, Status
from medreward.runner import RunStats, Scorer

__all__ = [
    "ENV_SPEC",
    "STATUS_KEYS",
    "SharedScorer",
    "SpecLike",
    "UnknownDataSourceError",
    "coerce_reference",
    "data_sources",
    "flat_scores",
    "get_scorer",
    "primary_field",
    "reference_fields",
    "register_data_source",
    "resolve_data_source",
    "resolve_spec",
    "spec_component_names",
    "to_builtin",
    "unregister_data_source",
]

log = logging.getLogger("medreward.integrations")

SpecLike = str | Path | Spec | Mapping[str, Any]

#: Environment variable naming the spec (preset, data-source alias or TOML path) of the
#: adapters that have no per-sample task (OpenRLHF, reward-kit) when no ``spec`` is given.
ENV_SPEC = "MEDREWARD_SPEC"

#: Flags in the flat float results of verl / OpenRLHF: exactly one is 1.0 per sample.
STATUS_KEYS: tuple[str, ...] = tuple(f"status_{s.value}" for s in Status)

#: Reference fields of the first-wave tasks (DESIGN.md), looked for among dataset columns.
DESIGN_REFERENCE_FIELDS: tuple[str, ...] = ("substances", "answer", "options", "value", "unit", "lower", "upper", "codes")


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


# -- data sources ------------------------------------------------------------------------------
def _preset_names() -> list[str]:
    folder = resources.files("medreward.compose") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


#: Aliases shipped by default (dataset names users commonly put in ``data_source``).
DEFAULT_ALIASES: dict[str, str] = {
    "medqa": "mcq",
    "medmcqa": "mcq",
    "medcalc_bench": "calculator",
    "icd10cm": "icd_coding",
}

_registry_lock = threading.RLock()
_registry: dict[str, SpecLike] = {}
_registry_version = 0


def _ensure_registry() -> None:
    with _registry_lock:
        if not _registry:
            for name in _preset_names():
                _registry[name] = name
            for alias, target in DEFAULT_ALIASES.items():
                _registry.setdefault(alias, target)


def register_data_source(name: str, spec: SpecLike, *, replace: bool = False) -> None:
    """Make ``name`` (a verl ``data_source``, or any spec name the adapters accept) score with ``spec``.

    ``spec`` is a preset name, a TOML path, a :class:`~medreward.compose.Spec` or a dict.
    Register at import time of your reward module, so that every worker process sees it.

    >>> register_data_source("my_tox", "toxicology")
    >>> resolve_data_source("my_tox")
    'toxicology'
    >>> unregister_data_source("my_tox")
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a data source name must be a non-empty string, got {name!r}")
    if not isinstance(spec, (str, Path, Spec, Mapping)):
        raise TypeError(f"spec must be a preset name, a path, a Spec or a dict, got {type(spec).__name__}")
    global _registry_version
    with _registry_lock:
        _ensure_registry()
        if name in _registry and not replace and _registry[name] != spec:
            raise ValueError(f"data source {name!r} is already registered; pass replace=True to change it")
        _registry[name] = spec
        _registry_version += 1


def unregister_data_source(name: str) -> None:
    """Forget ``name`` (a no-op for a name that is not registered)."""
    global _registry_version
    with _registry_lock:
        _ensure_registry()
        if _registry.pop(name, None) is not None:
            _registry_version += 1


def data_sources() -> dict[str, SpecLike]:
    """The registered data sources: every preset under its own name, the default aliases, yours."""
    with _registry_lock:
        _ensure_registry()
        return dict(sorted(_registry.items()))


def resolve_data_source(name: Any) -> SpecLike:
    """The spec registered for ``name`` (exact match first, then case-insensitive).

    Raises :class:`UnknownDataSourceError` (a ``ValueError``) that lists the known names.
    """
    name = to_builtin(name)
    with _registry_lock:
        _ensure_registry()
        if isinstance(name, str):
            if name in _registry:
                return _registry[name]
            folded = {k.casefold(): k for k in _registry}
            key = folded.get(name.strip().casefold())
            if key is not None:
                return _registry[key]
        raise UnknownDataSourceError(name, sorted(_registry))


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
            f"(presets: {', '.join(_preset_names())})"
        )
    if isinstance(chosen, str):
        try:
            return resolve_data_source(chosen)
        except UnknownDataSourceError:
            if chosen.endswith(".toml") or Path(chosen).exists():
                return chosen
            raise
    return chosen


def spec_component_names(spec: SpecLike) -> tuple[str, ...]:
    """Component names of a spec without building its components (no data loads).

    A spec that cannot even be read raises :class:`~medreward.errors.SpecError` via
    :func:`~medreward.compose.load_spec`.
    """
    if isinstance(spec, Spec):
        return spec.component_names
    data: Any = None
    if isinstance(spec, Mapping):
        data = spec
    else:
        text = str(spec)
        preset = resources.files("medreward.compose") / "presets" / f"{text}.toml"
        path = Path(text)
        try:
            if path.suffix == ".toml" and path.is_file():
                data = tomllib.loads(path.read_text("utf-8"))
            elif preset.is_file():
                data = tomllib.loads(preset.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = None
    components = data.get("components") if isinstance(data, Mapping) else None
    if isinstance(components, list) and all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in components):
        return tuple(c["name"] for c in components)
    return load_spec(spec if not isinstance(spec, Mapping) else dict(spec)).component_names  # type: ignore[arg-type]


# -- references ---------------------------------------------------------------------------------
def to_builtin(value: Any) -> Any:
    """Plain Python values from what trainers hand over (numpy arrays and scalars from Parquet rows)."""
    if isinstance(value, (str, bytes, bool, int, float)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str) else k: to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy array / scalar, torch tensor
    if callable(tolist):
        try:
            return to_builtin(tolist())
        except Exception:  # noqa: BLE001 - not array-like after all
            return value
    return value


def reference_fields(spec: Spec) -> tuple[str, ...]:
    """Reference keys the spec's components read: every ``*field`` parameter, in spec order."""
    out: dict[str, None] = {}
    for component in spec.components:
        for key, value in component.params.items():
            if key.endswith("field") and isinstance(value, str) and value:
                out.setdefault(value, None)
    return tuple(out)


def primary_field(spec: Spec) -> str | None:
    """The reference key a plain (non-JSON-object) ground truth fills: the first component's ``field``."""
    for component in spec.components:
        value = component.params.get("field")
        if isinstance(value, str) and value:
            return value
    return None


def coerce_reference(value: Any, spec: Spec) -> dict[str, Any]:
    """A ground truth as a trainer stores it → the task's reference dict.

    * a dict is the reference (numpy values converted);
    * a JSON object text is parsed to the reference;
    * anything else fills the spec's primary field (:func:`primary_field`): a JSON array,
      number or string is parsed first, other text (``"opioids,ethanol"``, ``"C"``) is kept
      as is, and the component parses it like a reference value;
    * ``None`` → ``{}`` (the answer components are then ``not_applicable``).

    Raises :class:`~medreward.errors.RecordError` for a ground truth that cannot be one.

    >>> from medreward import load_spec
    >>> tox = load_spec("toxicology")
    >>> coerce_reference('{"substances": ["opioids"]}', tox)
    {'substances': ['opioids']}
    >>> coerce_reference("opioids,ethanol", tox)
    {'substances': 'opioids,ethanol'}
    >>> coerce_reference('["opioids"]', tox)
    {'substances': ['opioids']}
    """
    value = to_builtin(value)
    if value is None:
        return {}
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ('{', '[', '"') or _numeric(text):
            try:
                parsed = json.loads(text)
            except ValueError:
                if text.startswith("{"):
                    raise RecordError(f"ground truth {text[:80]!r} looks like a JSON object but does not parse") from None
                parsed = text  # e.g. "[A]": plain text after all
            if isinstance(parsed, Mapping):
                return dict(parsed)
            value = parsed
        else:
            value = text
    if isinstance(value, (float, int, str, list)) and not isinstance(value, bool):
        key = primary_field(spec)
        if key is None:
            raise RecordError(
                f"spec {spec.name!r} names no reference field, so a plain ground truth cannot be placed; "
                "give it as a JSON object"
            )
        return {key: value}
    raise RecordError(f"a ground truth must be an object, text, a list or a number, got {type(value).__name__}")


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bad_input(error: str, raw: Any) -> BadRecord:
    """An input the Scorer reports as ``error`` with ``error`` as its message."""
    try:
        shown = raw if isinstance(raw, str) else json.dumps(to_builtin(raw), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        shown = repr(raw)
    return BadRecord(line=None, raw=shown[:1000], error=error)


# -- scoring -----------------------------------------------------------------------------------
@dataclass
class SharedScorer:
    """A :class:`~medreward.runner.Scorer` that several threads may call at once.

    verl scores each sample in a thread pool. Each calling thread scores with its own
    Scorer, built from the same spec, so a sample that runs to its time limit holds up
    only its own thread. One lock guards just the merge of ``total``, which accumulates
    statistics over every call. :meth:`score` also returns the statistics of its own batch,
    for per-step trainer metrics.
    """

    scorer: Scorer
    lock: threading.Lock = field(default_factory=threading.Lock)
    total: RunStats = field(init=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        self.total = RunStats.empty(self.scorer.spec.component_names)
        self._local.scorer = self.scorer  # the thread that built it scores with it

    @property
    def spec(self) -> Spec:
        return self.scorer.spec

    def _thread_scorer(self) -> Scorer:
        mine: Scorer | None = getattr(self._local, "scorer", None)
        if mine is None:  # another thread: its own Scorer from the same spec
            base = self.scorer
            mine = self._local.scorer = Scorer(base.spec, time_limit=base.time_limit, chunk_size=base.chunk_size)
        return mine

    def score(self, items: Sequence[Any]) -> tuple[list[ScoredRecord], RunStats]:
        scorer = self._thread_scorer()
        scorer.stats = RunStats.empty(self.spec.component_names)
        records = scorer.score_chunk(list(items))
        batch = scorer.stats
        with self.lock:
            self.total.merge(batch)
        if len(records) != len(items):  # the Scorer guarantees this; a trainer would silently misalign
            raise RuntimeError(f"scorer returned {len(records)} records for {len(items)} inputs")
        return records, batch


_cache_lock = threading.Lock()
_cache: dict[tuple[str, float | None], SharedScorer] = {}


def _cache_key(spec: SpecLike, time_limit: float | None) -> tuple[str, float | None]:
    if isinstance(spec, Spec):
        ident = "spec:" + json.dumps(spec.to_dict(), sort_keys=True)
    elif isinstance(spec, Mapping):
        ident = "dict:" + json.dumps(to_builtin(spec), sort_keys=True, default=str)
    else:
        ident = "name:" + str(spec)
    return ident, time_limit


def get_scorer(spec: SpecLike, *, time_limit: float | None = 10.0) -> SharedScorer:
    """The process-wide scorer of ``spec`` (built once; thread-safe; rebuilt after a fork)."""
    key = _cache_key(spec, time_limit)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    with _cache_lock:
        hit = _cache.get(key)
        if hit is None:
            loaded = load_spec(dict(spec) if isinstance(spec, Mapping) else spec)
            hit = _cache[key] = SharedScorer(Scorer(loaded, time_limit=time_limit))
        return hit


def _forget_after_fork() -> None:
    # A forked child inherits the cache but not the scorers' worker threads: start afresh.
    global _cache_lock, _registry_lock
    _cache.clear()
    _cache_lock = threading.Lock()
    _registry_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def flat_scores(
    record: ScoredRecord, component_keys: Sequence[str], *, failed_score: float = 0.0
) -> dict[str, float]:
    """The flat, all-float result of verl and OpenRLHF, with the same keys for every record.

    * ``score``: the reward, or ``failed_score`` when the reward is ``None``;
    * ``status_ok`` / ``status_not_applicable`` / ``status_error`` / ``status_timeout``: 1.0 for
      the record's status, 0.0 for the others;
    * one key per component in ``component_keys``: its value, or 0.0 when it has none
      (not applicable, failed, or not part of this record's spec).
    """
    out: dict[str, float] = {"score": float(failed_score if record.reward is None else record.reward)}
    for key in STATUS_KEYS:
        out[key] = 0.0
    out[f"status_{record.status.value}"] = 1.0
    for name in component_keys:
        value = record.components.get(name)
        out[name] = 0.0 if value is None else float(value)
    return out


def check_component_keys(names: Sequence[str]) -> None:
    """Component names must not shadow the fixed keys of :func:`flat_scores`."""
    reserved = {"score", *STATUS_KEYS}
    clash = sorted(set(names) & reserved)
    if clash:
        raise ValueError(f"component name(s) {clash} clash with the result keys {sorted(reserved)}; rename them in the spec")


def count_statuses(records: Sequence[ScoredRecord]) -> dict[str, int]:
    counts = {s.value: 0 for s in Status}
    for record in records:
        counts[record.status.value] += 1
    return counts


_pending_failures: dict[str, list[Any]] = {}  # owner -> [n, error, timeout, first message, last warned]
_failures_lock = threading.Lock()


def warn_failures(owner: str, records: Sequence[ScoredRecord], *, every: float = 0.0) -> None:
    """Warn about samples that errored or timed out (a trainer would otherwise hide them).

    Batch callers (TRL) warn once per batch. Per-sample callers (verl, OpenRLHF) pass
    ``every`` seconds: counts accumulate and one warning at most every ``every`` seconds
    reports them, so a broken dataset column does not flood the log.
    """
    counts = count_statuses(records)
    with _failures_lock:
        pending = _pending_failures.setdefault(owner, [0, 0, 0, None, -math.inf])
        pending[0] += len(records)
        pending[1] += counts["error"]
        pending[2] += counts["timeout"]
        if pending[3] is None:
            pending[3] = next(
                (r.info.get("error") for r in records if r.status in (Status.ERROR, Status.TIMEOUT)), None
            )
        now = time.monotonic()
        if not (pending[1] or pending[2]) or now - pending[4] < every:
            if not every:
                del _pending_failures[owner]
            return
        n, errors, timeouts, example, _ = pending
        _pending_failures[owner] = [0, 0, 0, None, now]
    log.warning(
        "%s: %d of %d samples got no reward (error: %d, timeout: %d); first: %s",
        owner, errors + timeouts, n, errors, timeouts, example,
    )
