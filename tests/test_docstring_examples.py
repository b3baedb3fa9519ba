"""Every ``>>>`` example in the package's docstrings runs and gives what it shows (the docs promise
runnable examples: a wrong one misleads the reader who copies it)."""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil

import pytest

import medreward

MODULES = sorted(m.name for m in pkgutil.walk_packages(medreward.__path__, "medreward."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # a module of an optional extra that is not installed here
        if os.environ.get("CI") == "true":  # .ci/run installs every extra: nothing may be skipped there
            raise
        pytest.skip(f"{name} needs an optional extra: {exc}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see the output above)"


def test_the_package_has_examples():
    assert len(MODULES) > 50
