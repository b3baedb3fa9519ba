"""Trainer adapters: one medreward spec in every major RL trainer, exact to each contract.

* :mod:`medreward.integrations.trl` — ``GRPOTrainer(reward_funcs=...)`` callables, and one
  callable that routes each row to its spec by a ``task`` column;
* :mod:`medreward.integrations.verl` — ``compute_score`` / ``compute_score_batch``;
* :mod:`medreward.integrations.openrlhf` — ``reward_func`` and the ``/get_reward`` handler;
* :mod:`medreward.integrations.reward_kit` — ``EvaluateResult`` and a pointwise ``evaluate``.

All of them score through :class:`medreward.runner.Scorer` (one per spec per process, see
:mod:`~medreward.integrations.scorers`), so the same rollout gets the same reward everywhere.
Docs: ``docs/integrations.md``.

Shared parts, one idea each: :mod:`~medreward.integrations.registry` maps trainer-side names
(verl's ``data_source``, a ``task`` value, a spec name given to any adapter) to specs — every
preset is registered under its own name; :mod:`~medreward.integrations.references` turns
ground truths into reference dicts; :mod:`~medreward.integrations.results` builds the flat
float results and the warnings about samples without a reward. They are imported with
absolute imports, so an adapter that a trainer loads *by file path* (verl
``custom_reward_function.path``, OpenRLHF ``--reward.remote_url x.py``) shares their state
with ``import medreward.integrations.verl``.
"""

from medreward.integrations.references import coerce_reference, split_task
from medreward.integrations.registry import (
    ENV_SPEC,
    UnknownDataSourceError,
    data_sources,
    register_data_source,
    resolve_data_source,
    unregister_data_source,
)
from medreward.integrations.scorers import SharedScorer, get_scorer

__all__ = [
    "ENV_SPEC",
    "SharedScorer",
    "UnknownDataSourceError",
    "coerce_reference",
    "data_sources",
    "get_scorer",
    "register_data_source",
    "resolve_data_source",
    "split_task",
    "unregister_data_source",
]
