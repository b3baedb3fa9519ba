"""One local Ray cluster (2 CPUs) for the tests of this folder that ask for it, shut down after."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # test components (ray_faults) for specs scored in this process
    sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    # workers import test components (ray_faults) from this folder
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()
