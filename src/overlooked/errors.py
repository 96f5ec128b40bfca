"""The project's own exceptions.

Every error a user can cause (bad data, bad config, a foreign checkpoint) is raised as a subclass of
:class:`OverlookedError`, with a message that names the problem, where it is, and how to fix it. The CLI
prints these without a traceback.
"""

from __future__ import annotations


class OverlookedError(Exception):
    """Base class of every error the library raises on purpose."""


class DataError(OverlookedError):
    """A data file is missing, corrupt, truncated, of the wrong format, or malformed."""


class UnreadableDataError(DataError):
    """Data a trained model cannot read in its own terms: words outside its vocabulary, sentences longer than
    the width it was built for."""


class ConfigError(OverlookedError, ValueError):
    """A configuration key is unknown, has the wrong type, or a value is out of range."""


class InputError(OverlookedError, ValueError):
    """A model or objective was given inputs that do not fit it (shapes, dtypes, index ranges, or outputs of
    another model); raised by their input checks before any computation."""


class CheckpointError(OverlookedError):
    """A checkpoint is missing, incomplete, or was not written by this library."""


class RegistryError(OverlookedError, KeyError):
    """A name is not registered, or a builder got keyword arguments it does not accept."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class NonFiniteLossError(OverlookedError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class DataWarning(UserWarning):
    """Something done to the data folder the user should know of (a damaged or edited file replaced by a
    verified download, its old copy kept beside it)."""


class StorageError(OSError):
    """A file of a run could not be written (a full or read-only disk, no permission): the old file, if any, is
    whole (every run file is written to a temporary file, then renamed). The command line says it in one line."""
