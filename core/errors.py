"""Errors the suite reports to a user as one line, before any work is done.

Anything raised as a `SuiteError` is a problem with the user's input (a config, a path, a
name), not a bug: the command-line entry points print its message after ``error:`` and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class SuiteError(Exception):
    """A user-facing error whose message is one self-explanatory line."""

    def __init__(self, message: str) -> None:
        # Keep the promise of one line even when a library's message spans several.
        super().__init__(" ".join(str(message).split()))


class ConfigError(SuiteError):
    """A config key, type or value that cannot be run."""


class DatasetNotFound(SuiteError):
    """A dataset that is neither on disk nor downloadable with the current settings."""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices` to a misspelled `value`, or ''."""
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
