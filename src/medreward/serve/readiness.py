"""``GET /readyz``: the specs are loaded, and the model servers their backends call answer.

An ``openai`` backend is reachable when ``GET <base_url>/models`` answers within two seconds with
any status but 502, 503 or 504 (a 401 or 404 still proves the server is up; a proxy whose model
is down answers 502/504, and llama.cpp answers 503 while it loads the model). Local backends (``transformers``,
``sentence_transformers``) load in this process and are reported as ``local``. Results are cached
for a few seconds, so probes every second do not flood the model server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..backends.config import BackendConfig
from .routing import Router

__all__ = ["Readiness"]


class Readiness:
    """Cached reachability of every route's backends."""

    def __init__(self, router: Router, *, ttl: float = 5.0, timeout: float = 2.0) -> None:
        self.router = router
        self.ttl = ttl
        self.timeout = timeout
        self._checked_at = -float("inf")
        self._report: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    def _endpoints(self) -> dict[str, tuple[BackendConfig, str | None]]:
        """``route/backend`` → (its config with the URL resolved, the URL to probe or None for local)."""
        out: dict[str, tuple[BackendConfig, str | None]] = {}
        for name, route in self.router.routes.items():
            for backend, config in route.spec.backends.items():
                resolved = config.resolved(backend)
                url = resolved.base_url.rstrip("/") + "/models" if resolved.kind == "openai" and resolved.base_url else None
                out[f"{name}/{backend}"] = (resolved, url)
        return out

    async def report(self) -> dict[str, Any]:
        """``{"ready": bool, "specs": [...], "backends": {route/backend: "ok" | "local" | "unreachable: ..."}}``."""
        async with self._lock:
            if self._report is None or time.monotonic() - self._checked_at > self.ttl:
                self._report = await self._check()
                self._checked_at = time.monotonic()
            return self._report

    async def _check(self) -> dict[str, Any]:
        endpoints = self._endpoints()
        states: dict[str, str] = {}
        probes = {key: url for key, (_, url) in endpoints.items() if url}
        for key, (_, url) in endpoints.items():
            if url is None:
                states[key] = "local"
        if probes:
            import aiohttp  # the judge extra: a spec with an openai backend needs it anyway

            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
                results = await asyncio.gather(*(self._probe(session, endpoints[k][0], u) for k, u in probes.items()))
            states.update(zip(probes, results))
        return {
            "ready": all(s in ("ok", "local") for s in states.values()),
            "specs": self.router.names,
            "backends": states,
        }

    @staticmethod
    async def _probe(session: Any, config: BackendConfig, url: str) -> str:
        key = config.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            async with session.get(url, headers=headers) as response:
                status = response.status
        except Exception as exc:  # noqa: BLE001 - any failure to connect means unreachable
            return f"unreachable: {type(exc).__name__}"
        return f"unreachable: HTTP {status}" if status in (502, 503, 504) else "ok"
