"""Every shaping module's >>> examples run and pass."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "medreward.shape.advantages",
    "medreward.shape.par",
    "medreward.shape.process",
    "medreward.shape.dataset_norm",
    "medreward.shape.calibration",
    "medreward.shape.noise",
    "medreward.shape.difficulty",
    "medreward.shape.diagnostics",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no doctest examples"
    assert result.failed == 0


def test_every_public_function_has_an_example():
    import inspect

    from medreward import shape

    missing = []
    for name in shape.__all__:
        obj = getattr(shape, name)
        public = (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("medreward.shape")
        record = inspect.isclass(obj) and _is_plain_record(obj)
        if public and not record and ">>>" not in (obj.__doc__ or ""):
            missing.append(name)
    assert missing == []


def _is_plain_record(cls) -> bool:
    import dataclasses

    return dataclasses.is_dataclass(cls)
