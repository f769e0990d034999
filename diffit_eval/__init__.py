"""diffit-eval: data in and out, distributed work, features, metrics and the CLI.

The models and diffusion maths live in the separate package :mod:`diffit`, importable without this one.
"""

__version__ = "0.1.0"
