"""The errors `diffit` raises, so a caller can tell a bad input from an asset it does not have.

`diffit` knows nothing of a command line: :mod:`diffit_eval.errors` maps these to exit codes
(1 for a bad input, 2 for an asset that is not here), and any other program can catch
:class:`DiffitError`. Messages are one line that names what was given.
"""

from __future__ import annotations

__all__ = ["AssetUnavailableError", "CheckpointMismatchError", "CheckpointNotFoundError", "DiffitError"]


class DiffitError(Exception):
    """Base class of every error `diffit` raises on purpose."""


class CheckpointNotFoundError(DiffitError, FileNotFoundError):
    """A local checkpoint path does not exist, or a file cannot be read as a checkpoint."""


class CheckpointMismatchError(DiffitError, ValueError):
    """The checkpoint's keys or shapes differ from the model's."""


class AssetUnavailableError(DiffitError):
    """Weights that are not on this machine (not a local file, not in the local cache).

    `url` is where they are published and `alternative` the option or path that replaces them
    ("--vae PATH"), so the caller can say both in one line; `diffit` itself never downloads.
    """

    def __init__(self, message: str, *, url: str | None = None, alternative: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.alternative = alternative
