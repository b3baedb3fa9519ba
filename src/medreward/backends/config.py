"""How a spec declares a backend: the ``[backends.NAME]`` tables (docs/contracts.md#model-backed-rewards).

.. code-block:: toml

    [backends.judge]
    kind = "openai"                       # openai | transformers | sentence_transformers
    base_url = "http://127.0.0.1:8080/v1" # or MEDREWARD_JUDGE_BASE_URL, or --backend-url
    model = "my-judge"
    api_key_env = "OPENAI_API_KEY"        # the NAME of an environment variable, never the key
    max_concurrency = 32
    requests_per_minute = 600
    timeout_s = 60
    max_retries = 3
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CPU_BATCH_TOKENS", "GPU_BATCH_TOKENS", "BackendConfig", "base_url_env"]

#: Default token budget per forward pass of a local model on a GPU (rows × longest row).
GPU_BATCH_TOKENS = 16_384
#: The same on the CPU, where padding costs more than a larger batch gains.
CPU_BATCH_TOKENS = 1536

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def base_url_env(name: str) -> str:
    """The environment variable that overrides backend ``name``'s ``base_url``: ``MEDREWARD_<NAME>_BASE_URL``."""
    return "MEDREWARD_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_BASE_URL"


class BackendConfig(BaseModel):
    """One backend of a spec. Unknown fields are errors; values are frozen (a spec is data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai", "transformers", "sentence_transformers"]
    model: str = Field(min_length=1, description="Served model name, or a local path / offline package name.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1.")
    api_key_env: str | None = Field(default=None, description="NAME of the environment variable holding the key.")
    max_concurrency: int = Field(default=32, ge=1, le=4096)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    circuit_failures: int = Field(default=5, ge=1, description="Consecutive connection failures that open the circuit.")
    circuit_reset_s: float = Field(default=30.0, gt=0, description="Seconds the circuit stays open before one trial call.")
    max_context_tokens: int | None = Field(default=None, ge=16, description="Cut prompts to fit (recorded in info).")
    batch_size: int = Field(default=8, ge=1, description="transformers: prompts per generate() call.")
    max_batch_tokens: int | None = Field(
        default=None,
        ge=16,
        description="local models: rows x longest row per forward pass (token-budget batching); "
        "default 16384 on a GPU, 1536 on the CPU (see batch_tokens).",
    )
    device: str | None = Field(default=None, description="local models: 'cpu', 'cuda', 'cuda:1'... (default: cuda if available).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="local models: 'auto' is bfloat16 on a GPU, float32 on the CPU."
    )

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            # a key pasted here by mistake must not be echoed back in the message
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), not the key itself")
        return value

    def batch_tokens(self, device: str) -> int:
        """The token budget per forward pass on ``device``: ``max_batch_tokens`` when set, else
        :data:`GPU_BATCH_TOKENS` on an accelerator and :data:`CPU_BATCH_TOKENS` on the CPU. On the
        CPU a batch gains little from more rows (each row's matrix products already fill the
        cores) and pays for every padded token, so its budget is small (benchmarks/bench_batching.py,
        docs/performance.md)."""
        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return CPU_BATCH_TOKENS if str(device).split(":")[0] == "cpu" else GPU_BATCH_TOKENS

    def resolved(self, name: str, override_url: str | None = None) -> BackendConfig:
        """This config with ``base_url`` taken from ``override_url`` (``--backend-url``), else from
        ``MEDREWARD_<NAME>_BASE_URL``, else as written."""
        url = override_url or os.environ.get(base_url_env(name)) or self.base_url
        return self if url == self.base_url else self.model_copy(update={"base_url": url})

    def api_key(self) -> str | None:
        """The key, read from the environment at call time (never stored on the config)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None
