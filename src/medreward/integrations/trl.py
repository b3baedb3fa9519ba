"""TRL adapter: a medreward spec as ``GRPOTrainer(reward_funcs=...)`` callables.

TRL (1.16) calls each reward function once per local batch as
``f(prompts=..., completions=..., completion_ids=..., **reward_kwargs)`` where
``reward_kwargs`` holds every dataset column (lists aligned with the completions, each
row repeated ``num_generations`` times) plus ``trainer_state``, ``log_extra`` and
``log_metric``. It expects exactly one ``float | None`` per completion: ``None`` is "not
applicable", turned into NaN and left out of that sample's weighted sum. There is no
try/except around the call, so a bad sample must never raise.

* :func:`reward_func` — one callable for the whole spec (its gates and aggregation apply);
  TRL logs it as ``rewards/medreward_<spec>/mean``.
* :func:`reward_funcs_per_component` — one callable per component plus the matching
  ``reward_weights``, so TRL's own ``reward_weights`` / ``multi_objective_aggregation``
  (e.g. ``"normalize_then_sum"``, GDPO) combine them. Gates are not applied this way.
* :func:`async_reward_func` — the same as :func:`reward_func` with an ``async __call__``
  (TRL gathers async reward functions concurrently; scoring runs in a thread).
* :func:`reward_func_by_task` — one callable for a dataset that mixes tasks: each row is
  scored by the spec its ``task`` column names (registered data sources, or a mapping).

Where references come from (per sample): a ``reference`` column (dicts or JSON text) by
default, else the columns named after the keys the spec's components declare
(:meth:`~medreward.compose.Spec.reference_keys`: ``substances``, ``answer``/``options``,
``value``/``unit``/``lower``/``upper``, ``codes``…); or say exactly which with
``reference_column=`` or ``columns={key: column}``. ``completion_ids`` are passed into each
rollout (``extra["completion_ids"]``), so ``length`` / ``repetition`` with ``unit = "tokens"``
count the policy's tokens, as TRL's own length and repetition rewards do.

Returned values: the spec's reward for ``ok`` samples, ``None`` for ``not_applicable`` (a
required component did not apply, e.g. the reference lacks its field), ``error`` and
``timeout`` (a completion that is ``None``, a malformed reference, a component that raised or
hung). An empty completion ``""`` is a real, wrong answer and is scored
(0.0 with the shipped presets) so the policy is pushed away from it. Errors and timeouts are
logged as one warning per batch with counts, and so are ``not_applicable`` samples.

Logged through ``log_metric`` (averaged per logging step): ``medreward/<spec>/<component>/mean``
(over the samples where it applied), ``medreward/<spec>/<component>/frac_not_applicable``,
``.../frac_error``, ``.../frac_timeout``, and for the whole callable
``medreward/<name>/frac_none``, ``.../frac_error``, ``.../frac_timeout``, ``.../frac_not_applicable``. Through
``log_extra`` (the completions table): ``<name>/status`` and ``<name>/info`` (compact JSON).
A spec with model backends also logs, per batch, ``medreward/<spec>/backend/<backend>/calls``,
``.../cache_hits``, ``.../retries``, ``.../failures``, ``.../prompt_tokens``, ``.../completion_tokens``,
``.../latency_p50_s`` and ``.../latency_p95_s`` (a per-component function: under ``medreward/<name>/backend/…``).

>>> from medreward.integrations.trl import reward_func
>>> tox = reward_func("toxicology")
>>> tox.__name__
'medreward_toxicology'
>>> tox(prompts=["Pinpoint pupils, apnea. Substance?"],
...     completions=["<think>miosis</think><answer>opioids</answer>"],
...     substances=[["opioids"]])
[1.0]
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from medreward.compose.spec import Spec, load_spec
from medreward.errors import RecordError
from medreward.integrations.references import bad_input, coerce_reference, to_builtin
from medreward.integrations.registry import (
    SpecLike,
    UnknownDataSourceError,
    load_spec_like,
    resolve_data_source,
    task_specs,
)
from medreward.integrations.results import count_statuses, warn_failures
from medreward.integrations.scorers import get_scorer
from medreward.records import ScoredRecord, Status
from medreward.runner import RunStats

__all__ = [
    "AsyncTRLReward",
    "AsyncTRLTaskRouter",
    "PerComponentRewards",
    "TRLReward",
    "TRLTaskRouter",
    "async_reward_func",
    "reward_func",
    "reward_func_by_task",
    "reward_funcs_per_component",
]

log = logging.getLogger(__name__)

#: keyword arguments TRL adds that are not dataset columns
_TRAINER_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "environments"})
_INFO_CHARS = 500  # per-sample info logged to the completions table

Batch = tuple[list[ScoredRecord], RunStats]


def _identifier(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_") or "spec"


def _is_column(values: Any) -> bool:
    return not isinstance(values, (str, bytes, Mapping)) and hasattr(values, "__len__")


def _batch_size(name: str, completions: Sequence[Any] | None) -> int:
    if completions is None:
        raise ValueError(f"{name}: TRL passed no 'completions'")
    return len(completions)


class _TRLCallable:
    """TRL's calling convention, once for every callable here: ``_score`` does the work (in a
    worker thread for the async variants), ``_finish`` logs on the caller's thread and returns
    one ``float | None`` per completion."""

    def _score(self, prompts: Any, completions: Any, completion_ids: Any, kwargs: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _finish(self, scored: Any, kwargs: Mapping[str, Any]) -> list[float | None]:
        raise NotImplementedError

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """One reward (or ``None``) per completion. Raises only for misaligned inputs."""
        return self._finish(self._score(prompts, completions, completion_ids, kwargs), kwargs)


class _AsyncCall(_TRLCallable):
    """``async __call__``: TRL (``is_async_callable``) awaits it together with its other async
    reward functions; the scoring itself runs in a worker thread."""

    async def __call__(  # type: ignore[override]
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        scored = await asyncio.to_thread(self._score, prompts, completions, completion_ids, kwargs)
        return self._finish(scored, kwargs)  # on the caller's thread: TRL's log buffers are not locked


def _log_batch(
    kwargs: Mapping[str, Any],
    name: str,
    records: Sequence[ScoredRecord],
    metrics: Callable[[], dict[str, float]],
    *,
    metric_prefix: str | None,
    log_samples: bool,
) -> None:
    """Hand a batch's metrics to TRL's ``log_metric`` and its per-sample status and info to
    ``log_extra`` (each only when TRL passed it and the callable is configured to)."""
    if not records:
        return
    log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
    if callable(log_metric) and metric_prefix:
        for key, value in metrics().items():
            log_metric(key, value)
    log_extra: Callable[[str, list], None] | None = kwargs.get("log_extra")
    if callable(log_extra) and log_samples:
        log_extra(f"{name}/status", [r.status.value for r in records])
        log_extra(f"{name}/info", [_info_text(r) for r in records])


class TRLReward(_TRLCallable):
    """A picklable TRL reward function for a spec (or one component of it).

    Prefer the factories :func:`reward_func` and :func:`reward_funcs_per_component`.

    Args:
        spec: preset name / registered data source, TOML path, dict or Spec.
        component: score only this component of the spec (value in its own range).
        name: the ``__name__`` TRL logs under (default ``medreward_<spec>[_<component>]``).
        reference_column: a column holding each sample's whole reference (a dict, JSON text,
            or a plain value for the spec's primary reference key). Default: ``"reference"``
            if present.
        columns: ``{reference key: column}``, for datasets whose columns are named otherwise.
        time_limit: seconds one component may spend on one sample.
        metric_prefix: prefix of the ``log_metric`` keys; ``None`` logs no metrics.
        log_samples: add ``<name>/status`` and ``<name>/info`` columns through ``log_extra``.
    """

    def __init__(
        self,
        spec: SpecLike,
        *,
        component: str | None = None,
        name: str | None = None,
        reference_column: str | None = None,
        columns: Mapping[str, str] | None = None,
        time_limit: float | None = 10.0,
        metric_prefix: str | None = "medreward",
        log_samples: bool = True,
    ) -> None:
        full = load_spec_like(spec)
        if component is not None:
            if component not in full.component_names:
                raise ValueError(
                    f"spec {full.name!r} has no component {component!r}; components: {', '.join(full.component_names)}"
                )
            self.spec = _single_component(full, component)
        else:
            self.spec = full
        self.component = component
        default = f"medreward_{_identifier(full.name)}" + (f"_{_identifier(component)}" if component else "")
        self.__name__ = name or default
        self.reference_column = reference_column
        self.columns = dict(columns) if columns else None
        self.time_limit = time_limit
        self.metric_prefix = metric_prefix
        self.log_samples = log_samples
        self._full_spec = full  # references are read as the whole spec reads them
        self._fields = get_scorer(full, time_limit=time_limit).reference_keys  # declared, defaults included
        self._warned_no_reference = False
        get_scorer(self.spec, time_limit=time_limit)  # build now: a bad spec fails before training starts

    # -- TRL entry point (__call__ of _TRLCallable) -----------------------------------------
    def _score(
        self,
        prompts: Sequence[Any] | None,
        completions: Sequence[Any] | None,
        completion_ids: Sequence[Sequence[int]] | None,
        kwargs: Mapping[str, Any],
    ) -> Batch:
        n = _batch_size(self.__name__, completions)
        if prompts is None:
            prompts = [""] * n
        elif len(prompts) != n:
            raise ValueError(f"{self.__name__}: got {len(prompts)} prompts but {n} completions")
        if completion_ids is not None and (not _is_column(completion_ids) or len(completion_ids) != n):
            raise ValueError(f"{self.__name__}: 'completion_ids' must be a list with one entry per completion ({n})")
        references = self._references(n, kwargs)
        items: list[Any] = []
        for i, (prompt, completion, reference) in enumerate(zip(prompts, completions, references, strict=True)):
            if isinstance(reference, str):  # the reference of this sample could not be read
                items.append(bad_input(reference, {"prompt": prompt, "completion": completion}))
                continue
            item = {"prompt": prompt, "completion": completion, "reference": reference}
            if completion_ids is not None:  # token counts for `length` / `repetition` with unit="tokens"
                item["completion_ids"] = completion_ids[i]
            items.append(item)
        return get_scorer(self.spec, time_limit=self.time_limit).score(items)

    def _references(self, n: int, kwargs: Mapping[str, Any]) -> list[dict[str, Any] | str]:
        """Each sample's reference dict, or an error message for a sample whose reference is unreadable."""
        available = sorted(k for k in kwargs if k not in _TRAINER_KWARGS)

        def column(key: str) -> Sequence[Any]:
            if key not in kwargs:
                raise ValueError(f"{self.__name__}: no column {key!r} in the batch; columns: {available}")
            values = kwargs[key]
            if not _is_column(values):
                raise ValueError(f"{self.__name__}: column {key!r} must be a list (one value per completion)")
            if len(values) != n:
                raise ValueError(f"{self.__name__}: column {key!r} has {len(values)} values but there are {n} completions")
            return values

        if self.columns:
            cols = {field: column(col) for field, col in self.columns.items()}
            return [{field: to_builtin(values[i]) for field, values in cols.items()} for i in range(n)]
        whole = self.reference_column or ("reference" if "reference" in kwargs else None)
        if whole is not None:
            out: list[dict[str, Any] | str] = []
            for value in column(whole):
                try:
                    out.append(coerce_reference(value, self._fields))
                except RecordError as exc:
                    out.append(f"column {whole!r}: {exc}")
            return out
        names = [f for f in self._fields if f in kwargs]
        if not names:
            if not self._warned_no_reference and self._fields:
                log.warning(
                    "%s: the batch has none of the reference columns %s (columns: %s); answer components "
                    "will be not_applicable. Pass reference_column= or columns={field: column}.",
                    self.__name__, ["reference", *self._fields], available,
                )
                self._warned_no_reference = True
            return [{} for _ in range(n)]
        cols = {name: column(name) for name in names}
        return [{name: to_builtin(values[i]) for name, values in cols.items()} for i in range(n)]

    def _rewards(self, records: Sequence[ScoredRecord]) -> list[float | None]:
        if self.component is None:
            return [r.reward for r in records]
        name = self.component  # None where this component did not apply, as TRL's nansum expects
        return [None if r.reward is None or r.components.get(name) is None else r.reward for r in records]

    # -- reporting --------------------------------------------------------------------------
    def _finish(self, scored: Batch, kwargs: Mapping[str, Any]) -> list[float | None]:
        records, stats = scored
        warn_failures(self.__name__, records)
        _log_batch(
            kwargs, self.__name__, records,
            lambda: {**self._component_metrics(stats), **_call_metrics(f"{self.metric_prefix}/{self.__name__}", records)},
            metric_prefix=self.metric_prefix, log_samples=self.log_samples,
        )
        return self._rewards(records)

    def _component_metrics(self, stats: RunStats) -> dict[str, float]:
        """``<prefix>/<spec>/<component>/mean|frac_*``: namespaced by spec, so two specs'
        ``format`` components do not average into one key."""
        prefix = f"{self.metric_prefix}/{self._full_spec.name}"
        out: dict[str, float] = {}
        for name, comp in stats.components.items():
            if self.component is not None and name != self.component:
                continue  # a required component along for its status only
            scored = comp.scored
            if comp.mean is not None:
                out[f"{prefix}/{name}/mean"] = float(comp.mean)
            if scored:
                for status in (Status.NOT_APPLICABLE, Status.ERROR, Status.TIMEOUT):
                    out[f"{prefix}/{name}/frac_{status.value}"] = comp.counts[status.value] / scored
        if stats.backends:  # a per-component function reports the calls of its own scorer, under its own name
            out.update(backend_metrics(prefix if self.component is None else f"{self.metric_prefix}/{self.__name__}", stats))
        return out

    # -- pickling: TRL's async GRPO worker and multiprocessing pickle reward functions ----------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("spec", "_full_spec"):  # plain dicts: rebuilt (and cached) in the new process
            state[key] = state[key].to_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for key in ("spec", "_full_spec"):
            state[key] = load_spec(state[key])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, spec={self.spec.name!r})"


def backend_metrics(prefix: str, stats: RunStats) -> dict[str, float]:
    """``<prefix>/backend/<name>/calls|cache_hits|retries|failures|prompt_tokens|completion_tokens|
    latency_p50_s|latency_p95_s`` for a batch (the latencies only when a call was made)."""
    out: dict[str, float] = {}
    for name, backend in stats.backends.items():
        for key, value in backend.summary().items():
            if value is not None:
                out[f"{prefix}/backend/{name}/{key}"] = float(value)
    return out


def _call_metrics(prefix: str, records: Sequence[ScoredRecord]) -> dict[str, float]:
    """``<prefix>/frac_none|frac_error|frac_timeout|frac_not_applicable`` over a batch."""
    counts = count_statuses(records)
    n = len(records)
    return {
        f"{prefix}/frac_none": sum(r.reward is None for r in records) / n,
        f"{prefix}/frac_error": counts["error"] / n,
        f"{prefix}/frac_timeout": counts["timeout"] / n,
        f"{prefix}/frac_not_applicable": counts["not_applicable"] / n,
    }


class AsyncTRLReward(_AsyncCall, TRLReward):
    """:class:`TRLReward` with ``async __call__``: TRL (``is_async_callable``) awaits it together
    with its other async reward functions; the scoring itself runs in a worker thread."""


def _single_component(spec: Spec, component: str) -> Spec:
    """The spec reduced to one component with weight 1 and no gate: its reward is the component's
    value. The components that decide whether a record applies at all (the spec's required ones)
    come along with weight 0, so a record the whole spec calls ``not_applicable`` gets ``None``
    from every per-component function too."""
    data = spec.to_dict()
    requirements = getattr(spec, "requirements", None)
    needed: set[int] = set()
    if callable(requirements):
        needs = requirements()
        needed = {*needs.each, *needs.together}
    kept = []
    used: set[str] = set()  # the backends the kept components call: the others are not built
    built = spec.built_components() if data.get("backends") else ()
    for k, c in enumerate(data["components"]):
        if c["name"] == component:
            kept.append({**c, "weight": 1.0, "gate": False})
        elif k in needed:
            kept.append({**c, "weight": 0.0, "gate": False})
        else:
            continue
        if built:
            used.update(built[k].backend_names())
    if data.get("backends"):
        data["backends"] = {name: b for name, b in data["backends"].items() if name in used}
    data.update(name=f"{spec.name}.{component}", aggregate="weighted_sum", components=kept)
    return Spec.from_dict(data, source=f"spec {spec.name!r}, component {component!r}")


def _info_text(record: ScoredRecord) -> str:
    text = json.dumps(record.info, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if len(text) <= _INFO_CHARS else text[: _INFO_CHARS - 1] + "…"


def reward_func(spec: SpecLike, **options: Any) -> TRLReward:
    """One TRL reward function for the whole spec; options as in :class:`TRLReward`.

    >>> f = reward_func("toxicology")
    >>> f(prompts=["p", "p"], completions=[[{"role": "assistant", "content": "<think>.</think><answer>ethanol</answer>"}],
    ...                                     None], reference=['{"substances": ["ethanol"]}', "ethanol"])
    [1.0, None]
    """
    return TRLReward(spec, **options)


def async_reward_func(spec: SpecLike, **options: Any) -> AsyncTRLReward:
    """Like :func:`reward_func`, with an ``async __call__`` that TRL runs concurrently."""
    return AsyncTRLReward(spec, **options)


class PerComponentRewards(NamedTuple):
    """``reward_funcs`` and the matching ``reward_weights`` (the spec's weights) for TRL."""

    reward_funcs: list[TRLReward]
    reward_weights: list[float]


def reward_funcs_per_component(spec: SpecLike, *, asynchronous: bool = False, **options: Any) -> PerComponentRewards:
    """One TRL reward function per component, and the spec's weights as ``reward_weights``.

    TRL then forms ``Σ w_k r_k`` (``nansum``: a not-applicable component drops out, as in the
    spec's ``weighted_sum``), or with ``multi_objective_aggregation="normalize_then_sum"`` the
    GDPO aggregate. Gates of the spec are not applied (TRL has no such notion): a warning says
    so. Each component is logged by TRL as ``rewards/medreward_<spec>_<component>/mean``.

    >>> funcs, weights = reward_funcs_per_component("toxicology")
    >>> [f.__name__ for f in funcs], weights
    (['medreward_toxicology_format', 'medreward_toxicology_substances'], [0.1, 0.9])
    """
    if "name" in options or "component" in options:
        raise TypeError("reward_funcs_per_component names each function after its component; drop name=/component=")
    full = load_spec_like(spec)
    gated = [c.name for c in full.components if c.gate]
    if gated:
        log.warning(
            "spec %r gates on %s; per-component TRL rewards cannot apply gates (use reward_func for that)",
            full.name, gated,
        )
    cls = AsyncTRLReward if asynchronous else TRLReward
    funcs = [cls(full, component=c.name, **options) for c in full.components]
    return PerComponentRewards(funcs, [float(c.weight) for c in full.components])


# -- multi-task runs ------------------------------------------------------------------------------
class TRLTaskRouter(_TRLCallable):
    """One TRL reward function for a dataset that mixes tasks: each row is scored by the spec
    of its ``task`` column, so no spec pays its format credit on another task's rows.

    Prefer the factory :func:`reward_func_by_task`.

    Args:
        tasks: ``{task value: spec}``; or a list of task names, each resolved as a registered
            data source (presets, default aliases, :func:`~medreward.integrations.register_data_source`);
            ``None`` accepts every registered name. A row whose task is not accepted raises
            :class:`~medreward.integrations.UnknownDataSourceError` (a configuration mistake,
            as in verl).
        task_column: the dataset column naming each row's task.
        name: the ``__name__`` TRL logs under.
        columns: ``{reference key: column}``; each spec takes the entries for its own keys.
        reference_column, time_limit, metric_prefix, log_samples: as in :class:`TRLReward`.

    Metrics are namespaced by spec (``medreward/<spec>/<component>/mean``); the callable's own
    ``medreward/<name>/frac_none|…`` cover all rows.
    """

    def __init__(
        self,
        tasks: Mapping[str, SpecLike] | Sequence[str] | None = None,
        *,
        task_column: str = "task",
        name: str = "medreward_by_task",
        reference_column: str | None = None,
        columns: Mapping[str, str] | None = None,
        time_limit: float | None = 10.0,
        metric_prefix: str | None = "medreward",
        log_samples: bool = True,
    ) -> None:
        self.__name__ = name
        self.task_column = task_column
        self.reference_column = reference_column
        self.columns = dict(columns) if columns else None
        self.time_limit = time_limit
        self.metric_prefix = metric_prefix
        self.log_samples = log_samples
        self._allowed = task_specs(tasks)
        self._members: dict[str, TRLReward] = {}
        for task in self._allowed or {}:
            self._member(task)  # build now: a bad spec fails before training starts

    def _member(self, task: str) -> TRLReward:
        member = self._members.get(task)
        if member is None:
            if self._allowed is None:
                spec = resolve_data_source(task)
            elif task in self._allowed:
                spec = self._allowed[task]
            else:
                raise UnknownDataSourceError(task, sorted(self._allowed))
            keys = get_scorer(spec, time_limit=self.time_limit).reference_keys
            columns = {k: c for k, c in (self.columns or {}).items() if k in keys} or None
            member = self._members[task] = TRLReward(
                spec, name=f"{self.__name__}/{task}", reference_column=self.reference_column, columns=columns,
                time_limit=self.time_limit, metric_prefix=self.metric_prefix, log_samples=False,
            )
        return member

    def _score(
        self,
        prompts: Sequence[Any] | None,
        completions: Sequence[Any] | None,
        completion_ids: Sequence[Sequence[int]] | None,
        kwargs: Mapping[str, Any],
    ) -> list[tuple[TRLReward, list[int], Batch]]:
        n = _batch_size(self.__name__, completions)
        tasks = kwargs.get(self.task_column)
        if tasks is None or not _is_column(tasks) or len(tasks) != n:
            have = sorted(k for k in kwargs if k not in _TRAINER_KWARGS)
            raise ValueError(
                f"{self.__name__}: needs a column {self.task_column!r} with one task name per completion ({n}); "
                f"columns: {have}"
            )
        rows: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            task = to_builtin(task)
            if not isinstance(task, str):
                raise ValueError(f"{self.__name__}: row {i} has task {task!r}; each row needs a task name")
            rows.setdefault(task, []).append(i)

        def part(values: Any, idx: list[int]) -> Any:
            return [values[i] for i in idx] if _is_column(values) and len(values) == n else values

        out = []
        for task, idx in rows.items():
            member = self._member(task)
            sub = {k: part(v, idx) for k, v in kwargs.items() if k not in _TRAINER_KWARGS}
            batch = member._score(
                None if prompts is None else part(prompts, idx),
                [completions[i] for i in idx],
                None if completion_ids is None else part(completion_ids, idx),
                sub,
            )
            out.append((member, idx, batch))
        return out

    def _finish(
        self, groups: list[tuple[TRLReward, list[int], Batch]], kwargs: Mapping[str, Any]
    ) -> list[float | None]:
        records: list[ScoredRecord | None] = [None] * sum(len(idx) for _, idx, _ in groups)
        for member, idx, (recs, _) in groups:
            warn_failures(member.__name__, recs)
            for i, record in zip(idx, recs, strict=True):
                records[i] = record
        ordered = [r for r in records if r is not None]

        def metrics() -> dict[str, float]:
            out: dict[str, float] = {}
            for member, _, (_, stats) in groups:
                out.update(member._component_metrics(stats))
            return {**out, **_call_metrics(f"{self.metric_prefix}/{self.__name__}", ordered)}

        _log_batch(kwargs, self.__name__, ordered, metrics, metric_prefix=self.metric_prefix, log_samples=self.log_samples)
        return [r.reward for r in ordered]

    def __repr__(self) -> str:
        tasks = "all registered" if self._allowed is None else sorted(self._allowed)
        return f"{type(self).__name__}(name={self.__name__!r}, tasks={tasks!r})"


class AsyncTRLTaskRouter(_AsyncCall, TRLTaskRouter):
    """:class:`TRLTaskRouter` with ``async __call__`` (scoring runs in a worker thread)."""


def reward_func_by_task(
    tasks: Mapping[str, SpecLike] | Sequence[str] | None = None, *, asynchronous: bool = False, **options: Any
) -> TRLTaskRouter:
    """One TRL reward function for a mixed-task dataset, routing each row by its ``task`` column.

    >>> f = reward_func_by_task(["toxicology", "mcq"])
    >>> f(prompts=["p", "p"], completions=["<think>.</think><answer>opioids</answer>", "<think>.</think><answer>B</answer>"],
    ...   task=["toxicology", "mcq"], reference=['["opioids"]', "B"])
    [1.0, 1.0]
    """
    cls = AsyncTRLTaskRouter if asynchronous else TRLTaskRouter
    return cls(tasks, **options)
