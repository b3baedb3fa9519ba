"""The curriculum modules' >>> examples run and pass."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["medreward.curriculum.threshold", "medreward.curriculum.task_mix"])
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
