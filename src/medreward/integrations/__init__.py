"""Trainer adapters: one medreward spec in every major RL trainer, exact to each contract.

* :mod:`medreward.integrations.trl` — ``GRPOTrainer(reward_funcs=...)`` callables;
* :mod:`medreward.integrations.verl` — ``compute_score`` / ``compute_score_batch``;
* :mod:`medreward.integrations.openrlhf` — ``reward_func`` and the ``/get_reward`` handler;
* :mod:`medreward.integrations.reward_kit` — ``EvaluateResult`` and a pointwise ``evaluate``.

All of them score through :class:`medreward.runner.Scorer` (one per spec per process), so the
same rollout gets the same reward everywhere. Docs: ``docs/integrations.md``.

The registry below maps trainer-side names (verl's ``data_source``, a spec name given to any
adapter) to specs; every preset is registered under its own name.
"""

from ._common import (
    ENV_SPEC,
    UnknownDataSourceError,
    coerce_reference,
    data_sources,
    register_data_source,
    resolve_data_source,
    unregister_data_source,
)

__all__ = [
    "ENV_SPEC",
    "UnknownDataSourceError",
    "coerce_reference",
    "data_sources",
    "register_data_source",
    "resolve_data_source",
    "unregister_data_source",
]
