"""Exceptions that medreward raises for user mistakes.

Every exception here carries a message meant for a person: the CLI prints it without a
traceback. Programming errors inside medreward stay ordinary exceptions.
"""

from __future__ import annotations


class MedrewardError(Exception):
    """Base class of every user-facing medreward error."""


class SpecError(MedrewardError):
    """A spec (TOML file or preset) is invalid; the message names the bad field."""


class RecordError(MedrewardError):
    """A rollout record does not follow the rollout contract (docs/contracts.md)."""


class InputError(MedrewardError):
    """An input file is missing, unreadable or of an unknown format."""
