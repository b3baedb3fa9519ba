"""The trainers' packages are installed by ``.ci/run``; under ``CI=true`` a test that would skip
because one of them does not import fails instead (the rule for every optional package is in
``tests/conftest.py``)."""
