"""FID from two 2048-d statistics: our eigh route vs ADM's scipy sqrtm route.

    python benchmarks/bench_fid.py [--rows 10000] [--dim 2048] [--repeat 3]

Covariances come from `--rows` random features per set drawn from a low-rank-plus-diagonal model
with a decaying spectrum and a positive mean (like pool_3 features), the two sets differing in
mean, spectrum and basis. Prints both times, the speed ratio (target >= 5x) and |dFID|
(target <= 1e-6), all measured in this run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# OpenMP threads that spin while waiting (the default) make torch's 2-thread LAPACK calls 10-20x
# slower whenever another process holds a core (a shared or loaded machine); passive waiting costs
# nothing measurable here. Must be set before torch loads; `--omp-active` keeps the default.
if "--omp-active" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402


def stats(g, rows: int, dim: int, rank: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """mean and covariance (float64) of `rows` features: rank-`rank` signal + small diagonal noise.

    Made with torch so that numpy's OpenBLAS threads are not left spinning before the timings
    (on a 2-core machine they slow the next torch call by up to 10x; see fid.trace_sqrt_product).
    """
    import torch

    basis = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=torch.float64))[0]
    scale = 2.0 * (1.0 + torch.arange(rank, dtype=torch.float64)) ** -0.7 * (1 + shift)
    x = (torch.randn(rows, rank, generator=g, dtype=torch.float64) * scale) @ basis.T
    x += 0.05 * torch.randn(rows, dim, generator=g, dtype=torch.float64)
    x += 0.3 + shift * torch.rand(dim, generator=g, dtype=torch.float64)
    mu = x.mean(0)
    xc = x - mu
    return mu.numpy(), (xc.T @ xc / (rows - 1)).numpy()


def best_of(fn, repeat: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--rank", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3, help="runs of the fast route (best time kept)")
    p.add_argument("--repeat-sqrtm", type=int, default=1, help="runs of the sqrtm route (slow)")
    p.add_argument("--omp-active", action="store_true", help="leave OMP_WAIT_POLICY alone")
    args = p.parse_args()

    import torch

    from diffit_eval.metrics.fid import frechet_distance, frechet_distance_sqrtm

    g = torch.Generator().manual_seed(0)
    mu1, s1 = stats(g, args.rows, args.dim, args.rank, 0.0)
    mu2, s2 = stats(g, args.rows, args.dim, args.rank, 0.2)
    print(
        f"statistics: {args.dim}-d from {args.rows} rows per set (rank {args.rank} + diagonal); "
        f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )

    t_ours, fid_ours = best_of(lambda: frechet_distance(mu1, s1, mu2, s2), args.repeat)
    t_adm, fid_adm = best_of(lambda: frechet_distance_sqrtm(mu1, s1, mu2, s2), args.repeat_sqrtm)
    d = abs(fid_ours - fid_adm)
    print(f"frechet_distance (eigh):        {t_ours:8.3f} s   FID {fid_ours:.10f}")
    print(f"frechet_distance_sqrtm (ADM):   {t_adm:8.3f} s   FID {fid_adm:.10f}")
    print(
        f"speed-up {t_adm / t_ours:.1f}x (target >= 5x): {'PASS' if t_adm / t_ours >= 5 else 'FAIL'};  "
        f"|dFID| = {d:.3e}, relative {d / abs(fid_adm):.3e} (target |dFID| <= 1e-6): {'PASS' if d <= 1e-6 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
