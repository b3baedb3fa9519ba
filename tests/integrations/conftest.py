"""In CI (``CI=true``, set by ``.ci/run``) the trainers' packages are installed, so a test that
would skip because one of them does not import fails instead: CI must run the real code paths."""

from __future__ import annotations

import os
import re

import pytest

#: packages .ci/run installs for these tests (reward-kit / eval-protocol are optional everywhere)
CI_PACKAGES = ("verl", "openrlhf", "trl", "torch", "transformers", "tensordict", "ray")
_NAMED = re.compile(r"\b(" + "|".join(CI_PACKAGES) + r")\b")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ARG001 - pytest's hook signature
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("CI", "").lower() != "true":
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _NAMED.search(str(reason)):
        report.outcome = "failed"
        report.longrepr = f"CI=true but a trainer package is missing (.ci/run installs it): {reason}"
