"""Build a backend from its spec table."""

from __future__ import annotations

import importlib

from ..errors import SpecError
from .base import Backend, ResponseCache
from .config import BackendConfig

__all__ = ["build_backend"]

#: kind -> "module:Class", imported on first use so the core install needs no HTTP or torch packages
_KINDS = {
    "openai": ("medreward.backends.openai", "OpenAIBackend", "judge"),
    "transformers": ("medreward.backends.transformers", "TransformersBackend", "models"),
    "sentence_transformers": ("medreward.backends.embeddings", "SentenceTransformersBackend", "models"),
}


def build_backend(name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> Backend:
    """The backend ``name`` declared by ``config`` (its ``base_url`` already resolved), using ``cache``."""
    module_name, class_name, extra = _KINDS[config.kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(
            f"backends.{name}: kind {config.kind!r} needs the {extra!r} extra: pip install 'medreward[{extra}]' ({exc})"
        ) from None
    return getattr(module, class_name)(name, config, cache=cache)
