"""Packaging beyond what pyproject.toml can say: the top-level `results/` and `reference_stats/`
folders go into the wheel as `diffit_eval/_shipped/...` (read through diffit_eval/shipped.py)."""

from setuptools import find_packages, setup

SHIPPED = {f"diffit_eval._shipped.{name}": name for name in ("results", "reference_stats")}

setup(
    packages=find_packages(include=["diffit", "diffit.*", "diffit_eval", "diffit_eval.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    package_data={
        **{pkg: ["*.toml", "*.csv", "*.json", "*.npz", "*.md"] for pkg in SHIPPED},
        "diffit.weights": ["*.safetensors"],  # the demo's trained digits model (docs/DEMO.md)
        "diffit_eval.features": ["*.npz"],  # the demo's digits feature network (diffit_eval/features/digits.py)
    },
)
