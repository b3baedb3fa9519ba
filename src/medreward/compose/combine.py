"""Turning per-component scores into one reward per sample, as a spec says.

Rules (docs/contracts.md#scored-record-output):

* a component that errored or timed out on a sample makes that sample's status ``error``
  (or ``timeout``) and its reward ``None`` — never a silent 0; the other components' values
  are still reported;
* ``not_applicable`` components are left out of the sum (TRL's ``nansum``); a sample on
  which no component applies, or on which a required one does not (:meth:`Spec.requirements`:
  e.g. the reference lacks the answer), is ``not_applicable`` with reward ``None`` and
  ``info["reason"]`` saying why, its components' values still reported;
* a gate component whose value is below its ``gate_min`` sets the reward to ``spec.floor``
  (e.g. bad format → 0) and records ``info["gated_by"]``;
* ``weighted_sum``: ``Σ w_k v_k``; ``normalize_then_sum``: GDPO over the batch's GRPO groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..records import ComponentScore, Rollout, ScoredRecord, Status
from .spec import Requirements, Spec

__all__ = ["combine", "not_applicable_summary"]


def combine(
    spec: Spec,
    rollouts: Sequence[Rollout],
    scores: Sequence[Sequence[ComponentScore]],
) -> list[ScoredRecord]:
    """Build scored records from ``scores[k][i]`` (component k, sample i)."""
    names = spec.component_names
    named = [(c.name, c.weight) for c in spec.components]
    gates = [(k, c.gate_min) for k, c in enumerate(spec.components) if c.gate]
    needs = spec.requirements()
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
            reason = _unmet(needs, names, per) if n_ok else "no component applies"
            if reason is not None:
                info["reason"] = reason
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


def _unmet(needs: Requirements, names: Sequence[str], per: Sequence[ComponentScore]) -> str | None:
    """Why a sample whose components did not all apply gets no reward (``None``: it does)."""
    na = Status.NOT_APPLICABLE
    for k in needs.each:
        if per[k].status is na:
            return f"required component {names[k]!r} does not apply ({per[k].info.get('reason', 'no reason given')})"
    together = needs.together
    if together and all(per[k].status is na for k in together):
        listed = ", ".join(repr(names[k]) for k in together)
        first = per[together[0]].info.get("reason", "no reason given")
        return f"no answer component applies ({listed}; {first})"
    return None


def not_applicable_summary(records: Sequence[ScoredRecord]) -> tuple[int, str | None]:
    """How many records are ``not_applicable`` and the first one's reason (for one warning per batch).

    >>> not_applicable_summary([])
    (0, None)
    """
    na = Status.NOT_APPLICABLE
    count, first = 0, None
    for record in records:
        if record.status is na:
            count += 1
            if first is None:
                first = record.info.get("reason")
    return count, first


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
