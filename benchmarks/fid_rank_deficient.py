"""FID by the eigenvalue route (default) and by ADM's sqrtm routine, with fewer samples than dimensions.

    python benchmarks/fid_rank_deficient.py [--dim 2048] [--n-ref 10000]

Sample statistics of N < dim rows are rank-deficient. `--fid-method eigh` drops the null space's
rounding-noise eigenvalues; ADM's `scipy.linalg.sqrtm` keeps their square roots. This prints FID
both ways and the relative difference for several N against a full-rank reference, and for one
case where both sides are rank-deficient. Features: the STAND-IN pool_3-like rows of
`bench_prc_band.py` (ReLU of correlated Gaussians, |x|^2 ~ 400).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_prc_band import make_sets


def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--n-ref", type=int, default=10_000)
    p.add_argument("--sizes", default="100,500,1000,2000,4000")
    args = p.parse_args()

    from diffit_eval.metrics.fid import frechet_distance, frechet_distance_sqrtm

    sizes = [int(s) for s in args.sizes.split(",")]
    ref, sam = make_sets(max(sizes), args.n_ref, args.dim, seed=0)
    mu_r, s_r = stats(ref)
    cases = [(f"{n} samples vs {args.n_ref} reference", stats(sam[:n]), (mu_r, s_r)) for n in sizes]
    cases.append(("1000 samples vs 1000 reference rows", stats(sam[:1000]), stats(ref[:1000])))
    # Same distribution: FID near 0, where a small absolute gap is a large relative one.
    cases.append(("1000 vs 1000 reference rows, same distribution", stats(ref[:1000]), stats(ref[1000:2000])))
    cases.append(("5000 vs 5000 reference rows, same distribution", stats(ref[:5000]), stats(ref[5000:])))
    print(f"FID, {args.dim}-d STAND-IN features: eigh route vs ADM's sqrtm")
    print("\n| case | FID eigh | FID adm-sqrtm | relative difference | sqrtm s |")
    print("|---|---|---|---|---|")
    for name, (mu1, s1), (mu2, s2) in cases:
        a = frechet_distance(mu1, s1, mu2, s2)
        t0 = time.perf_counter()
        b = frechet_distance_sqrtm(mu1, s1, mu2, s2)
        print(
            f"| {name} | {a:.6f} | {b:.6f} | {abs(a - b) / abs(b):.1e} | {time.perf_counter() - t0:.1f} |", flush=True
        )


if __name__ == "__main__":
    main()
