"""Exceptions that the command line turns into exit codes."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input or configuration: the CLI prints one line and exits 2."""


class ConfigError(UserInputError):
    """The configuration does not validate."""


class DataError(UserInputError):
    """The data set cannot be used as given."""


class SpecError(UserInputError):
    """An audit SPEC that does not import or does not build a model."""


class TrackingError(UserInputError):
    """The MLflow tracking store cannot be reached or written."""


class OverfitGateError(RuntimeError):
    """The overfitting gate failed the run (overfit.fail_on_overfit): exit 3.

    It carries the run's summary, since everything was logged before the gate closed.
    """

    def __init__(self, message: str, summary: dict | None = None) -> None:
        super().__init__(message)
        self.summary = summary
