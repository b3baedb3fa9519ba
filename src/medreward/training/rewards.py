"""The GRPO reward function of the recipe: medreward's TRL adapter, routed per task, with what the
curricula and the plots need.

:class:`TrainingReward` is :class:`~medreward.integrations.trl.TRLTaskRouter` (one spec per task,
each row scored by its ``task`` column; TRL logs ``rewards/medreward/mean`` and the adapter logs
``medreward/<spec>/<component>/mean`` per component) that also

* keeps the scored records of each call until the threshold curriculum reads them
  (:meth:`take_records`);
* logs, through TRL's ``log_metric``, the label counts of label tasks (toxicology, ICD):
  ``medreward/labels/predicted_mean``, ``medreward/labels/reference_mean`` and their ratio
  ``medreward/labels/hedge_ratio`` (> 1: more labels than the references hold), and whatever
  :attr:`extra_metrics` holds (the curriculum's ``curriculum/threshold`` and ``curriculum/pass_rate``);
* can change one parameter of one component of a task's spec between steps (:meth:`set_param`),
  which is how the threshold curriculum moves a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medreward.compose.spec import Spec
from medreward.integrations.trl import TRLTaskRouter
from medreward.records import ScoredRecord

__all__ = ["TrainingReward", "label_counts"]


def label_counts(record: ScoredRecord) -> tuple[int, int] | None:
    """``(predicted, reference)`` label counts of a label component's info (``predicted``,
    ``missed``, ``hallucinated`` lists), or ``None`` when the record has none."""
    for info in record.info.values():
        if isinstance(info, Mapping) and isinstance(info.get("predicted"), list) and isinstance(info.get("missed"), list):
            predicted = len(info["predicted"])
            hallucinated = len(info.get("hallucinated") or ())
            return predicted, predicted - hallucinated + len(info["missed"])
    return None


class TrainingReward(TRLTaskRouter):
    """See the module docstring. ``specs``: ``{task: Spec}``."""

    def __init__(self, specs: Mapping[str, Spec], *, name: str = "medreward", **options: Any) -> None:
        super().__init__(dict(specs), name=name, **options)
        self.extra_metrics: dict[str, float] = {}
        self._records: list[tuple[str, ScoredRecord]] = []

    @property
    def specs(self) -> dict[str, Spec]:
        return dict(self._allowed or {})  # type: ignore[arg-type]

    def _finish(self, groups: list[Any], kwargs: Mapping[str, Any]) -> list[float | None]:
        rewards = super()._finish(groups, kwargs)
        batch: list[ScoredRecord] = []
        for member, _, (records, _) in groups:
            task = member.__name__.split("/", 1)[1]
            self._records.extend((task, r) for r in records)
            batch.extend(records)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            counts = [c for c in map(label_counts, batch) if c is not None]
            if counts:
                predicted = sum(p for p, _ in counts) / len(counts)
                reference = sum(r for _, r in counts) / len(counts)
                log_metric("medreward/labels/predicted_mean", predicted)
                log_metric("medreward/labels/reference_mean", reference)
                if reference > 0:
                    log_metric("medreward/labels/hedge_ratio", predicted / reference)
            for key, value in self.extra_metrics.items():
                log_metric(key, value)
        return rewards

    def take_records(self) -> list[tuple[str, ScoredRecord]]:
        """The ``(task, record)`` pairs scored since the last call."""
        out, self._records = self._records, []
        return out

    def set_param(self, task: str, component: str, param: str, value: Any) -> None:
        """Set ``params[param]`` of ``component`` in ``task``'s spec (validated as at spec load)."""
        spec = self.specs[task]
        data = spec.to_dict()
        for c in data["components"]:
            if c["name"] == component:
                c["params"] = {**c.get("params", {}), param: value}
                break
        else:
            raise ValueError(f"spec {spec.name!r} has no component {component!r}; components: {', '.join(spec.component_names)}")
        new = Spec.from_dict(data, source=f"spec {spec.name!r} ({component}.{param} = {value!r})")
        assert self._allowed is not None
        self._allowed[task] = new
        self._members.pop(task, None)
        self._member(task)  # build now: a bad value fails here, not inside TRL's step
