"""The one console every table, status line and help page is printed with: the terminal's width.

The width of printed output is, in this order:

1. `$COLUMNS` when it is set to a positive integer (a user's or a test's choice, as `ls` reads it);
2. the real terminal's width when the stream is a terminal;
3. :data:`PIPED_WIDTH` (200) when it is not (a pipe, a log file): rich would assume 80 and fold a
   table's numbers; a log is read in an editor, not a terminal.

Help pages wrap to that width, at most :data:`HELP_WIDTH` columns (a paragraph stays readable on a
wide terminal). Tables choose their layout by the width they are printed at (`print_fitting`): the
first layout whose natural width fits, so at 80 columns a table stacks or drops its rules instead of
folding its values.

A bottom module, as `progress` and `errors` are: it imports rich and nothing of the project, and
any layer may use it (a contract in pyproject.toml).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from typing import TextIO

from rich.console import Console, ConsoleDimensions

__all__ = ["HELP_WIDTH", "PIPED_WIDTH", "console", "fits", "help_width", "natural_width", "print_fitting", "width"]

PIPED_WIDTH = 200  # columns off a terminal (pipe, log file; Table S.1 whole is 184); $COLUMNS overrides it
HELP_WIDTH = 100  # at most this many columns of --help, on any terminal


def _columns_env() -> int | None:
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def width(stream: TextIO | None = None) -> int:
    """Columns to print `stream` (default: the current sys.stdout) at: $COLUMNS, else the
    terminal's width, else PIPED_WIDTH."""
    columns = _columns_env()
    if columns is not None:
        return columns
    stream = sys.stdout if stream is None else stream
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or shutil.get_terminal_size().columns
    except (AttributeError, OSError, ValueError):  # a StringIO, a closed or redirected stream
        pass
    return PIPED_WIDTH


def help_width() -> int:
    """Columns of a --help page: the printed width, at most HELP_WIDTH."""
    return min(width(), HELP_WIDTH)


class _Console(Console):
    """A rich Console whose width is :func:`width` of its stream, read at each print (a redirected
    sys.stdout, a changed $COLUMNS and a resized terminal are honoured)."""

    def __init__(self, *args, width: int | None = None, **kwargs) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._width = width  # rich fixes $COLUMNS at creation; here it is read when printing

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self._width is not None else ConsoleDimensions(width(self.file), size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def console(stderr: bool = False, columns: int | None = None) -> Console:
    """A rich Console on stdout (or stderr) at :func:`width` of that stream, or `columns` wide. It
    writes to the stream current at print time, as rich's own does."""
    return _Console(stderr=stderr, width=columns)


_MEASURE = Console(width=10_000)  # natural widths, unconstrained


def natural_width(renderable) -> int:
    """The columns `renderable` takes when nothing squeezes it (a table: no cell wrapped)."""
    return _MEASURE.measure(renderable).maximum


def fits(renderable, columns: int) -> bool:
    return natural_width(renderable) <= columns


def print_fitting(layouts: Iterable, out: Console | None = None) -> None:
    """Print the first of `layouts` (renderables, widest first) that fits the console unsqueezed,
    else the last one (which must be the one that reads at any width: folded, stacked)."""
    out = console() if out is None else out
    chosen = None
    for chosen in layouts:
        if fits(chosen, out.width):
            break
    if chosen is not None:
        out.print(chosen)
