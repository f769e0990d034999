"""Data that ships with the package: `results/` (published numbers, suites, golden values) and
`reference_stats/` (the reference registry).

Both folders live at the top of the repository (where people edit them) and are copied into the
wheel as `diffit_eval/_shipped/<folder>` (see `setup.py`). A source checkout or an editable
install reads the top-level folders; a normal install reads the copies.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
SHIPPED_FOLDERS = ("results", "reference_stats")


def shipped_dir(name: str) -> Path:
    """The folder `name` (one of SHIPPED_FOLDERS): the checkout's own, else the installed copy."""
    if name not in SHIPPED_FOLDERS:
        raise ValueError(f"unknown shipped folder {name!r}")
    root = _PACKAGE.parent
    # A checkout has its pyproject.toml beside the package; site-packages never does.
    if (root / "pyproject.toml").is_file() and (root / name).is_dir():
        return root / name
    return _PACKAGE / "_shipped" / name
