"""User-facing errors: the CLI prints their message as one line on stderr and exits with `code`."""

from __future__ import annotations


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
