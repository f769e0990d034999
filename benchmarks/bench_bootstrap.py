"""Cost of `metrics --bootstrap B` for FID against one plain FID, measured in the same run.

    python benchmarks/bench_bootstrap.py [--n 10000] [--dim 2048] [--replicates 200] [--device cpu|cuda]

Features: N rows of a rank-256-plus-noise model with a positive mean (like pool_3, see
benchmarks/bench_fid.py); the reference: statistics of another 2N such rows. Timed: one plain FID
(statistics of the rows + `frechet_distance`, the eigh route `metrics` runs), the bootstrap's set-up
(the reference's square root, the rotated rows) and B replicates of FID by the eigenvalue route
(diffit_eval/metrics/bootstrap.py). Prints seconds, seconds per replicate and the ratio
bootstrap / plain FID. With `--replicates` below 200 the B = 200 cost is extrapolated (printed as such).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/bench_fid.py

import numpy as np  # noqa: E402
import torch  # noqa: E402


def rows(g: torch.Generator, n: int, dim: int, shift: float) -> np.ndarray:
    rank = min(256, dim)
    basis = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=torch.float64))[0]
    scale = 2.0 * (1.0 + torch.arange(rank, dtype=torch.float64)) ** -0.7 * (1 + shift)
    x = (torch.randn(n, rank, generator=g, dtype=torch.float64) * scale) @ basis.T
    x += 0.05 * torch.randn(n, dim, generator=g, dtype=torch.float64) + 0.3 + shift
    return x.float().numpy()


def main() -> None:
    from diffit_eval.features.stats import RunningStats
    from diffit_eval.metrics.bootstrap import FrechetToReference, replicate_indices
    from diffit_eval.metrics.fid import frechet_distance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x, ref = rows(g, a.n, a.dim, 0.1), RunningStats(a.dim).update(rows(g, 2 * a.n, a.dim, 0.0))
    mu_r, sigma_r = ref.mean, ref.cov

    t = time.perf_counter()
    s = RunningStats(a.dim).update(x)
    plain = frechet_distance(s.mean, s.cov, mu_r, sigma_r)
    t_plain = time.perf_counter() - t

    def sync() -> None:
        if torch.device(a.device).type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    fd = FrechetToReference(x, mu_r, sigma_r, device=a.device)
    identity = fd.value()
    sync()
    t_setup = time.perf_counter() - t
    t = time.perf_counter()
    values = [fd.value(np.bincount(idx, minlength=a.n)) for idx in replicate_indices(a.n, a.replicates)]
    sync()
    t_boot = time.perf_counter() - t
    per = t_boot / a.replicates
    total200 = t_setup + 200 * per
    dev = torch.cuda.get_device_name() if torch.device(a.device).type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"N={a.n} d={a.dim} device={dev}")
    print(f"plain FID (statistics + eigh FD): {t_plain:.2f} s   FID {plain:.6f}; eigenvalue route {identity:.6f}")
    print(f"bootstrap set-up {t_setup:.2f} s; {a.replicates} replicates {t_boot:.2f} s ({per:.3f} s each)")
    tag = "" if a.replicates == 200 else " (extrapolated)"
    print(f"B=200: {total200:.1f} s{tag} = {total200 / t_plain:.1f} x one plain FID")
    print(f"95% interval [{np.percentile(values, 2.5):.4f}, {np.percentile(values, 97.5):.4f}]")


if __name__ == "__main__":
    main()
