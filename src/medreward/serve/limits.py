"""The request body limit, enforced while the body is read.

:class:`BodyLimit` is a plain ASGI middleware in front of the app. A ``Content-Length`` above the
limit is answered 413 before a byte of the body is read; a chunked body is counted as it arrives
and answered 413 as soon as it passes the limit (the rest is never read: the connection is
closed). A client that takes longer than ``timeout`` seconds to send its body gets 408, so slow
(slowloris-style) clients cannot hold scoring threads: the app sees only complete bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .responses import error_body

__all__ = ["BodyLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Read each HTTP request body here, at most ``max_bytes`` within ``timeout`` seconds, and hand
    the app a ``receive`` that replays it (one message)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await _reply(send, 413, "body_too_large", f"the request body ({length} bytes) is over the limit of {self.max_bytes} bytes")
            return
        body, problem = await self._read(receive)
        if problem is not None:
            status, code, message = problem
            await _reply(send, status, code, message)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect once the client goes

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> tuple[bytes, tuple[int, str, str] | None]:
        parts: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except asyncio.TimeoutError:
                return b"", (408, "body_timeout", f"the request body did not arrive within {self.timeout:g} s")
            if message["type"] == "http.disconnect":
                return b"", (400, "disconnected", "the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", (413, "body_too_large", f"the request body is over the limit of {self.max_bytes} bytes")
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = error_body(code, message)
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
