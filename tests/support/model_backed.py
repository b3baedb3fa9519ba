"""A tiny model backend and a component that calls it, for the wiring tests (spec, Scorer, CLI,
adapters), so that they need no HTTP server and none of the real backends.

``RecordingBackend`` follows the :class:`medreward.backends.Backend` protocol: it answers ``YES``
when the user message contains ``yes`` and ``NO`` otherwise, uses the response cache it is given
(a hit makes no call), accounts every answer in ``stats``, and records where it was built. Its
answer's ``model`` is ``"<model>@<base_url>"`` so a test can see which endpoint a sample reached,
also from a worker process. A user message containing ``fail`` gets a :class:`BackendFailure`.

``YesJudge`` (``model_backed:YesJudge``) scores 1.0 for ``YES``, 0.0 for ``NO``, and puts the
answer's model, the process id and the backend's name in ``info``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from medreward.backends import BackendConfig, BackendFailure, ChatRequest, ChatResponse
from medreward.backends.base import ResponseCache
from medreward.backends.caching import CachingBackend
from medreward.records import ComponentScore, Rollout, Status
from medreward.rewards.base import ComponentParams, RewardComponent


class RecordingBackend(CachingBackend):
    """See the module docstring. ``built`` lists every instance made in this process. The cache
    and the accounting are the real ones of :class:`~medreward.backends.caching.CachingBackend`."""

    built: ClassVar[list[RecordingBackend]] = []
    kind = "openai"

    def __init__(self, name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> None:
        super().__init__(name, config, cache=cache)
        self.closed = False
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()
        RecordingBackend.built.append(self)

    def _call(self, requests: list[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        out: list[ChatResponse | BackendFailure] = []
        for request in requests:
            text = request.messages[-1]["content"].lower()
            result: ChatResponse | BackendFailure
            if "fail" in text:
                result = BackendFailure("http", "HTTP 500 after 2 retries", retries=2)
            else:
                answer = "YES" if "yes" in text else "NO"
                result = ChatResponse(
                    answer, f"{self.model}@{self.config.base_url}", "stop",
                    prompt_tokens=len(text.split()), completion_tokens=1, latency_s=0.001,
                )  # fmt: skip
            with self._lock:
                self.requests.append(request)
            out.append(result)
        return out

    def close(self) -> None:
        self.closed = True


def build_recording_backend(name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> RecordingBackend:
    """A ``backend_factory`` for :class:`medreward.runner.Scorer` (picklable: worker processes use it)."""
    return RecordingBackend(name, config, cache=cache)


class DictCache:
    """An in-memory :class:`ResponseCache`."""

    def __init__(self) -> None:
        self.data: dict[str, ChatResponse] = {}
        self.closed = False

    def get(self, key: str) -> ChatResponse | None:
        return self.data.get(key)

    def put(self, key: str, response: ChatResponse, *, kind: str = "") -> None:
        self.data[key] = response

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def close(self) -> None:
        self.closed = True


class YesJudge(RewardComponent):
    """1.0 when the backend answers YES about the completion, 0.0 for NO; a failed call is an error."""

    kind = "test.yes_judge"

    class Params(ComponentParams):
        backend: str = "judge"

    def setup(self) -> None:
        self._backend: Any = None

    def backend_names(self) -> tuple[str, ...]:
        return (self.params.backend,)

    def bind_backends(self, backends: Mapping[str, Any]) -> None:
        self._backend = backends[self.params.backend]

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        if self._backend is None:
            raise RuntimeError("no backend bound")
        requests = [
            ChatRequest(messages=({"role": "user", "content": r.completion_text},), template="test.yes/1") for r in rollouts
        ]
        out = []
        for response in self._backend.complete(requests):
            if isinstance(response, BackendFailure):
                out.append(ComponentScore.error(response.message, Status(response.status)))
                continue
            value = 1.0 if response.text == "YES" else 0.0
            out.append(ComponentScore.ok(value, model=response.model, pid=os.getpid(), backend=self.params.backend))
        return out


class GroupSizeSeen(RewardComponent):
    """The number of members of the record's GRPO group in the same batch (a component that, like
    ``pairwise``, compares a group's members: the runner must keep groups whole)."""

    kind = "test.group_size_seen"
    range = (0.0, 1000.0)

    @property
    def needs_whole_groups(self) -> bool:
        return True

    def score_batch(self, rollouts):
        sizes: dict[str, int] = {}
        for r in rollouts:
            sizes[r.group_key] = sizes.get(r.group_key, 0) + 1
        return [ComponentScore.ok(float(sizes[r.group_key])) for r in rollouts]
