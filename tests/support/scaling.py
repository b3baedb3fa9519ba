"""Linearity checks that do not depend on how busy the machine is.

Speed targets live in ``benchmarks/``; a test only asks whether the cost *grows* linearly. It
times the same function on an input of size ``n`` and one of size ``factor * n`` in CPU time
of this process (``time.process_time``: other processes competing for the cores do not count),
and fails when the larger input costs more than ``slack * factor`` times the smaller one. With
the defaults (8×, slack 3) linear code gives about 8, quadratic code about 64, against a
bound of 24. A failed comparison is measured again (``tries``): a real blow-up fails every
time, a one-off stall does not.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["assert_linear"]

T = TypeVar("T")
R = TypeVar("R")

#: CPU seconds below which the small input's cost is not trusted (timer and call overhead).
_FLOOR = 0.002


def _cpu_seconds(fn: Callable[[T], R], arg: T) -> tuple[float, R]:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()  # a collection landing in one run but not the other is not the code's cost
    try:
        started = time.process_time()
        result = fn(arg)
        return time.process_time() - started, result
    finally:
        if was_enabled:
            gc.enable()


def assert_linear(
    fn: Callable[[T], R],
    make: Callable[[int], T],
    n: int,
    *,
    factor: int = 8,
    slack: float = 3.0,
    tries: int = 3,
) -> R:
    """Assert that ``fn(make(factor * n))`` costs at most ``slack * factor`` times ``fn(make(n))``.

    Choose ``n`` so that ``fn(make(n))`` takes a few milliseconds at least. Building the inputs
    (``make``) is not timed. Returns what ``fn`` returned for the large input, so a test can check
    the result on the big input without computing it a second time.
    """
    small_arg, large_arg = make(n), make(factor * n)
    bound = slack * factor
    ratios: list[float] = []
    for _ in range(tries):
        small = max(_cpu_seconds(fn, small_arg)[0], _FLOOR)
        large, result = _cpu_seconds(fn, large_arg)
        ratio = large / small
        if ratio <= bound:
            return result
        ratios.append(round(ratio, 1))
    raise AssertionError(
        f"cost grows faster than linearly: {factor}x the input took {ratios}x the CPU time "
        f"(bound {bound:g}x; size {n} → {factor * n})"
    )
