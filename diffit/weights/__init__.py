"""Weights that ship inside the package: trained by this project, small, under the data's licence.

`digits.safetensors` (unconditional) and `digits-cond.safetensors` (class-conditional) are the presets trained with `diffit-eval train` on scikit-learn's digits
(docs/DEMO.md records the command, seed, machine and numbers; the file's metadata repeats them).
A shipped name is an ordinary checkpoint source: `--ckpt digits` or the file's path.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHIPPED_WEIGHTS", "shipped_weights"]

_HERE = Path(__file__).resolve().parent

# checkpoint name -> file in this folder
SHIPPED_WEIGHTS: dict[str, str] = {"digits": "digits.safetensors", "digits-cond": "digits-cond.safetensors"}


def shipped_weights(name: str) -> Path | None:
    """The shipped file for checkpoint `name`, or None when `name` is not a shipped checkpoint."""
    return _HERE / SHIPPED_WEIGHTS[name] if name in SHIPPED_WEIGHTS else None
