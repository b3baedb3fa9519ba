"""What one ``medreward serve`` process is configured with (:class:`ServeConfig`), and how the
configuration reaches uvicorn's worker processes (an environment variable; the API key travels
in its own variable and is never part of the JSON or of any ``repr``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..compose.spec import Spec

__all__ = ["API_KEY_ENV", "CONFIG_ENV", "ServeConfig", "default_threads"]

#: The API key of the server (or ``--api-key-file``).
API_KEY_ENV = "MEDREWARD_API_KEY"
#: How ``medreward serve`` hands its configuration to the app factory in each uvicorn worker.
CONFIG_ENV = "MEDREWARD_SERVE_CONFIG"


def default_threads(specs: Sequence[Spec]) -> int:
    """Scoring threads per process when ``--threads`` is not given: 8 when a spec calls model
    backends (a thread waits on a judge while others score), else 2. With rule-based specs the
    threads share one core (the GIL), and fewer threads score larger groups of queued requests
    (docs/serving.md#performance); the second thread keeps a sample that runs to its time limit
    from holding up every request."""
    return 8 if any(spec.backends for spec in specs) else 2


@dataclass(frozen=True)
class ServeConfig:
    """One server's settings.

    Args:
        specs: route name → spec (preset / registered name or TOML path), in order; the first is
            the default of requests that name no route when it is the only one.
        api_key: the key every scoring request must present (``None``: no authentication; only
            allowed on a loopback address, see :func:`medreward.serve.auth.check_bind`).
        max_body_bytes: the largest request body read; a larger one is answered 413 unread.
        max_rollouts: the most rollouts (records, queries) one request may carry (413 beyond).
        time_limit: seconds one component may spend on one sample (the Scorer's limit: a hanging
            component gives ``timeout`` statuses).
        threads: scoring threads (scoring runs off the event loop, so health checks answer under load).
        coalesce: score the requests that queue while every scoring thread is busy together, one
            scorer call per spec (:mod:`medreward.serve.coalesce`); ``False``: one call per request.
        body_timeout: seconds a client may take to send its whole body (slow clients get 408).
    """

    specs: dict[str, str]
    api_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = 32 * 2**20
    max_rollouts: int = 4096
    time_limit: float | None = 10.0
    threads: int = 8
    body_timeout: float = 30.0
    coalesce: bool = True

    def to_env(self) -> str:
        """The JSON that :meth:`from_env` reads back, without the key."""
        data = asdict(self)
        data.pop("api_key")
        return json.dumps(data)

    @classmethod
    def from_env(cls, environ: Any = None) -> ServeConfig:
        """The configuration ``medreward serve`` put in :data:`CONFIG_ENV`, with the key of :data:`API_KEY_ENV`."""
        environ = os.environ if environ is None else environ
        raw = environ.get(CONFIG_ENV)
        if not raw:
            raise RuntimeError(f"${CONFIG_ENV} is not set: start the server with `medreward serve`")
        data = json.loads(raw)
        return cls(**data, api_key=environ.get(API_KEY_ENV) or None)
