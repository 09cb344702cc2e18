"""The one error type commands raise for bad input: a message and exit status 2."""

from __future__ import annotations


class CommandError(Exception):
    """Bad input: printed as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
