"""A small loopback OpenAI-compatible chat-completions server for failure-path tests and benchmarks.

It answers ``POST /v1/chat/completions`` with ``"echo: <last message>"`` (with ``usage``), after
``delay_s`` seconds, one thread per connection (unlimited parallelism). What it does to a request
is chosen by directives in the last message's content, so each request of a concurrent batch can
get its own fault:

``@500`` / ``@429``         answer that status (``@429`` with ``Retry-After: <retry_after>``)
``@500*2`` / ``@429*3``     that status for the first N attempts of this exact message, then answer
``@retry_after=1.5``         the Retry-After value (seconds, or ``@retry_after=date:2`` for an HTTP date 2 s ahead)
``@malformed``               200 with a body that is not JSON
``@truncated``               200 with the JSON body cut in half (a consistent Content-Length)
``@short``                   200 whose Content-Length promises more bytes than are sent, then close
``@drop`` / ``@drop*1``      close the connection without answering
``@sleep=2``                 wait that many seconds before answering
``@length``                  answer with ``finish_reason: "length"``
``@echo_headers``            answer 400 with the request's headers in the error body
``@nochoices``               200 with valid JSON that is not a chat completion

``reject`` (a set of ``"response_format"`` / ``"logprobs"``) makes the server answer 400 to
requests that use those features, naming them; ``"json_schema"`` in it makes the server answer 500
to OpenAI's ``json_schema`` form of ``response_format`` only, as llama.cpp's server does. The server records the most requests in flight
at once, the arrival time of every request, and the bodies and headers it got.

Run it alone (for benchmarks): ``python tests/backends/fake_openai_server.py --delay 0.2`` prints
``PORT <n>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_DIRECTIVE = re.compile(r"@(\w+)(?:=([\w.:]+))?(?:\*(\d+))?")


class FakeOpenAIServer:
    """Start with :meth:`start` (or as a context manager); ``url`` is the ``/v1`` base URL."""

    def __init__(self, *, delay_s: float = 0.0, retry_after: str = "0.2") -> None:
        self.delay_s = delay_s
        self.retry_after = retry_after
        self.reject: set[str] = set()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[float] = []  # time.monotonic() at each request
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts: Counter[str] = Counter()  # per message content
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeOpenAIServer:
        server = self

        class Handler(_Handler):
            fake = server

        httpd = _QuietServer(("127.0.0.1", port), Handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.request_queue_size = 1024
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        return len(self.arrivals)

    def max_in_window(self, window_s: float) -> int:
        """The most requests that arrived within any ``window_s`` seconds."""
        times = sorted(self.arrivals)
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] < t - window_s + 1e-9:
                j += 1
            best = max(best, i - j + 1)
        return best


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (its timeout) closes the connection before the late answer is
        # written: expected in the timeout tests, not worth a traceback on stderr
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: Nagle + delayed ACK adds 40 ms
    fake: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        fake = self.fake
        with fake.lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            fake.arrivals.append(time.monotonic())
        try:
            self._serve()
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _serve(self) -> None:
        fake = self.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.loads(raw)
        headers = {k: v for k, v in self.headers.items()}
        content = str(body["messages"][-1]["content"])
        with fake.lock:
            fake.bodies.append(body)
            fake.headers.append(headers)
            fake.attempts[content] += 1
            attempt = fake.attempts[content]
        directives = {m.group(1): (m.group(2), int(m.group(3)) if m.group(3) else None) for m in _DIRECTIVE.finditer(content)}

        def active(name: str) -> bool:
            if name not in directives:
                return False
            times = directives[name][1]
            return times is None or attempt <= times

        if fake.delay_s:
            time.sleep(fake.delay_s)
        if "sleep" in directives:
            time.sleep(float(directives["sleep"][0] or 0))
        form = body.get("response_format", {}).get("type") if isinstance(body.get("response_format"), dict) else None
        if "json_schema" in fake.reject and form == "json_schema":  # llama-cpp-python's answer, verbatim in substance
            return self._json(500, {"error": {"message": "1 validation error for CreateChatCompletionRequest\n"
                                              "response_format.type\n  Input should be 'text' or 'json_object'"}})
        rejected = [f for f in sorted(fake.reject - {"json_schema"}) if f in body]
        if rejected:
            return self._json(400, {"error": {"message": f"unsupported parameter(s): {', '.join(rejected)}"}})
        if active("drop"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        for status in ("429", "500", "502", "503"):
            if active(status):
                retry_after = directives.get("retry_after", (fake.retry_after, None))[0] or fake.retry_after
                if retry_after.startswith("date:"):
                    retry_after = formatdate(time.time() + float(retry_after[5:]), usegmt=True)
                extra = {"Retry-After": retry_after} if status == "429" or "retry_after" in directives else {}
                return self._json(int(status), {"error": {"message": f"fake {status}"}}, extra)
        if "echo_headers" in directives:
            auth = headers.get("Authorization", "")
            return self._json(400, {"error": {"message": f"bad request; you sent Authorization: {auth}", "headers": headers}})
        if "malformed" in directives:
            return self._bytes(200, b"<html>502 Bad Gateway</html>")
        if "nochoices" in directives:
            return self._json(200, {"object": "chat.completion", "choices": []})
        answer = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "echo: " + content[:200]},
                    "finish_reason": "length" if "length" in directives else "stop",
                }
            ],
            "usage": {"prompt_tokens": len(raw) // 4, "completion_tokens": 7, "total_tokens": len(raw) // 4 + 7},
        }
        if body.get("logprobs"):
            answer["choices"][0]["logprobs"] = {
                "content": [
                    {
                        "token": "YES",
                        "logprob": -0.1,
                        "top_logprobs": [{"token": "YES", "logprob": -0.1}, {"token": "NO", "logprob": -2.4}],
                    }
                ]
            }
        data = json.dumps(answer).encode()
        if "truncated" in directives:
            return self._bytes(200, data[: len(data) // 2])
        if "short" in directives:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) * 2))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        return self._bytes(200, data)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._bytes(status, json.dumps(payload).encode(), headers)

    def _bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def free_port() -> int:
    """A loopback port nothing listens on (for "server down" tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(delay_s=args.delay).start(args.port)
    print(f"PORT {server.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
