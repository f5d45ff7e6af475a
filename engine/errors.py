"""The LiveFX error hierarchy.

Everything LiveFX raises on purpose derives from ``LiveFXError``. The CLI turns one into a single
line and an exit code; the server (a later issue) turns one into an error message. Nothing else
catches broadly.
"""

from __future__ import annotations


class LiveFXError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(LiveFXError):
    """Bad input from a user: a missing or unreadable file, a truncated video, an empty frame."""

    exit_code = 2


class ConfigError(LiveFXError, ValueError):
    """An out-of-range or unknown setting."""

    exit_code = 2


class ModelError(LiveFXError):
    """A model that cannot be read, converted or loaded, or does not have the expected shape."""

    exit_code = 3


class BackendError(LiveFXError):
    """A compute or inference backend that cannot be used here."""

    exit_code = 4


class EndpointError(LiveFXError):
    """A remote endpoint that cannot be reached, refuses, or answers with something unusable."""

    exit_code = 5


class StageError(LiveFXError):
    """A pipeline stage that raised something it was not meant to (a model runtime's error, a
    bug): ``stage`` names it. The server passes that frame through unprocessed."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(f"{stage}: {type(exc).__name__}: {exc}")
        self.stage = stage
