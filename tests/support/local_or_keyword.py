"""A ``backend_factory`` for presets that mix a judge server with a local model (``medix_semantic``):
local kinds (``sentence_transformers``, ``transformers``) get the real backend, every other backend the
deterministic keyword judge (keyword_judge.py). Module-level, so worker processes can build it too."""

from __future__ import annotations

from typing import Any

from keyword_judge import build_keyword_judge

from medreward.backends.base import ResponseCache
from medreward.backends.config import BackendConfig
from medreward.backends.factory import build_backend

LOCAL_KINDS = frozenset({"sentence_transformers", "transformers"})


def build_local_or_keyword(name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> Any:
    """The real backend for local models, the keyword judge for the rest."""
    if config.kind in LOCAL_KINDS:
        return build_backend(name, config, cache=cache)
    return build_keyword_judge(name, config, cache=cache)
