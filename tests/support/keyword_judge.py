"""A deterministic in-process judge for the presets' tests (``healthbench``, ``medix``): it reads
the prompts the ``rubric`` and ``judge`` components write and answers by a rule a test can compute
by hand, so a preset can be scored end to end without a model server.

Rules (case-insensitive; "the response" is the text between the data markers):

* rubric, batched or per criterion: a criterion is met iff the phrase it quotes in double quotes
  (``Advises calling "emergency services"``) occurs in the response; a criterion quoting nothing
  is never met. Answers are HealthBench's JSON (``{"verdicts": [...]}`` or ``{"explanation",
  "criteria_met"}``).
* YES/NO judge: ``YES`` iff the reference answer occurs in the response.

``build_keyword_judge`` is a module-level ``backend_factory`` for :class:`medreward.runner.Scorer`,
so worker processes can build it too. Every instance counts its calls in ``stats``.
``KeywordJudgeServer`` answers by the same rules over HTTP (a loopback OpenAI-compatible
``/v1/chat/completions``), for tests of ``medreward score --backend-url``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from medreward.backends import BackendConfig, BackendFailure, BackendStats, ChatRequest, ChatResponse
from medreward.backends.base import ResponseCache
from medreward.rewards.judge_prompts import BEGIN, END

_BATCHED_ITEM = re.compile(r"^- (\S+): \[[^\]]*\] (.*)$", re.MULTILINE)
_ONE_ITEM = re.compile(r"# Rubric item\n\[[^\]]*\] (.*)\n")
_QUOTED = re.compile(r'"([^"]+)"')
_REFERENCE = re.compile(r"Reference answer:\n(.*?)\n\n", re.DOTALL)


def _response(text: str) -> str:
    start = text.find(BEGIN)
    end = text.find(END, start + len(BEGIN))
    return text[start + len(BEGIN) : end].lower() if start >= 0 and end >= 0 else ""


def criterion_met(criterion: str, response: str) -> bool:
    """The rule: the criterion's quoted phrase occurs in the response (both lower-cased)."""
    quoted = _QUOTED.findall(criterion)
    return bool(quoted) and quoted[-1].lower() in response.lower()


def answer(request: ChatRequest) -> str:
    """The judge's answer text for one request."""
    return answer_text(request.messages[-1]["content"])


def answer_text(text: str) -> str:
    """The judge's answer to a prompt (the last user message), told apart by its wording."""
    response = _response(text)
    if "# Rubric items\n" in text:
        verdicts = [
            {"id": cid, "explanation": "keyword rule", "criteria_met": criterion_met(criterion, response)}
            for cid, criterion in _BATCHED_ITEM.findall(text)
        ]
        return json.dumps({"verdicts": verdicts})
    if "# Rubric item\n" in text:
        match = _ONE_ITEM.search(text)
        met = match is not None and criterion_met(match.group(1), response)
        return json.dumps({"explanation": "keyword rule", "criteria_met": met})
    match = _REFERENCE.search(text)
    return "YES" if match is not None and match.group(1).strip().lower() in response else "NO"


class KeywordJudge:
    """See the module docstring. ``built`` lists the instances made in this process."""

    built: ClassVar[list[KeywordJudge]] = []
    kind = "openai"

    def __init__(self, name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> None:
        self.name = name
        self.model = config.model
        self.config = config
        self.stats = BackendStats()
        self.requests: list[ChatRequest] = []
        KeywordJudge.built.append(self)

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        out: list[ChatResponse | BackendFailure] = []
        for request in requests:
            self.requests.append(request)
            text = answer(request)
            prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
            response = ChatResponse(text, self.model, "stop", prompt_tokens=prompt_tokens,
                                    completion_tokens=len(text.split()), latency_s=0.0)  # fmt: skip
            self.stats.record(response)
            out.append(response)
        return out

    def forget(self, requests: Sequence[ChatRequest]) -> None:
        pass

    def close(self) -> None:
        pass


def build_keyword_judge(name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> KeywordJudge:
    """A ``backend_factory`` for :class:`medreward.runner.Scorer`."""
    return KeywordJudge(name, config, cache=cache)


class KeywordJudgeServer:
    """The keyword judge behind a loopback OpenAI-compatible server (a context manager); ``url`` is
    the ``/v1`` base URL, ``requests`` counts the chat completions it answered."""

    def __init__(self) -> None:
        self.requests = 0
        self.models: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                text = answer_text(str(body["messages"][-1]["content"]))
                with server._lock:
                    server.requests += 1
                    server.models.append(body.get("model", ""))
                data = json.dumps({
                    "id": "chatcmpl-keyword", "object": "chat.completion", "model": body.get("model", ""),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> KeywordJudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
