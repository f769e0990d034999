"""Running a suite: the assets it needs, checked before anything runs, and one runner per kind.

Running goes through the public CLI in a subprocess (`python -m diffit_eval sample ...`,
`... metrics ... --json`), never through internal APIs, so this module only depends on the
commands' flags and on the metrics JSON format (docs/ARCHITECTURE.md). Missing assets are found
by looking in the cache before anything runs, so an offline machine gets the list of fetch
commands at once instead of a failure an hour in. The golden kind runs in-process
(:mod:`diffit_eval.report.golden`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffit_eval.assets.cache import cache_dir, download
from diffit_eval.protocol import METRIC_KEYS
from diffit_eval.report.suites import KINDS, CouldNotRun, Suite

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
    if suite.kind in ("metrics", "sample") and (opts.ref or "ref_data" not in s):
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
    elif (
        suite.kind in ("metrics", "sample")
        and not os.environ.get("DIFFIT_EVAL_INCEPTION_WEIGHTS")
        and not _nvidia_fallback_available()
    ):
        from diffit_eval.assets.inception import INCEPTION_URL, default_weights_path

        assets.append(
            Asset("Inception weights", default_weights_path(), "diffit-eval weights fetch inception", INCEPTION_URL)
        )
    return assets


def _nvidia_fallback_available() -> bool:
    """`metrics` would take the NVIDIA pool_3 conversion when torch-fidelity's file is missing."""
    from diffit_eval.assets import nvidia_inception as nv

    return nv.fallback_enabled() and (nv.converted_path().is_file() or nv.find_torchscript() is not None)


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
    return call_metrics(
        samples, ref, wd / "metrics.json", metrics=suite.metric_flags(), extra=_common(opts) + suite.bootstrap_flags()
    )


def build_suite_reference(s: dict[str, Any], wd: Path, extra: list[str]) -> Path:
    """A suite's `ref_data` (a built-in dataset, e.g. `sklearn-digits-train500`; its first
    `ref_count` images when set) rendered at its `resolution` and turned into a reference by
    `diffit-eval ref build`, every image kept for P/R, with the same Inception options as the
    metrics (`extra`). A reference already in the work folder from the same images is reused when
    it was built on the weights these metrics resolve to."""
    import numpy as np

    from diffit_eval.assets.cache import atomic_path
    from diffit_eval.io.sources import open_builtin

    images = open_builtin(s["ref_data"], int(s["resolution"])).images[: s.get("ref_count")]
    data = wd / f"{s['ref_data']}.npz"
    ref = wd / f"{s['ref_data']}-ref.npz"
    if ref.is_file() and data.is_file() and _same_reference(ref, data, images, extra):
        return ref
    with atomic_path(data) as tmp, open(tmp, "wb") as f:
        np.savez(f, arr_0=images)
    _call(
        [
            "ref",
            "build",
            str(data),
            "--name",
            s["ref_data"],
            "--resolution",
            str(s["resolution"]),
            "--crop",
            "none",
            "--pr-images",
            str(len(images)),
            "--out",
            str(ref),
            *extra,
        ]
    )
    return ref


def _same_reference(ref: Path, data: Path, images, extra: list[str]) -> bool:
    import numpy as np

    from diffit_eval.assets.cache import sha256_file
    from diffit_eval.assets.inception import resolve_inception_weights
    from diffit_eval.references.registry import read_meta

    with np.load(data) as z:
        if z["arr_0"].shape != images.shape or not np.array_equal(z["arr_0"], images):
            return False
    given = extra[extra.index("--inception-weights") + 1] if "--inception-weights" in extra else None
    built = (read_meta(ref).get("feature_network") or {}).get("sha256")
    return built == sha256_file(resolve_inception_weights(given, progress=False))


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
    ref = opts.ref or (build_suite_reference(s, wd, _common(opts)) if "ref_data" in s else s["ref"])
    return call_metrics(
        run,
        ref,
        wd / "metrics.json",
        metrics=suite.metric_flags(),
        extra=_common(opts) + suite.bootstrap_flags(),
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


assert set(RUNNERS) == set(KINDS), "every kind in the suites file has a runner"
