"""Several specs in one server: routes by name, and which route scores each record.

A route is a name (``--spec tox=toxicology`` → ``tox``; ``--spec toxicology`` → the spec's name)
with its spec and the process-wide shared scorer of that spec
(:func:`medreward.integrations.scorers.get_scorer`: one per spec per process, thread-safe, and
the same one the ``/get_reward`` adapter scores with).

A record of ``POST /v1/score`` goes to the route its ``task`` names: a route's name, or else the
``task`` of a route's spec. A record without a task goes to the only route when there is one. A
task that names no route (or no task with several routes) is the client's mistake: the request is
answered 422 with the known routes. ``POST /v1/score/{name}`` scores every record with that route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..compose.spec import Spec
from ..integrations.openrlhf import OpenRLHFReward
from ..integrations.registry import load_spec_like
from ..integrations.scorers import SharedScorer, get_scorer
from .responses import ApiError

__all__ = ["Route", "Router", "parse_spec_option"]


def parse_spec_option(value: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` → ``(NAME, SPEC)``; a bare ``SPEC`` → ``(None, SPEC)`` (named after the spec).

    >>> parse_spec_option("tox=toxicology"), parse_spec_option("mcq"), parse_spec_option("specs/a=b.toml")
    (('tox', 'toxicology'), (None, 'mcq'), (None, 'specs/a=b.toml'))
    """
    name, sep, spec = value.partition("=")
    if sep and name and spec and name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        return name, spec
    return None, value


@dataclass(frozen=True)
class Route:
    """One spec served under ``name``."""

    name: str
    spec: Spec
    time_limit: float | None

    @property
    def scorer(self) -> SharedScorer:
        """The process-wide shared scorer of this spec (built once, on the first call)."""
        return get_scorer(self.spec, time_limit=self.time_limit)


class Router:
    """The routes of one server and the record → route decision (see the module docstring)."""

    def __init__(self, specs: Mapping[str, str], *, time_limit: float | None) -> None:
        if not specs:
            raise ValueError("serve at least one spec")
        self.routes: dict[str, Route] = {}
        for name, source in specs.items():
            self.routes[name] = Route(name, load_spec_like(source), time_limit)
        self._by_task: dict[str, Route] = {}
        for route in self.routes.values():  # a route's name wins over another spec's task
            if route.spec.task and route.spec.task not in self.routes:
                self._by_task.setdefault(route.spec.task, route)
        self.time_limit = time_limit
        self.openrlhf = self._openrlhf_all()
        self.openrlhf_by_route = {
            name: OpenRLHFReward(route.spec, time_limit=time_limit, as_tensors=False) for name, route in self.routes.items()
        }

    def _openrlhf_all(self) -> OpenRLHFReward:
        if len(self.routes) == 1:
            [route] = self.routes.values()
            return OpenRLHFReward(route.spec, time_limit=self.time_limit, as_tensors=False)
        # labels name their route: {"task": "<route>", ...}
        return OpenRLHFReward(None, tasks={n: r.spec for n, r in self.routes.items()},
                              time_limit=self.time_limit, as_tensors=False)  # fmt: skip

    @property
    def names(self) -> list[str]:
        return list(self.routes)

    def known(self) -> dict[str, Any]:
        """What an error about routing lists: the route names and the tasks they accept."""
        return {"routes": self.names, "tasks": sorted({*self.routes, *self._by_task})}

    def route(self, name: str) -> Route:
        """The route called ``name`` (404 when there is none)."""
        route = self.routes.get(name)
        if route is None:
            raise ApiError(404, "unknown_route", f"no spec is served as {name!r}; known: {', '.join(self.names)}", **self.known())
        return route

    def split(self, records: Sequence[Any]) -> list[tuple[Route, list[int], list[Any]]]:
        """Group ``records`` by route: ``(route, positions, records)`` per route used."""
        only = next(iter(self.routes.values())) if len(self.routes) == 1 else None
        groups: dict[str, tuple[Route, list[int], list[Any]]] = {}
        for i, record in enumerate(records):
            task = record.get("task") if isinstance(record, dict) else None
            if isinstance(task, str):
                route = self.routes.get(task) or self._by_task.get(task)
                if route is None:
                    raise ApiError(422, "unknown_task", f"record {i}: task {task!r} is not served; known: "
                                   f"{', '.join(self.known()['tasks'])} (or POST /v1/score/{{name}})", **self.known())  # fmt: skip
            elif only is not None:
                route = only
            else:
                raise ApiError(422, "no_task", f"record {i} names no task and {len(self.routes)} specs are served: give "
                               "each record a 'task', or POST to /v1/score/{name}", **self.known())  # fmt: skip
            group = groups.get(route.name)
            if group is None:
                group = groups[route.name] = (route, [], [])
            group[1].append(i)
            group[2].append(record)
        return list(groups.values())
