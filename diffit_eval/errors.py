"""User-facing errors: the CLI prints their message as one line on stderr and exits with `code`.

One meaning per exit code, in every command (README, "Exit codes"): 1 bad input (a value, path
or file the user gave), 2 a missing asset or a usage error (the command could not run as asked),
130 interrupted (Ctrl-C). `regress` keeps its own 0 pass / 1 regression / 2 could not run.

`diffit` raises its own :class:`diffit.errors.DiffitError` types; :func:`user_error` translates
them at the boundary (:func:`diffit_errors` around every call into `diffit` that can fail on
input), so the rest of `diffit_eval` only ever handles a :class:`UserError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from diffit.errors import AssetUnavailableError, DiffitError


class UserError(Exception):
    """Bad input from the user (path, array layout, option). Exit code 1 by default."""

    code: int = 1

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class MissingAssetError(UserError):
    """A file that must be downloaded is absent and cannot be fetched (offline). Exit code 2."""

    code = 2


class Interrupted(UserError):
    """Ctrl-C: the message says what finished, what is kept and the command that resumes. Exit code 130."""

    code = 130


def user_error(error: DiffitError) -> UserError:
    """The UserError a `diffit` error means: a missing asset (exit 2) or a bad input (exit 1)."""
    if isinstance(error, AssetUnavailableError):
        return MissingAssetError(str(error))
    return UserError(str(error))


@contextlib.contextmanager
def diffit_errors() -> Iterator[None]:
    """Re-raise any DiffitError raised inside the block as the matching UserError, one line."""
    try:
        yield
    except DiffitError as e:
        raise user_error(e) from None
