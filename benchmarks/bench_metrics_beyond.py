"""Cost of density/coverage, per-class metrics and FID_inf beside precision/recall, in one run.

    python benchmarks/bench_metrics_beyond.py [--n-samples 50000] [--n-ref 10000] [--dim 2048]
        [--classes 10] [--device cpu]

Features are random, non-negative, of pool_3's scale (as `bench_prc.py` makes them); class labels
are drawn uniformly. Timed, each from the same float32 rows:

- P/R as `metrics` computes it: ADM's float16 pass and the float64 pass (`precision_exact`);
- the float64 pass with density/coverage's counts added (what `--metrics pr,density,coverage`
  runs: the increment over P/R is the cost of density/coverage when P/R are asked for too);
- density/coverage alone (reference radii and D(reference, samples), no sample radii);
- per-class FID, P/R and density/coverage over `--classes` classes;
- FID_inf: 15 subset FIDs by the eigenvalue route and the fit; and one plain FID for scale.

Prints seconds and each ratio to P/R's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-samples", type=int, default=50_000)
    p.add_argument("--n-ref", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch

    from diffit_eval.features.stats import RunningStats
    from diffit_eval.metrics.density_coverage import density_coverage, from_balls
    from diffit_eval.metrics.fid import frechet_distance
    from diffit_eval.metrics.fid_inf import fid_infinity
    from diffit_eval.metrics.per_class import per_class_metrics
    from diffit_eval.metrics.prc import membership
    from diffit_eval.protocol import DENSITY_K

    rng = np.random.default_rng(0)
    sam = np.empty((args.n_samples, args.dim), np.float32)
    ref = np.empty((args.n_ref, args.dim), np.float32)
    for arr, shift in ((sam, 0.02), (ref, 0.0)):
        for i in range(0, len(arr), 5000):
            chunk = rng.random((min(5000, len(arr) - i), args.dim), dtype=np.float32)
            arr[i : i + 5000] = chunk * chunk * 0.8 + shift
    labels = rng.integers(0, args.classes, len(sam))
    ref_labels = rng.integers(0, args.classes, len(ref))
    dev = args.device
    print(
        f"{args.n_samples} samples x {args.n_ref} reference x {args.dim}-d, {args.classes} classes, "
        f"device {dev}, torch threads {torch.get_num_threads()}"
    )

    def pr():
        a = membership(ref, sam, device=dev)
        e = membership(ref, sam, arith="exact", device=dev)
        return a.precision, a.recall, e.precision, e.recall

    (pa, ra, pe, re_), t_pr = timed(pr)
    print(f"P/R (adm-fp16 + exact passes): {t_pr:.1f} s  P {pa:.4f} R {ra:.4f} (exact {pe:.4f} / {re_:.4f})")
    m, t_exact_dc = timed(lambda: membership(ref, sam, arith="exact", device=dev, ball_k=DENSITY_K))
    both = from_balls(m.balls)
    _, t_exact = timed(lambda: membership(ref, sam, arith="exact", device=dev))
    print(
        f"float64 pass alone: {t_exact:.1f} s; with density/coverage counts: {t_exact_dc:.1f} s "
        f"(+{t_exact_dc - t_exact:.1f} s, {100 * (t_exact_dc - t_exact) / t_pr:+.1f}% of P/R)  "
        f"density {both.density:.4f} coverage {both.coverage:.4f}"
    )
    dc, t_dc = timed(lambda: density_coverage(ref, sam, device=dev))
    assert (dc.density, dc.coverage) == (both.density, both.coverage)
    print(f"density/coverage alone: {t_dc:.1f} s ({t_dc / t_pr:.2f}x P/R)")
    _, t_pc = timed(lambda: per_class_metrics(sam, labels, ref, ref_labels, density=True, device=dev))
    print(
        f"per-class ({args.classes} classes: FID, P/R both passes, density/coverage): {t_pc:.1f} s ({t_pc / t_pr:.2f}x P/R)"
    )
    rs = RunningStats(args.dim).update(ref)
    mu, sigma = rs.mean, rs.cov

    def plain_fid():
        s = RunningStats(args.dim).update(sam)
        return frechet_distance(s.mean, s.cov, mu, sigma)

    fid, t_fid = timed(plain_fid)
    fit, t_inf = timed(lambda: fid_infinity(sam, mu, sigma, device=dev))
    print(
        f"FID: {t_fid:.1f} s ({fid:.3f}); FID_inf (15 subsets {fit.sizes[0]}..{fit.sizes[-1]}): {t_inf:.1f} s "
        f"({t_inf / t_pr:.2f}x P/R, {t_inf / t_fid:.1f}x FID)  FID_inf {fit.value:.3f} ± {fit.stderr:.3f}"
    )


if __name__ == "__main__":
    main()
