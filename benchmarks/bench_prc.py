"""Precision/recall at ADM's scale on this machine: wall time and the extra memory it takes.

    python benchmarks/bench_prc.py [--n-samples 50000] [--n-ref 10000] [--dim 2048] [--device cpu]

ADM's protocol compares 50,000 sample features with 10,000 reference features (2048-d pool_3).
torch-fidelity's full mode would build 50K x 50K distance matrices (about 10 GB each); ours works
in 10,000 x 10,000 blocks. The features are random, non-negative and of pool_3's scale (|u|^2 of a
few hundred, so the float16 path is taken as in real use). Prints the wall time, the peak resident
memory above what the features themselves occupy, and its ratio to the 3 GB target.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

TARGET_BYTES = 3 * 1024**3


def peak_rss_bytes() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024  # Linux reports KiB


def current_rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-samples", type=int, default=50_000)
    p.add_argument("--n-ref", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--block", type=int, default=10_000)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch

    from diffit_eval.metrics.prc import precision_recall

    rng = np.random.default_rng(0)
    # Generated in chunks straight into float32, so making the inputs does not set the peak.
    sam = np.empty((args.n_samples, args.dim), np.float32)
    ref = np.empty((args.n_ref, args.dim), np.float32)
    for arr, shift in ((sam, 0.02), (ref, 0.0)):
        for i in range(0, len(arr), 5000):
            chunk = rng.random((min(5000, len(arr) - i), args.dim), dtype=np.float32)
            arr[i : i + 5000] = chunk * chunk * 0.8 + shift
    torch.zeros(1)  # load torch's kernels before the baseline
    base = current_rss_bytes()
    peak_before = peak_rss_bytes()
    print(
        f"P/R: {args.n_samples} samples x {args.n_ref} reference, {args.dim}-d, block {args.block}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"features: {(sam.nbytes + ref.nbytes) / 1e9:.2f} GB; process RSS before: {base / 1e9:.2f} GB")

    t0 = time.perf_counter()
    precision, recall = precision_recall(ref, sam, block=args.block, device=args.device)
    wall = time.perf_counter() - t0

    peak = peak_rss_bytes()
    extra = max(peak - base, 0)
    print(f"precision {precision:.5f}  recall {recall:.5f}")
    print(
        f"wall time {wall:.1f} s; peak extra RSS {extra / 1e9:.2f} GB "
        f"({extra / TARGET_BYTES:.2f} x the 3 GB target: {'PASS' if extra < TARGET_BYTES else 'FAIL'})"
        + ("" if peak > peak_before else "  [peak was set before the call: extra is an upper bound]")
    )


if __name__ == "__main__":
    main()
