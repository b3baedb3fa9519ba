"""Stopping a scoring run from outside: SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["sigterm_as_interrupt"]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C does.

    So ``kill PID`` unwinds the run as Ctrl-C does: ``finally`` blocks run, the output written so
    far is closed properly, and the worker pool is shut down, instead of the process ending on
    the spot. (Workers also exit by themselves when their parent dies: see ``runner.pool``.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
