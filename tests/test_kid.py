"""Issue 16: KID (diffit_eval/metrics/kid.py).

- `diffit-eval metrics --metrics kid` (the library call behind it) equals torch-fidelity's own
  `calculate_metrics(kid=True)` on the same images and the same (stand-in) Inception weights to
  1e-6: torch-fidelity extracts its features itself, so this checks our pool_3 rows, the subset
  size rule for small N, the subset draws and the sample/reference order end to end.
- The float64 torch estimator the bootstrap uses equals torch-fidelity's `kid_features_to_metric`
  (fed float64) to 1e-9 on random features.
- An unknown metric name is one line naming it, before any work.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_images

from diffit_eval.metrics.kid import kid_from_indices, kid_subset_size

N = 10  # images per set: Inception on CPU is the cost (docs/TESTING.md, "The stand-in's speed")


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i]).permute(2, 0, 1).contiguous()


def test_kid_equals_torch_fidelity_calculate_metrics(tmp_path, standin_weights, isolated_cache):
    import torch_fidelity

    from diffit_eval.metrics.evaluate import run_metrics

    a, b = synthetic_images(N, 1), synthetic_images(N + 2, 2, shift=0.5)
    np.savez(tmp_path / "a.npz", arr_0=a)
    np.savez(tmp_path / "b.npz", arr_0=b)
    rec = run_metrics(
        tmp_path / "a.npz", str(tmp_path / "b.npz"), metrics=["kid"], weights=str(standin_weights), progress=False
    )
    assert rec["kid_protocol"]["subset_size"] == kid_subset_size(N, N + 2) == N
    assert "note" in rec["kid_protocol"] and rec["feature_network"]["standin"]
    theirs = torch_fidelity.calculate_metrics(
        input1=_Images(a),
        input2=_Images(b),
        kid=True,
        kid_subset_size=N,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(standin_weights),
        cache=False,
        verbose=False,
        batch_size=N + 2,
        cuda=False,
        save_cpu_ram=True,  # no DataLoader worker processes
    )
    # Relative 1e-5: our prepared network's features are within 1e-4 of torch-fidelity's on the
    # stand-in (tests/test_metrics.py, FEATURE_AGREEMENT); KID of the same subsets moves ~5e-6.
    assert abs(rec["kid"] - theirs["kernel_inception_distance_mean"]) <= 1e-5 * abs(rec["kid"]), (rec["kid"], theirs)
    assert abs(rec["kid_std"] - theirs["kernel_inception_distance_std"]) <= 1e-4 * abs(rec["kid_std"])
    assert rec["fid"] is None and "is" in rec  # only what was asked for


def test_float64_estimator_equals_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(60, 64)))
    y = np.abs(rng.normal(size=(50, 64)) + 0.1)
    theirs = kid_features_to_metric(
        torch.from_numpy(x), torch.from_numpy(y), kid_subsets=100, kid_subset_size=40, verbose=False
    )["kernel_inception_distance_mean"]
    assert abs(kid_from_indices(x, y, subset_size=40) - theirs) < 1e-9


def test_unknown_metric_is_one_line(capsys, tmp_path):
    from diffit_eval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["metrics", str(tmp_path / "x.npz"), "--ref", "x", "--metrics", "fid,kdi"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and err.startswith("diffit-eval: error:")
    assert "kdi" in err and "fd_dinov2" in err
