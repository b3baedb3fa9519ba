"""Turning per-component scores into one reward per sample, as a spec says.

Rules (docs/contracts.md#scored-record-output):

* a component that errored or timed out on a sample makes that sample's status ``error``
  (or ``timeout``) and its reward ``None`` — never a silent 0; the other components' values
  are still reported;
* ``not_applicable`` components are left out of the sum (TRL's ``nansum``); a sample on
  which no component applies is ``not_applicable`` with reward ``None``;
* a gate component whose value is below its ``gate_min`` sets the reward to ``spec.floor``
  (e.g. bad format → 0) and records ``info["gated_by"]``;
* ``weighted_sum``: ``Σ w_k v_k``; ``normalize_then_sum``: GDPO over the batch's GRPO groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..records import ComponentScore, Rollout, ScoredRecord, Status
from .spec import Spec

__all__ = ["combine"]


def combine(
    spec: Spec,
    rollouts: Sequence[Rollout],
    scores: Sequence[Sequence[ComponentScore]],
) -> list[ScoredRecord]:
    """Build scored records from ``scores[k][i]`` (component k, sample i)."""
    names = spec.component_names
    named = [(c.name, c.weight) for c in spec.components]
    gates = [(k, c.gate_min) for k, c in enumerate(spec.components) if c.gate]
    ok, floor = Status.OK, float(spec.floor)
    out: list[ScoredRecord] = []
    append = out.append
    for rollout, per in zip(rollouts, zip(*scores)):
        # one pass per sample: values, infos and the weighted sum of the ok components
        components: dict[str, float | None] = {}
        info: dict[str, Any] = {}
        reward, n_ok = 0.0, 0
        for (name, weight), score in zip(named, per):
            value = components[name] = score.value
            if score.info:
                info[name] = score.info
            if score.status is ok:
                reward += weight * value  # type: ignore[operator]
                n_ok += 1
        record = rollout.record_dict()
        if n_ok < len(per):
            failed = [(name, s) for name, s in zip(names, per) if s.status in (Status.ERROR, Status.TIMEOUT)]
            if failed:
                status = Status.ERROR if any(s.status is Status.ERROR for _, s in failed) else Status.TIMEOUT
                info["error"] = "; ".join(f"{name}: {s.info.get('error', s.status.value)}" for name, s in failed)
                append(ScoredRecord(record, None, components, status, info))
                continue
            if not n_ok:
                append(ScoredRecord(record, None, components, Status.NOT_APPLICABLE, info))
                continue
        for k, gate_min in gates:
            gate = per[k]
            if gate.status is ok and gate.value < gate_min:
                reward = floor
                info["gated_by"] = names[k]
                break
        append(ScoredRecord(record, reward, components, ok, info))
    if spec.aggregate == "normalize_then_sum":
        _apply_gdpo(spec, rollouts, out)
    return out


def _apply_gdpo(spec: Spec, rollouts: Sequence[Rollout], records: list[ScoredRecord]) -> None:
    """Replace the weighted sums of ``ok`` samples with the GDPO aggregate over the batch."""
    import numpy as np  # only GDPO specs need it: `medreward score` and worker processes start faster

    from .aggregate import group_index, normalize_then_sum

    ok = [i for i, r in enumerate(records) if r.status is Status.OK]
    if not ok:
        return
    names = spec.component_names
    matrix = np.array(
        [[np.nan if records[i].components[n] is None else records[i].components[n] for n in names] for i in ok],
        dtype=np.float64,
    )
    groups = group_index([rollouts[i].group_key for i in ok])
    weights = np.array([c.weight for c in spec.components])
    total = normalize_then_sum(matrix, weights, groups, eps=spec.normalize_eps)
    for j, i in enumerate(ok):
        record = records[i]
        if "gated_by" in record.info:
            continue  # a failed gate keeps the floor: GDPO must not lift a malformed answer
        record.reward = float(total[j])
