"""``medreward serve``: the reward engine as an HTTP service (FastAPI + uvicorn; the ``serve`` extra).

Endpoints, authentication, limits and metrics: docs/serving.md. :func:`create_app` builds the ASGI
app for a :class:`ServeConfig`; the ``medreward serve`` command runs it with uvicorn.
"""

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(config: ServeConfig):  # noqa: ANN201 - the ASGI app; fastapi is imported only here
    """The ASGI app serving ``config`` (see :mod:`medreward.serve.app`)."""
    from .app import create_app as _create

    return _create(config)
