"""The errors a user can act on. Every command prints them as one line and exits 2 (cli.command_error)."""
from __future__ import annotations


class OutputError(ValueError):
    """An output place that cannot be used without losing something: an existing run (without --overwrite),
    a shipped reference file, a folder another run is writing, or a place that cannot be written."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, foreign or does not match its model."""


class DataError(ValueError):
    """Training or test data that is missing, unreadable or not what it claims to be."""


class DataMissing(DataError):
    """Data that is simply absent (not broken): a loader may fall back to another source."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
