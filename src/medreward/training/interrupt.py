"""Ctrl-C during training: finish the current step, save a checkpoint, stop (resumable with ``--resume``).

The first SIGINT sets a flag; at the end of the running optimizer step the callback asks the
Trainer to save and stop, so the checkpoint holds the model, optimizer, scheduler, RNG states and
``trainer_state.json`` of a finished step (and the callbacks' own ``on_save`` state, e.g. the
curriculum). A second SIGINT raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback

__all__ = ["InterruptCallback"]

log = logging.getLogger(__name__)


class InterruptCallback(TrainerCallback):
    """Turns a SIGINT into save-and-stop at the next step end (see the module docstring)."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None

    def request(self) -> None:
        """What the SIGINT handler calls (also usable from code and tests)."""
        if not self.requested:
            log.warning("interrupt: finishing this step, saving a checkpoint, then stopping (Ctrl-C again to abort now)")
        self.requested = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    @contextmanager
    def installed(self) -> Iterator[InterruptCallback]:
        """Route SIGINT to :meth:`request` while training runs (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.request()

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
