"""The real server: ``medreward serve`` in a subprocess on a free loopback port.

:func:`start_server` returns a :class:`Server` once ``/healthz`` answers (or raises with the
server's log when it exits first). tests/serve/conftest.py stops every server it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

SUPPORT = str(Path(__file__).resolve().parents[1] / "support")
KEY = "test-key-0123456789abcdef"  # long enough for check_bind


def require(module: str) -> None:
    """Skip the module's tests when ``module`` is missing, except under ``CI=true`` (then fail:
    CI installs the ``serve`` extra, and a skipped server test would hide that it did not)."""
    import importlib

    import pytest

    if os.environ.get("CI", "").lower() == "true":
        importlib.import_module(module)
    else:
        pytest.importorskip(module)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def launch(log: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None) -> Server:
    """Start ``medreward serve ARGS --port PORT`` without waiting."""
    port = free_port() if port is None else port
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([SUPPORT, os.environ.get("PYTHONPATH", "")]),
                   "NO_COLOR": "1", "COLUMNS": "200"}  # fmt: skip
    environment.pop("MEDREWARD_API_KEY", None)
    environment.update(env or {})
    handle = open(log, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "medreward.cli.app", "serve", "--port", str(port), *args],
        stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=environment,
    )  # fmt: skip
    handle.close()
    return Server(proc, port, log)


def wait_ready(server: Server, timeout: float = 90) -> Server:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {server.proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"the server did not answer within {timeout} s:\n{server.output()}")


def start_server(log: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None) -> Server:
    return wait_ready(launch(log, *args, port=port, env=env))


FAULTY_SPEC = """
name = "faulty"
task = "faulty"

[[components]]
name = "sleeps"
kind = "faulty_components:Sleeps"

[[components]]
name = "raises"
kind = "faulty_components:Raises"
"""


def raw_request(port: int, head: bytes, body_parts: Iterable[bytes] = (), *, timeout: float = 20) -> tuple[int, bytes, int]:
    """Send an HTTP request head, then body parts until the server answers; ``(status, response
    body, body bytes sent)``. The server answering while parts are left shows it did not read them."""
    import threading

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        received = bytearray()
        answered = threading.Event()

        def read() -> None:
            try:
                while b"\r\n\r\n" not in received or len(received) < _expected(bytes(received)):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received.extend(chunk)
                    answered.set()
            except OSError:
                pass
            answered.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        sent = 0
        try:
            sock.sendall(head)
            for part in body_parts:
                if answered.is_set():
                    break
                sock.sendall(part)
                sent += len(part)
        except OSError:  # the server closed the connection after answering
            pass
        reader.join(timeout)
    data = bytes(received)
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.partition(b"\r\n\r\n")[2], sent


def _expected(received: bytes) -> int:
    head, sep, _ = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + len(sep) + int(line.split(b":")[1])
    return len(received)


#: a judge spec whose endpoint (the discard port) every test overrides with MEDREWARD_JUDGE_BASE_URL
JUDGE_SPEC = """
name = "judged"

[backends.judge]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "medreward-judge"
max_retries = 0
timeout_s = 10

[[components]]
name = "judge"
kind = "judge"
"""
