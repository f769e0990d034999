"""The suites file (`results/suites.toml`): suites, their expected values and tolerances.

A suite names a protocol (its `kind`: metrics, sample or golden; run by
:mod:`diffit_eval.report.runners`) and the values it must reproduce. The file is versioned: a
key that changes meaning bumps `version`, and a reader refuses a version it does not know.
Golden suites keep their recorded values in a JSON file beside the suites file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffit_eval.errors import UserError
from diffit_eval.protocol import ALL_METRIC_KEYS, BOOTSTRAP_METRICS, METRIC_KEYS
from diffit_eval.shipped import shipped_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

KINDS = ("metrics", "sample", "golden")  # one runner each in diffit_eval.report.runners.RUNNERS
SUITES_VERSION = 1
SUITES_TOML = shipped_dir("results") / "suites.toml"
# `metrics --metrics` names precision and recall together as `pr`; the metrics JSON's `unavailable`
# map is keyed by these flag names too.
METRIC_FLAG = {
    "fid": "fid",
    "sfid": "sfid",
    "is": "is",
    "precision": "pr",
    "recall": "pr",
    "kid": "kid",
    "fd_dinov2": "fd_dinov2",
}
DEFAULT_BOOTSTRAP = 200  # replicates a suite with `overlaps` expectations asks `metrics` for


class CouldNotRun(UserError):
    """The suite could not be run or compared (exit 2); not a regression."""

    code = 2


# ---------------------------------------------------------------------------------------------
# Suites


@dataclass(frozen=True)
class Expectation:
    """An expected metric value; passes when |measured - value| <= tol + rtol * |value|, or, for
    `{ overlaps = V }`, when the measured bootstrap interval `<metric>_ci` contains V."""

    metric: str
    value: float
    tol: float = 0.0
    rtol: float = 0.0
    gate: bool = True  # False: shown in the report, never fails the suite
    overlaps: bool = False

    @property
    def bound(self) -> float:
        return self.tol + self.rtol * abs(self.value)

    def describe(self) -> str:
        if self.overlaps:
            return "inside the 95% interval" if self.gate else "inside the 95% interval (info)"
        parts = ([f"± {self.tol:g}"] if self.tol else []) + ([f"± {self.rtol:g} rel"] if self.rtol else [])
        text = " + ".join(parts) if parts else "exact"
        return text if self.gate else f"{text} (info)"


@dataclass(frozen=True)
class Suite:
    name: str
    kind: str
    description: str
    settings: dict[str, Any]  # kind-specific keys from suites.toml
    expected: dict[str, Expectation]
    suites_file: Path

    @property
    def expected_file(self) -> Path | None:
        name = self.settings.get("expected_file")
        return (self.suites_file.parent / name) if name else None

    def metric_flags(self) -> str:
        wanted = list(self.expected) or list(self.settings.get("metrics", METRIC_KEYS))
        return ",".join(dict.fromkeys(METRIC_FLAG[m] for m in wanted))

    def bootstrap_flags(self) -> list[str]:
        """`--bootstrap B` when an expectation asks for an interval (suite setting `bootstrap`, default 200)."""
        if not any(e.overlaps for e in self.expected.values()):
            return []
        return ["--bootstrap", str(int(self.settings.get("bootstrap", DEFAULT_BOOTSTRAP)))]


def _expectation(metric: str, spec: Any, where: str) -> Expectation:
    if metric not in ALL_METRIC_KEYS:
        raise CouldNotRun(f"{where}: unknown metric {metric!r} (known: {', '.join(ALL_METRIC_KEYS)})")
    if isinstance(spec, dict) and "overlaps" in spec:
        if metric not in BOOTSTRAP_METRICS:
            raise CouldNotRun(
                f"{where}.{metric}: no bootstrap interval for {metric} (only {', '.join(BOOTSTRAP_METRICS)})"
            )
        try:
            return Expectation(metric, float(spec["overlaps"]), gate=bool(spec.get("gate", True)), overlaps=True)
        except (TypeError, ValueError):
            raise CouldNotRun(f"{where}.{metric}: expected {{ overlaps = X }} with X a number") from None
    if isinstance(spec, (int, float)):
        raise CouldNotRun(f"{where}.{metric}: give a tolerance, e.g. {{ value = {spec}, tol = 0.01 }}")
    try:
        return Expectation(
            metric,
            float(spec["value"]),
            float(spec.get("tol", 0.0)),
            float(spec.get("rtol", 0.0)),
            bool(spec.get("gate", True)),
        )
    except (KeyError, TypeError, ValueError):
        raise CouldNotRun(f"{where}.{metric}: expected {{ value = X, tol = A }} and/or rtol = R") from None


def load_golden(suite: Suite) -> dict[str, Expectation]:
    """The recorded golden values as expectations with the suite's tolerances ({} if none recorded).

    Golden values are stage-named (`images.edm`, `features.pool`, `metrics.edm.fid`, `e2e.ddpm.is`,
    see :mod:`diffit_eval.report.golden`); stage 1 and 2 record differences, so their expected value is 0.
    """
    path = suite.expected_file
    if path is None or not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text())["values"]
        values = {str(k): float(v) for k, v in recorded.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CouldNotRun(
            f"golden file {path} is unreadable ({e}); re-record it with "
            f"`diffit-eval regress --suite {suite.name} --update-golden`"
        ) from None
    tolerances = suite.settings.get("tolerances", {})
    return {name: Expectation(name, value, *golden_tolerance(name, tolerances)) for name, value in values.items()}


def golden_tolerance(name: str, tolerances: dict[str, Any]) -> tuple[float, float]:
    """(tol, rtol) for a stage value: `tolerances["<stage>.<metric>"]`, else `tolerances["<stage>"]`."""
    parts = name.split(".")
    for key in (f"{parts[0]}.{parts[-1]}", parts[0]):
        spec = tolerances.get(key)
        if spec is not None:
            if isinstance(spec, (int, float)):
                return float(spec), 0.0
            return float(spec.get("tol", 0.0)), float(spec.get("rtol", 0.0))
    raise CouldNotRun(f"no tolerance for golden value {name!r}: add tolerances.{parts[0]} to the suite")


def load_suites(path: str | Path | None = None) -> dict[str, Suite]:
    path = Path(path) if path else SUITES_TOML
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CouldNotRun(f"suites file not found: {path} (pass --suites PATH)") from None
    except tomllib.TOMLDecodeError as e:
        raise CouldNotRun(f"{path} is not valid TOML ({e})") from None
    if doc.get("version") != SUITES_VERSION:
        raise CouldNotRun(f"{path} has version {doc.get('version')!r}; this diffit-eval reads version {SUITES_VERSION}")
    suites: dict[str, Suite] = {}
    for name, raw in doc.get("suites", {}).items():
        raw = dict(raw)
        kind = raw.pop("kind", None)
        if kind not in KINDS:
            raise CouldNotRun(f"{path}: suite {name} has kind {kind!r}; known kinds: {', '.join(KINDS)}")
        expected = {m: _expectation(m, spec, f"suites.{name}.expected") for m, spec in raw.pop("expected", {}).items()}
        suite = Suite(name, kind, str(raw.pop("description", "")), raw, expected, path)
        if kind == "golden":
            suite = Suite(name, kind, suite.description, raw, load_golden(suite), path)
        suites[name] = suite
    return suites


def get_suite(name: str, path: str | Path | None = None) -> Suite:
    suites = load_suites(path)
    if name not in suites:
        raise CouldNotRun(f"unknown suite {name!r}; choose one of {', '.join(suites)}")
    return suites[name]
