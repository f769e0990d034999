"""Regression suites: run a published protocol (or read its result) and compare with expected values.

Suites live in the versioned `results/suites.toml`. Running one goes through the public CLI in a
subprocess (`python -m diffit_eval sample ...`, `... metrics ... --json`), never through internal
APIs, so this module only depends on the commands' flags and on the metrics JSON format
(docs/ARCHITECTURE.md). Missing assets are found by looking in the cache before anything runs,
so an offline machine gets the list of fetch commands at once instead of a failure an hour in.

Exit codes (`RegressReport.exit_code`): 0 pass, 1 regression, 2 could not run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffit_eval.assets.cache import cache_dir, download, write_json_atomic
from diffit_eval.errors import UserError
from diffit_eval.protocol import METRIC_KEYS
from diffit_eval.shipped import shipped_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SUITES_VERSION = 1
SUITES_TOML = shipped_dir("results") / "suites.toml"
# `metrics --metrics` names precision and recall together as `pr`.
METRIC_FLAG = {"fid": "fid", "sfid": "sfid", "is": "is", "precision": "pr", "recall": "pr"}
UNAVAILABLE_KEY = {"fid": "fid", "sfid": "sfid", "is": "is", "precision": "pr", "recall": "pr"}

PASS, FAIL, MISSING_VALUE, INFO = "pass", "FAIL", "MISSING", "info"


class CouldNotRun(UserError):
    """The suite could not be run or compared (exit 2); not a regression."""

    code = 2


# ---------------------------------------------------------------------------------------------
# Suites


@dataclass(frozen=True)
class Expectation:
    """An expected metric value; passes when |measured - value| <= tol + rtol * |value|."""

    metric: str
    value: float
    tol: float = 0.0
    rtol: float = 0.0
    gate: bool = True  # False: shown in the report, never fails the suite

    @property
    def bound(self) -> float:
        return self.tol + self.rtol * abs(self.value)

    def describe(self) -> str:
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


def _expectation(metric: str, spec: Any, where: str) -> Expectation:
    if metric not in METRIC_KEYS:
        raise CouldNotRun(f"{where}: unknown metric {metric!r} (known: {', '.join(METRIC_KEYS)})")
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
        if kind not in RUNNERS:
            raise CouldNotRun(f"{path}: suite {name} has kind {kind!r}; known kinds: {', '.join(RUNNERS)}")
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


# ---------------------------------------------------------------------------------------------
# Assets: what a suite needs on disk, checked before anything runs


@dataclass
class RunOptions:
    """Overrides and plumbing for running a suite; every field may stay None."""

    workdir: Path | None = None  # where runs and metrics JSONs go
    samples: Path | None = None  # instead of the suite's sample batch (kind metrics)
    ref: str | None = None  # reference path or registry name, instead of the suite's
    ckpt: str | None = None  # checkpoint for `sample --ckpt`
    inception_weights: Path | None = None
    batch_size: int | None = None
    launcher: list[str] | None = None  # e.g. ["torchrun", "--nproc_per_node", "8"] for sampling


@dataclass(frozen=True)
class Asset:
    what: str
    path: Path | None  # None: nothing on disk to look for (e.g. no checkpoint was given)
    fetch: str  # the command that provides it
    url: str | None = None  # for a manual download


def sample_batch_path(url: str) -> Path:
    return cache_dir() / "sample_batches" / url.rsplit("/", 1)[-1]


def required_assets(suite: Suite, opts: RunOptions | None = None) -> list[Asset]:
    """Files the suite reads that a user must provide or fetch; downloads done by `sample` itself
    (checkpoints, VAE, Inception weights) are left to that command."""
    opts = opts or RunOptions()
    s, assets = suite.settings, []
    if opts.samples is not None and suite.kind in ("metrics", "sample"):
        assets.append(Asset("samples (--samples)", Path(opts.samples), "check the --samples path"))
    elif suite.kind == "metrics":
        url = s["sample_batch_url"]
        path = sample_batch_path(url)
        assets.append(
            Asset(f"sample batch {path.name}", path, f"diffit-eval regress --suite {suite.name} --fetch", url)
        )
    if suite.kind in ("metrics", "sample"):
        ref = opts.ref or s["ref"]
        if _looks_like_path(ref):
            assets.append(Asset("reference (--ref)", Path(ref), "check the --ref path"))
        else:
            from diffit_eval.references.registry import cached_path

            assets.append(Asset(f"reference {ref}", cached_path(ref), f"diffit-eval ref fetch {ref}"))
    if s.get("requires_ckpt") and opts.samples is None:
        if opts.ckpt is None:
            assets.append(
                Asset("checkpoint (no weights were released for this model)", None, "train one and pass --ckpt PATH")
            )
        elif _looks_like_path(opts.ckpt):
            assets.append(Asset("checkpoint (--ckpt)", Path(opts.ckpt), "check the --ckpt path"))
    if suite.kind == "sample" and opts.samples is None and opts.ckpt is None:
        assets += _release_assets(s["model"])
    if opts.inception_weights is not None:
        assets.append(
            Asset(
                "Inception weights (--inception-weights)",
                Path(opts.inception_weights),
                "check the --inception-weights path",
            )
        )
    elif suite.kind in ("metrics", "sample") and not os.environ.get("DIFFIT_EVAL_INCEPTION_WEIGHTS"):
        from diffit_eval.assets.inception import INCEPTION_URL, default_weights_path

        assets.append(
            Asset("Inception weights", default_weights_path(), "diffit-eval weights fetch inception", INCEPTION_URL)
        )
    return assets


def _release_assets(model: str) -> list[Asset]:
    """The released checkpoint and, for latent models, the VAE that `sample` would download."""
    from diffit.checkpoint import CHECKPOINTS
    from diffit.models import MODEL_PRESETS, resolve_preset

    p = MODEL_PRESETS[resolve_preset(model)]
    out = []
    if p.checkpoint in CHECKPOINTS:
        c = CHECKPOINTS[p.checkpoint]
        out.append(
            Asset(
                f"checkpoint {p.checkpoint}",
                cache_dir() / "checkpoints" / c.filename,
                f"diffit-eval weights fetch {p.checkpoint}",
                c.url,
            )
        )
    if p.kind == "latent":
        from diffit.vae import VAE_SOURCES

        repo = VAE_SOURCES["ema"]
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(repo, "config.json")
        except Exception:  # an unusual hub cache layout: report it missing rather than fail
            hit = None
        out.append(
            Asset(
                f"VAE {repo}",
                Path(hit) if isinstance(hit, str) else None,
                f"online, `diffit-eval sample` downloads it (or `huggingface-cli download {repo}`)",
            )
        )
    return out


def missing_assets(suite: Suite, opts: RunOptions | None = None) -> list[Asset]:
    return [a for a in required_assets(suite, opts) if a.path is None or not a.path.exists()]


def _looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or s.endswith((".npz", ".pt", ".pth", ".safetensors")) or Path(s).exists()


def fetch_assets(suite: Suite, opts: RunOptions | None = None) -> list[Asset]:
    """Download what `missing_assets` lists (sample batches here, references via `ref fetch`);
    return what is still missing (user-supplied files cannot be fetched)."""
    for a in missing_assets(suite, opts):
        if a.url is not None:
            download(a.url, a.path, what=a.what, alternative="--samples PATH")
        elif a.fetch.startswith("diffit-eval ref fetch "):
            _call(["ref", "fetch", a.fetch.rsplit(" ", 1)[-1]])
    return missing_assets(suite, opts)


# ---------------------------------------------------------------------------------------------
# Running: one function per kind, each returning the metrics JSON as a dict


def cli_command(args: list[str], launcher: list[str] | None = None) -> list[str]:
    """`python -m diffit_eval ARGS`, or `LAUNCHER -m diffit_eval ARGS` (torchrun takes `-m`)."""
    head = list(launcher) if launcher else [sys.executable]
    return [*head, "-m", "diffit_eval", *args]


def _call(args: list[str], launcher: list[str] | None = None) -> None:
    cmd = cli_command(args, launcher)
    # Output goes straight to the user: a 50K-sample run shows its own progress.
    rc = subprocess.run(cmd, check=False).returncode
    if rc != 0:
        raise CouldNotRun(f"`{shlex.join(cmd)}` exited with {rc} (its error is printed above)")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CouldNotRun(f"no metrics JSON at {path}") from None
    except ValueError as e:
        raise CouldNotRun(f"{path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CouldNotRun(f"{path} does not hold a metrics JSON object")
    return obj


def read_measured(path: str | Path) -> dict[str, Any]:
    """A `metrics --json` file, or the `measured` part of an earlier `regress --json` report."""
    obj = _read_json(Path(path))
    if "suite" in obj and isinstance(obj.get("measured"), dict):
        obj = obj["measured"]
    if not any(m in obj for m in METRIC_KEYS):
        raise CouldNotRun(f"{path} is not a `diffit-eval metrics --json` file (none of {', '.join(METRIC_KEYS)})")
    return obj


def _common(opts: RunOptions) -> list[str]:
    out: list[str] = []
    if opts.inception_weights is not None:
        out += ["--inception-weights", str(opts.inception_weights)]
    if opts.batch_size is not None:
        out += ["--batch-size", str(opts.batch_size)]
    return out


def call_metrics(
    samples: str | Path, ref: str | Path, out_json: Path, *, metrics: str, extra: list[str] = ()
) -> dict[str, Any]:
    """`diffit-eval metrics SAMPLES --ref REF --json OUT`, then the JSON it wrote."""
    _call(["metrics", str(samples), "--ref", str(ref), "--json", str(out_json), "--metrics", metrics, *extra])
    return _read_json(out_json)


def call_sample(
    model: str,
    out_dir: Path,
    *,
    seeds: str,
    num_samples: int | None = None,
    steps: int | None = None,
    ckpt: str | None = None,
    extra: list[str] = (),
    launcher: list[str] | None = None,
) -> Path:
    """`diffit-eval sample --model MODEL --seeds A-B --out DIR`; returns the run folder."""
    from diffit_eval.generate.sample import SampleConfig

    config = SampleConfig(
        model=model,
        ckpt=None if ckpt is None else str(ckpt),
        steps=steps,
        num_samples=num_samples,
        seeds=seeds,
        out=out_dir,
    )
    _call([*config.cli_args(), *extra], launcher)
    return out_dir


def _workdir(suite: Suite, opts: RunOptions) -> Path:
    wd = Path(opts.workdir) if opts.workdir else Path("runs") / "regress" / suite.name
    wd.mkdir(parents=True, exist_ok=True)
    return wd


def run_metrics_suite(suite: Suite, opts: RunOptions) -> dict[str, Any]:
    samples = opts.samples or sample_batch_path(suite.settings["sample_batch_url"])
    ref = opts.ref or suite.settings["ref"]
    wd = _workdir(suite, opts)
    return call_metrics(samples, ref, wd / "metrics.json", metrics=suite.metric_flags(), extra=_common(opts))


def run_sample_suite(suite: Suite, opts: RunOptions) -> dict[str, Any]:
    s, wd = suite.settings, _workdir(suite, opts)
    # --samples: an existing run folder (e.g. from a torchrun job) is measured as it is.
    run = (
        Path(opts.samples)
        if opts.samples is not None
        else call_sample(
            s["model"],
            wd / "samples",
            seeds=s["seeds"],
            num_samples=s.get("num_samples"),
            steps=s.get("steps"),
            ckpt=opts.ckpt or s.get("ckpt"),
            extra=_common(opts),
            launcher=opts.launcher,
        )
    )
    return call_metrics(
        run, opts.ref or s["ref"], wd / "metrics.json", metrics=suite.metric_flags(), extra=_common(opts)
    )


def run_golden_cpu(
    workdir: str | Path,
    settings: dict[str, Any],
    suites_file: Path,
    inception_weights: str | Path | None = None,
    record: bool = False,
) -> dict[str, Any]:
    """The golden CPU run (:mod:`diffit_eval.report.golden`) as a flat dict of stage values.

    Checking feeds the recorded images to stages 2-3; recording (`record`) uses this run's own and
    writes them, with their feature sketches, to the suite's arrays file.
    """
    from diffit_eval.report import golden

    arrays = golden.arrays_file(settings, suites_file)
    golden_images, golden_sketch = ({}, {}) if record or not arrays.is_file() else golden.load_arrays(arrays)
    if not record and not golden_images:
        raise CouldNotRun(f"golden arrays {arrays} are missing; record them with --update-golden")
    weights = Path(inception_weights) if inception_weights else None
    m = golden.measure(settings, Path(workdir), None if record else golden_images, weights)
    if record:
        golden.save_arrays(arrays, m)
        golden_images, golden_sketch = golden.load_arrays(arrays)  # as a later check will read them
    values = golden.stage_values(m, golden_images, golden_sketch)
    for stage in ("metrics", "e2e"):
        values.update({f"{stage}.{name}.{k}": v for name, ms in m[stage].items() for k, v in ms.items()})
    e2e_json = json.loads((Path(workdir) / f"{next(iter(m['e2e']))}-metrics.json").read_text())
    return {**values, "feature_network": e2e_json.get("feature_network"), "provenance": e2e_json.get("provenance")}


@contextlib.contextmanager
def _scratch(opts: RunOptions) -> Iterator[Path]:
    if opts.workdir is not None:
        Path(opts.workdir).mkdir(parents=True, exist_ok=True)
        yield Path(opts.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="diffit-golden-") as d:
            yield Path(d)


def run_golden_suite(suite: Suite, opts: RunOptions, record: bool = False) -> dict[str, Any]:
    with _scratch(opts) as wd:
        return run_golden_cpu(wd, suite.settings, suite.suites_file, opts.inception_weights, record=record)


RUNNERS: dict[str, Callable[[Suite, RunOptions], dict[str, Any]]] = {
    "metrics": run_metrics_suite,
    "sample": run_sample_suite,
    "golden": run_golden_suite,
}


def run_suite(suite: Suite, opts: RunOptions | None = None) -> dict[str, Any]:
    """Run the suite's protocol and return the measured metrics JSON (a dict)."""
    return RUNNERS[suite.kind](suite, opts or RunOptions())


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
            reason = unavailable.get(
                UNAVAILABLE_KEY.get(m, m), "not in the measured JSON" if raw is None else "not finite"
            )
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
