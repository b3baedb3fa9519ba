"""End-to-end tests against the real llama.cpp server (fixture in tests/support/llama_server.py)."""

from llama_server import llama_server  # noqa: F401 - the session-scoped server fixture
