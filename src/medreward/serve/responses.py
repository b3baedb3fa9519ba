"""JSON responses: fast serialisation (orjson) and the one shape of every error,
``{"error": {"code": ..., "message": ...}}`` — never a traceback or a file path."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["ApiError", "error_body", "json_response"]


class ApiError(Exception):
    """A request the server answers with an error status and a JSON message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """The JSON body of an error."""
    return orjson.dumps({"error": {"code": code, "message": message, **extra}})


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as JSON (non-finite floats become ``null``, as JSON has none)."""
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)  # fmt: skip


def api_error_response(exc: ApiError) -> Response:
    """The response of an :class:`ApiError`."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return Response(error_body(exc.code, exc.message, **exc.extra), status_code=exc.status,
                    media_type="application/json", headers=headers)  # fmt: skip
