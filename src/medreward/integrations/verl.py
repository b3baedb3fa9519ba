"""verl adapter: ``compute_score`` for ``reward.custom_reward_function``.

verl (0.9.1) calls a custom reward function once per sample, from a thread pool, with
keyword arguments ``data_source``, ``solution_str`` (the decoded response, no prompt),
``ground_truth`` (the Parquet row's ``reward_model.ground_truth``) and ``extra_info``. Tested
with verl's own managers: ``naive`` and ``dapo`` (legacy and reward-loop), ``gdpo`` (reward
loop), and ``prime``, which calls it positionally from a process pool and reads
``float(result[0])`` — :class:`VerlResult` answers index 0 with the score, and a file loaded by
path hands out this installed module's functions so that they pickle. The ``batch`` manager
calls ``compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=)`` instead:
point ``custom_reward_function.name`` at :func:`compute_score_batch` for it.

Config (``pkg://`` imports the installed module, so aliases you register elsewhere apply)::

    reward:
      custom_reward_function:
        path: pkg://medreward.integrations.verl
        name: compute_score            # compute_score_batch with reward_manager.name=batch
        reward_kwargs: {failed_score: 0.0}

Which spec: ``data_source`` names a preset (``toxicology``, ``mcq``, ``calculator``,
``icd_coding``), a default alias (``medqa``, ``medmcqa`` → mcq; ``medcalc_bench`` →
calculator; ``icd10cm`` → icd_coding) or one you add with :func:`register_data_source`.
Anything else raises :class:`UnknownDataSourceError` (a ``ValueError``) listing the known names.

Ground truth: a dict, JSON text (``'{"substances": ["opioids"]}'``, ``'["opioids"]'``,
``'23.4'``) or plain text (``"opioids,ethanol"``, ``"C"``) that fills the spec's primary
reference key (:meth:`~medreward.compose.Spec.reference_keys`); Parquet arrays are converted. ``extra_info["reference"]`` (a dict), if
present, supplies further reference fields (e.g. MCQ ``options``); the ground truth wins.

Result: a dict of floats (a :class:`VerlResult`) whose keys are the same for every sample of a run, because verl
takes the extra-info keys from sample 0 (a missing key is a ``KeyError``, an extra key is
dropped):

* ``score`` — the reward; ``failed_score`` (default 0.0) when the sample has none
  (not applicable, error, timeout): verl tensors cannot hold ``None``;
* ``status_ok``, ``status_not_applicable``, ``status_error``, ``status_timeout`` — 1.0 for the
  sample's status, else 0.0 (their means are fractions in verl's validation metrics);
* one key per component of every data source that can occur (all registered ones, or those
  in ``active_data_sources``) — its value, or the sentinel 0.0 when it has none for this
  sample (not applicable, failed, or not in this sample's spec);
* for specs with model backends (judges, reward models): ``backend/<name>/calls``,
  ``cache_hits``, ``failures``, ``prompt_tokens``, ``completion_tokens`` — the scored batch's
  counts divided by its size, so their mean over a step is the cost per sample and their sum
  the step's total (verl keeps per-sample values only).

Errors are per sample: a bad completion or reference gives ``status_error`` and
``failed_score``; only configuration mistakes (unknown data source, broken spec,
misaligned batch lists) raise. One scorer per spec per process, shared by verl's threads.

>>> r = compute_score("toxicology", "<think>miosis</think><answer>opioids</answer>", "opioids,ethanol")
>>> r["score"], r["status_ok"], round(r["substances"], 3), r["format"]
(0.7, 1.0, 0.667, 1.0)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from medreward.errors import RecordError
from medreward.integrations.references import bad_input, coerce_reference, to_builtin
from medreward.integrations.registry import (
    SpecLike,
    UnknownDataSourceError,
    data_sources,
    register_data_source,
    registry_version,
    resolve_data_source,
    spec_backend_names,
    spec_component_names,
    unregister_data_source,
)
from medreward.integrations.results import (
    STATUS_KEYS,
    backend_keys,
    backend_shares,
    check_component_keys,
    flat_scores,
    warn_failures,
)
from medreward.integrations.scorers import get_scorer

__all__ = [
    "UnknownDataSourceError",
    "VerlResult",
    "compute_score",
    "compute_score_batch",
    "data_sources",
    "register_data_source",
    "result_keys",
    "unregister_data_source",
]

log = logging.getLogger(__name__)

_WARN_EVERY = 30.0  # seconds between failure warnings: called once per sample

_keys_lock = threading.Lock()
_keys_cache: dict[tuple[Any, ...], tuple[str, ...]] = {}
_warned_gdpo: set[str] = set()


def result_keys(active_data_sources: Sequence[str] | None = None) -> tuple[str, ...]:
    """The keys of every result: ``score``, the status flags, the sorted union of the component
    names of the data sources that can occur (all registered ones by default), then
    ``backend/<name>/<field>`` for the model backends of their specs
    (:func:`~medreward.integrations.results.backend_shares`: the batch's calls, cache hits,
    failures and tokens per sample).

    >>> result_keys(["toxicology"])
    ('score', 'status_ok', 'status_not_applicable', 'status_error', 'status_timeout', 'format', 'substances')
    """
    sources = data_sources()
    names = tuple(sorted(sources)) if active_data_sources is None else tuple(to_builtin(list(active_data_sources)))
    key = (registry_version(), names)
    with _keys_lock:
        hit = _keys_cache.get(key)
        if hit is not None:
            return hit
        components: set[str] = set()
        backends: set[str] = set()
        for name in names:
            spec = resolve_data_source(name)
            try:
                components.update(spec_component_names(spec))
                backends.update(spec_backend_names(spec))
            except Exception as exc:
                if active_data_sources is not None:
                    raise
                log.warning("data source %r: spec %r cannot be read (%s); its components are left out", name, spec, exc)
        ordered = sorted(components)
        check_component_keys(ordered)
        out = ("score", *STATUS_KEYS, *ordered, *backend_keys(sorted(backends)))
        _keys_cache[key] = out
        return out


class VerlResult(dict[str, float]):
    """The result of one sample: a plain ``dict`` of floats for verl's managers, which read
    ``result["score"]`` and take every key as extra info. PRIME's manager instead reads
    ``float(result[0])`` from anything that is not a number, so index ``0`` is the score too
    (it is not a key: iterating, ``len`` and ``==`` see only the named keys).

    >>> r = VerlResult(score=0.7, status_ok=1.0)
    >>> r[0], list(r)
    (0.7, ['score', 'status_ok'])
    """

    __slots__ = ()

    def __missing__(self, key: Any) -> float:
        if key == 0 and not isinstance(key, bool):
            return self["score"]
        raise KeyError(key)


def _reference(ground_truth: Any, extra_info: Any, keys: Sequence[str]) -> dict[str, Any]:
    reference = coerce_reference(ground_truth, keys)
    more = to_builtin(extra_info.get("reference")) if isinstance(extra_info, Mapping) else None
    if isinstance(more, Mapping):
        reference = {**more, **reference}
    return reference


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[Any],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    *,
    failed_score: float = 0.0,
    time_limit: float | None = 10.0,
    active_data_sources: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[VerlResult]:
    """Score a batch (verl's ``batch`` reward manager); one result dict per sample, in order.

    Samples are grouped by data source and each group is scored in one call of its
    scorer. Options (also settable as ``reward_kwargs`` in the verl config):
    ``failed_score`` — ``score`` of samples without a reward; ``time_limit`` — seconds per
    component and sample; ``active_data_sources`` — the data sources of this run (fixes the
    result keys to their components and rejects any other). Other keyword arguments
    (``reward_router_address``, ``reward_model_tokenizer``…) are accepted and ignored.
    """
    n = len(solution_strs)
    if len(data_sources) != n or len(ground_truths) != n or (extra_infos is not None and len(extra_infos) != n):
        lengths = {
            "data_sources": len(data_sources),
            "solution_strs": n,
            "ground_truths": len(ground_truths),
            "extra_infos": None if extra_infos is None else len(extra_infos),
        }
        raise ValueError(f"compute_score_batch: the lists have different lengths: {lengths}")
    keys = result_keys(active_data_sources)
    extra = keys[1 + len(STATUS_KEYS):]
    components = tuple(k for k in extra if not k.startswith("backend/"))
    accounting = tuple(k for k in extra if k.startswith("backend/"))
    allowed = None if active_data_sources is None else set(to_builtin(list(active_data_sources)))
    groups: dict[str, list[int]] = {}
    specs: dict[str, SpecLike] = {}
    for i, source in enumerate(data_sources):
        source = to_builtin(source)
        if allowed is not None and source not in allowed:
            raise UnknownDataSourceError(source, sorted(allowed))
        label = source if isinstance(source, str) else repr(source)
        if label not in specs:
            specs[label] = resolve_data_source(source)
        groups.setdefault(label, []).append(i)
    results: list[dict[str, float] | None] = [None] * n
    for label, indices in groups.items():
        scorer = get_scorer(specs[label], time_limit=time_limit)
        if scorer.spec.aggregate == "normalize_then_sum" and label not in _warned_gdpo:
            _warned_gdpo.add(label)
            log.warning(
                "data source %r uses normalize_then_sum (GDPO): verl scores sample by sample, so use "
                "algorithm.adv_estimator=gdpo with gdpo_reward_keys=%s instead",
                label, list(scorer.spec.component_names),
            )
        items: list[Any] = []
        for i in indices:
            extra = extra_infos[i] if extra_infos is not None else None
            try:
                reference = _reference(ground_truths[i], extra, scorer.reference_keys)
            except RecordError as exc:
                items.append(bad_input(f"ground_truth: {exc}", {"completion": solution_strs[i]}))
                continue
            items.append({"completion": solution_strs[i], "reference": reference})
        records, stats = scorer.score(items)
        warn_failures(f"verl/{label}", records, every=_WARN_EVERY)
        shares = backend_shares(stats, len(indices))
        cost = {k: shares.get(k, 0.0) for k in accounting}
        for i, record in zip(indices, records, strict=True):
            results[i] = VerlResult(flat_scores(record, components, failed_score=failed_score), **cost)
    return [r for r in results if r is not None]


def compute_score(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Any = None,
    **kwargs: Any,
) -> VerlResult:
    """Score one sample: verl's ``custom_reward_function`` (naive, dapo, prime… managers).

    Keeps verl's documented parameter order (positional callers exist). Keyword options as
    in :func:`compute_score_batch`.

    >>> compute_score("mcq", "<think>…</think><answer>C</answer>", "C")["score"]
    1.0
    >>> compute_score("mcq", None, "C")["status_error"]
    1.0
    """
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **kwargs)[0]


if __name__ != "medreward.integrations.verl":  # pragma: no cover - exercised through verl's file loader
    # Loaded by file path (verl's ``custom_reward_function.path``): hand out the installed
    # module's functions, which pickle by name (PRIME scores in a process pool, the remote
    # manager in Ray workers); this file's own copies could not be found by name there.
    from medreward.integrations.verl import compute_score, compute_score_batch, result_keys  # noqa: F811
