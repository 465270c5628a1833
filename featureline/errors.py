"""Errors that carry a message for a person and an exit code; never a stack trace."""

from __future__ import annotations


class FeaturelineError(Exception):
    """A failure the user can act on: the CLI prints `error: <message>`, exits `exit_code`."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInputError(FeaturelineError):
    """Bad input from the user (a file, a column, a feature name): exit code 2."""

    exit_code = 2


class NotFoundError(BadInputError):
    """An unknown view, feature, feature service or entity column."""


class ServiceUnavailableError(FeaturelineError):
    """A service (Redis, Kafka, Spark) does not answer: exit code 3."""

    exit_code = 3
