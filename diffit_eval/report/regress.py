"""Regression: compare a suite's measured values with its expected ones, and report.

`regress()` is the library call behind `diffit-eval regress`: it runs the suite
(:mod:`diffit_eval.report.runners`) or reads a metrics JSON, compares each expected value
(:mod:`diffit_eval.report.suites`) and returns a report that never raises for a suite that cannot
run. Exit codes (`RegressReport.exit_code`): 0 pass, 1 regression, 2 could not run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffit_eval.assets.cache import write_json_atomic
from diffit_eval.errors import UserError
from diffit_eval.protocol import CI_SUFFIX
from diffit_eval.report.runners import (
    Asset,
    RunOptions,
    fetch_assets,
    missing_assets,
    read_measured,
    run_golden_suite,
    run_suite,
)
from diffit_eval.report.suites import (
    METRIC_FLAG,
    SUITES_VERSION,
    CouldNotRun,
    Expectation,
    Suite,
    get_suite,
    golden_tolerance,
)

PASS, FAIL, MISSING_VALUE, INFO = "pass", "FAIL", "MISSING", "info"


# ---------------------------------------------------------------------------------------------
# Comparing


@dataclass
class Check:
    metric: str
    measured: float | None
    expected: float
    tolerance: str
    bound: float
    abs_diff: float | None
    verdict: str
    gate: bool
    reason: str = ""


def compare(measured: dict[str, Any], expected: dict[str, Expectation]) -> list[Check]:
    unavailable = measured.get("unavailable") or {}
    checks = []
    for m, e in expected.items():
        raw = measured.get(m)
        value = None if raw is None else float(raw)
        if value is None or not math.isfinite(value):
            reason = unavailable.get(METRIC_FLAG.get(m, m), "not in the measured JSON" if raw is None else "not finite")
            checks.append(
                Check(
                    m,
                    value,
                    e.value,
                    e.describe(),
                    e.bound,
                    None,
                    MISSING_VALUE if e.gate else INFO,
                    e.gate,
                    str(reason),
                )
            )
            continue
        if e.overlaps:
            checks.append(_overlap_check(m, value, e, measured.get(m + CI_SUFFIX)))
            continue
        diff = abs(value - e.value)
        ok = diff <= e.bound
        verdict = (PASS if ok else FAIL) if e.gate else INFO
        checks.append(
            Check(
                m,
                value,
                e.value,
                e.describe(),
                e.bound,
                diff,
                verdict,
                e.gate,
                "" if ok else f"outside by {diff - e.bound:.3g}",
            )
        )
    return checks


def _overlap_check(m: str, value: float, e: Expectation, ci: Any) -> Check:
    """`{ overlaps = V }`: pass when the measured interval [lo, hi] contains V (bound: the half width)."""
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2):
        reason = f"no {m}{CI_SUFFIX} in the measured JSON (run metrics with --bootstrap B)"
        return Check(m, value, e.value, e.describe(), 0.0, None, MISSING_VALUE if e.gate else INFO, e.gate, reason)
    lo, hi = float(ci[0]), float(ci[1])
    ok = lo <= e.value <= hi
    outside = 0.0 if ok else min(abs(e.value - lo), abs(e.value - hi))
    verdict = (PASS if ok else FAIL) if e.gate else INFO
    reason = "" if ok else f"{e.value:g} outside [{lo:.4g}, {hi:.4g}] by {outside:.3g}"
    return Check(m, value, e.value, e.describe(), (hi - lo) / 2, abs(value - e.value), verdict, e.gate, reason)


@dataclass
class RegressReport:
    suite: str
    kind: str
    exit_code: int
    verdict: str  # "pass" | "regression" | "could-not-run" | "recorded"
    checks: list[Check] = field(default_factory=list)
    missing_assets: list[Asset] = field(default_factory=list)
    reason: str = ""
    measured: dict[str, Any] | None = None
    measured_from: str | None = None

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.gate and c.verdict != PASS]

    def summary(self) -> str:
        """One line for stderr."""
        if self.exit_code == 1:
            parts = [f"{c.metric} {_fmt(c.measured)} (expected {c.expected:g} {c.tolerance})" for c in self.failures()]
            return f"regression in suite {self.suite}: " + "; ".join(parts)
        if self.missing_assets:
            items = [f"{a.what}{f' at {a.path}' if a.path else ''}: {a.fetch}" for a in self.missing_assets]
            return f"suite {self.suite} could not run, missing: " + "; ".join(items)
        return f"suite {self.suite} could not run: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        from diffit_eval.provenance import now_iso

        return {
            "suite": self.suite,
            "kind": self.kind,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "reason": self.reason or None,
            "checks": [asdict(c) for c in self.checks],
            "missing_assets": [{**asdict(a), "path": a.path and str(a.path)} for a in self.missing_assets],
            "measured_from": self.measured_from,
            "measured": self.measured,
            "suites_version": SUITES_VERSION,
            "created": now_iso(),
        }


def _fmt(v: float | None) -> str:
    return "null" if v is None else f"{v:.6g}"


def evaluate_measured(suite: Suite, measured: dict[str, Any], measured_from: str | None = None) -> RegressReport:
    """Compare a metrics JSON with the suite's expectations."""
    if not suite.expected:
        hint = (
            f"record them with `diffit-eval regress --suite {suite.name} --update-golden`"
            if suite.kind == "golden"
            else "add an [expected] table to the suite"
        )
        return RegressReport(
            suite.name,
            suite.kind,
            2,
            "could-not-run",
            reason=f"no expected values ({hint})",
            measured=measured,
            measured_from=measured_from,
        )
    problem = _incomparable(suite, measured)
    if problem:
        return RegressReport(
            suite.name, suite.kind, 2, "could-not-run", reason=problem, measured=measured, measured_from=measured_from
        )
    checks = compare(measured, suite.expected)
    failed = any(c.gate and c.verdict != PASS for c in checks)
    return RegressReport(
        suite.name,
        suite.kind,
        1 if failed else 0,
        "regression" if failed else "pass",
        checks=checks,
        measured=measured,
        measured_from=measured_from,
    )


def _incomparable(suite: Suite, measured: dict[str, Any]) -> str | None:
    """Why this JSON cannot be judged against the suite's numbers, if it cannot."""
    want, got = suite.settings.get("resolution"), measured.get("resolution")
    if want is not None and got is not None and int(want) != int(got):
        return f"measured resolution {got} but suite {suite.name} is at {want}"
    standin = bool((measured.get("feature_network") or {}).get("standin", False))
    if standin and suite.kind != "golden":
        return f"measured with a STAND-IN feature network; suite {suite.name} compares with published numbers"
    return None


def regress(
    suite_name: str,
    *,
    suites_path: str | Path | None = None,
    measured: str | Path | None = None,
    opts: RunOptions | None = None,
    fetch: bool = False,
) -> RegressReport:
    """The library call behind `diffit-eval regress`: run (or read) and compare; never raises
    for a suite that cannot run, it reports exit code 2 instead."""
    opts = opts or RunOptions()
    kind = "?"
    try:
        suite = get_suite(suite_name, suites_path)
        kind = suite.kind
        if measured is not None:
            if suite.kind == "golden":
                raise CouldNotRun(f"suite {suite.name} is checked stage by stage from its own run; drop --measured")
            return evaluate_measured(suite, read_measured(measured), str(measured))
        if not suite.expected and suite.kind == "golden":
            return evaluate_measured(suite, {}, None)  # nothing to compare with: say so before running
        if fetch:
            fetch_assets(suite, opts)
        missing = missing_assets(suite, opts)
        if missing:
            return RegressReport(suite.name, suite.kind, 2, "could-not-run", missing_assets=missing)
        return evaluate_measured(suite, run_suite(suite, opts))
    except UserError as e:  # offline downloads, failed subprocesses, bad files: could not run
        return RegressReport(suite_name, kind, 2, "could-not-run", reason=str(e))


def update_golden(
    suite_name: str,
    *,
    suites_path: str | Path | None = None,
    opts: RunOptions | None = None,
) -> tuple[Path, dict[str, float]]:
    """Run the golden suite and record its images, sketches (arrays file) and stage values (JSON)."""
    suite = get_suite(suite_name, suites_path)
    if suite.kind != "golden" or suite.expected_file is None:
        raise CouldNotRun(f"--update-golden applies to golden suites; {suite.name} is kind {suite.kind!r}")
    result = run_golden_suite(suite, opts or RunOptions(), record=True)
    values = {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}
    for name in values:
        golden_tolerance(name, suite.settings.get("tolerances", {}))  # every value must have a tolerance
    from diffit_eval.provenance import now_iso

    write_json_atomic(
        suite.expected_file,
        {
            "suite": suite.name,
            "suites_version": SUITES_VERSION,
            "values": values,
            "settings": {k: v for k, v in suite.settings.items() if k != "tolerances"},
            "feature_network": result.get("feature_network"),
            "provenance": result.get("provenance"),
            "recorded": now_iso(),
        },
    )
    return suite.expected_file, values
