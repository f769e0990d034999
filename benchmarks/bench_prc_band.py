"""The band of precision/recall: ADM float16 variants against exact distances, at ADM's scale.

    python benchmarks/bench_prc_band.py            # 50,000 samples x 10,000 reference, 2048-d
    python benchmarks/bench_prc_band.py --quick    # 5,000 x 2,000: a try-out in seconds

ADM's evaluator takes squared distances in float16 (`diffit_eval/metrics/prc.py`). Where the result
depends on how a GPU kernel accumulated (the half row sums |x|^2), the published numbers came
from an order we cannot know, so this script measures how far P/R move across plausible float16
rules and against exact (float64) distances. The spread is the band within which a published
P/R can be reproduced at all (docs/METRICS.md).

Features (STAND-IN, with the statistics of Inception pool_3 features): ReLU of correlated
Gaussians with a shifted mean. z = L B + 0.6 e + m with L [N, 64] and e [N, 2048] standard
normal, B a fixed [64, 2048] Gaussian basis scaled by 0.15, m a per-dimension mean drawn from
N(-0.1, 0.25^2); x = c * max(z, 0), with c calibrated on the reference so that its mean squared
norm is 400 (pool_3's are in the hundreds). About half of the entries are exact zeros. The samples
are the same model with the latent mean shifted by 0.1 and the noise scaled by 1.03 (a "model"
close to, not on, the data). All draws from numpy's PCG64 with --seed.

Variants (all but the last are ADM's graph; only the float16 |x|^2 rule differs):
- adm-fp16: this project's rule: the exact sum of the float16 squares, rounded once;
- fp32-acc: the squares summed in float32 (torch), then rounded (the rule before issue 15);
- fp16-seq: summed in float16, one column after another (the worst plausible order);
- fp16-block: summed in float16 in a 256-thread block reduction's order: thread t adds columns
  t, t + 256, ... (8 each) in turn, 32-lane trees (offsets 1, 2, 4, 8, 16) combine threads, and
  the 8 warp totals are added in turn. This is the shape of CUB's block reduction that TF's
  float16 reduce_sum runs on a GPU; the exact CUB version and tuning are not established;
- exact: float64 distances.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

LATENT, BASIS_SCALE, NOISE, MEAN, MEAN_SD = 64, 0.15, 0.6, -0.1, 0.25
TARGET_SQ_NORM = 400.0


def standin_pool3(
    n: int,
    dim: int,
    rng: np.random.Generator,
    basis: np.ndarray,
    mean: np.ndarray,
    scale: float,
    latent_shift: float = 0.0,
    noise: float = NOISE,
    chunk: int = 5000,
) -> np.ndarray:
    """[n, dim] float32 ReLU(L B + noise e + m) * scale, made in chunks straight into float32."""
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        z = (rng.standard_normal((m, LATENT), dtype=np.float32) + latent_shift) @ basis
        z += noise * rng.standard_normal((m, dim), dtype=np.float32) + mean
        out[i : i + m] = np.maximum(z, 0) * scale
    return out


def make_sets(n_samples: int, n_ref: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = (rng.standard_normal((LATENT, dim)) * BASIS_SCALE).astype(np.float32)
    mean = rng.normal(MEAN, MEAN_SD, dim).astype(np.float32)
    ref = standin_pool3(n_ref, dim, rng, basis, mean, 1.0)
    scale = np.sqrt(TARGET_SQ_NORM / (ref.astype(np.float64) ** 2).sum(1).mean())  # calibrate |x|^2 to 400
    ref *= np.float32(scale)
    sam = standin_pool3(n_samples, dim, rng, basis, mean, float(scale), latent_shift=0.1, noise=NOISE * 1.03)
    return ref, sam


def _squares16(x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float16).astype(np.float32)
    with np.errstate(over="ignore"):
        return (h * h).astype(np.float16)


def norms_fp32_acc(x: np.ndarray) -> np.ndarray:
    """float16 squares summed in float32 by torch, rounded to float16 (torch rounds the float32 once)."""
    return torch.from_numpy(_squares16(x)).float().sum(1).to(torch.float16).numpy()


def norms_fp16_seq(x: np.ndarray) -> np.ndarray:
    """float16 squares summed in float16, column by column (numpy rounds each half add correctly)."""
    sq = _squares16(x)
    acc = sq[:, 0].copy()
    with np.errstate(over="ignore"):
        for j in range(1, sq.shape[1]):
            acc += sq[:, j]
    return acc


def norms_fp16_block(x: np.ndarray, threads: int = 256, warp: int = 32) -> np.ndarray:
    """float16 squares summed in float16 in a block-reduction order (see the module docstring)."""
    sq = _squares16(x)
    n, d = sq.shape
    pad = (-d) % threads
    if pad:
        sq = np.concatenate([sq, np.zeros((n, pad), np.float16)], axis=1)
    per_thread = sq.reshape(n, -1, threads)  # [n, items, thread]: item i of thread t is column t + i * threads
    with np.errstate(over="ignore"):
        acc = per_thread[:, 0].copy()
        for i in range(1, per_thread.shape[1]):
            acc += per_thread[:, i]
        lanes = acc.reshape(n, threads // warp, warp)
        offset = 1
        while offset < warp:  # lane l += lane l + offset: a shuffle-down tree, lane 0 ends with the warp total
            lanes = lanes.copy()
            lanes[..., : warp - offset] = lanes[..., : warp - offset] + lanes[..., offset:]
            offset *= 2
        total = lanes[:, 0, 0].copy()
        for w in range(1, threads // warp):
            total += lanes[:, w, 0]
    return total


VARIANTS = {  # name: (arith, float16 norm rule or None for prc.py's own)
    "adm-fp16": ("adm-fp16", None),
    "fp32-acc": ("adm-fp16", norms_fp32_acc),
    "fp16-seq": ("adm-fp16", norms_fp16_seq),
    "fp16-block": ("adm-fp16", norms_fp16_block),
    "exact": ("exact", None),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-samples", type=int, default=50_000)
    p.add_argument("--n-ref", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="5,000 samples x 2,000 reference")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ",".join(VARIANTS))
    args = p.parse_args()
    if args.quick:
        args.n_samples, args.n_ref = 5000, 2000
    names = [v.strip() for v in args.variants.split(",")]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {', '.join(bad)}; choose from {','.join(VARIANTS)}")

    from diffit_eval.metrics.prc import half_sq_norms, precision_recall

    ref, sam = make_sets(args.n_samples, args.n_ref, args.dim, args.seed)
    sq = (ref.astype(np.float64) ** 2).sum(1)
    print(
        f"P/R band: {args.n_samples} samples x {args.n_ref} reference, {args.dim}-d, seed {args.seed}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"STAND-IN features: zeros {np.mean(ref == 0):.1%} (ref) {np.mean(sam == 0):.1%} (samples); |x|^2 "
        f"ref mean {sq.mean():.0f} [p5 {np.percentile(sq, 5):.0f}, p95 {np.percentile(sq, 95):.0f}], samples mean "
        f"{(sam.astype(np.float64) ** 2).sum(1).mean():.0f}"
    )
    exact_norms = half_sq_norms(ref[:2000])
    for name, (_, rule) in VARIANTS.items():
        if rule is not None and name in names:
            moved = np.mean(rule(ref[:2000]) != exact_norms)
            print(f"  {name}: float16 |x|^2 differs from the correctly rounded one on {moved:.1%} of rows")

    results = {}
    for name in names:
        arith, rule = VARIANTS[name]
        t0 = time.perf_counter()
        kwargs = {} if rule is None else {"half_norms": rule}
        results[name] = precision_recall(ref, sam, arith=arith, device=args.device, **kwargs)
        print(
            f"  {name:<11} precision {results[name][0]:.4f}  recall {results[name][1]:.4f}  "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )

    print("\n| variant | precision | recall | precision - exact | recall - exact |")
    print("|---|---|---|---|---|")
    ex = results.get("exact")
    for name, (pr, rc) in results.items():
        d = ("", "") if ex is None else (f"{pr - ex[0]:+.4f}", f"{rc - ex[1]:+.4f}")
        print(f"| {name} | {pr:.4f} | {rc:.4f} | {d[0]} | {d[1]} |")
    half = [v for k, v in results.items() if k != "exact"]
    if len(half) > 1:
        print(
            f"\nspread across the float16 variants: precision {max(v[0] for v in half) - min(v[0] for v in half):.4f}, "
            f"recall {max(v[1] for v in half) - min(v[1] for v in half):.4f}"
        )
    if ex is not None and half:
        print(
            f"largest float16 - exact: precision {max(abs(v[0] - ex[0]) for v in half):.4f}, "
            f"recall {max(abs(v[1] - ex[1]) for v in half):.4f}"
        )


if __name__ == "__main__":
    main()
