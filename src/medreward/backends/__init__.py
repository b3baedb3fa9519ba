"""Model backends: the only code that talks to a model (OpenAI-compatible servers, local
transformers models), with a persistent cache, limits, retries and accounting."""

from .base import Backend, BackendFailure, BackendStats, ChatRequest, ChatResponse, TokenLogprob
from .config import BackendConfig, base_url_env

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendFailure",
    "BackendStats",
    "ChatRequest",
    "ChatResponse",
    "TokenLogprob",
    "base_url_env",
]
