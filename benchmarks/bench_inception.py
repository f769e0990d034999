"""Inception feature extraction speed by batch size, to choose `metrics --batch-size` by measurement.

    python benchmarks/bench_inception.py [--batch-sizes 1,8,32,64] [--images 64] [--device cpu]
    python benchmarks/bench_inception.py --micro-batches 1,2,4,8,16 [--threads 1]

On the CPU the network runs in calls of `CPU_MICRO_BATCH` images whatever the batch size
(diffit_eval/features/device.py), so there `--micro-batches` times each call size instead (each
one a batch of that size), to choose that constant by measurement.

Times the real path (`extract_batch`: resize to 299, InceptionV3 forward, float64 statistics)
with stand-in weights (same layers, same cost as the real network). The input size does not
matter: every image is resized to 299 x 299 first. Prints images/s per batch size, the best one,
and its ratio to the current CLI default (64).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

CLI_DEFAULT = 64


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="1,8,32,64")
    p.add_argument("--images", type=int, default=64, help="images timed per batch size (rounded up to whole batches)")
    p.add_argument("--device", default=None)
    p.add_argument("--weights", default=None, help="InceptionV3 weights; default: a stand-in made here")
    p.add_argument("--channels-last", action="store_true", help="try the channels-last memory format")
    p.add_argument("--micro-batches", default=None, help="CPU: time these call sizes (CPU_MICRO_BATCH)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()

    import torch

    import diffit_eval.features.network as network

    if args.threads:
        torch.set_num_threads(args.threads)

    from diffit_eval.features.device import default_device
    from diffit_eval.features.extract import FeatureSet, extract_batch
    from diffit_eval.features.registry import load_feature_network
    from diffit_eval.testing import make_standin_weights

    device = args.device or default_device()
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or make_standin_weights(Path(tmp) / "standin.pth", seed=0)
        net = load_feature_network(weights, device=device, allow_download=False)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    sizes = [int(s) for s in (args.micro_batches or args.batch_sizes).split(",")]
    rng = np.random.default_rng(0)
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {args.images} images per batch size"
        + (", channels-last" if args.channels_last else "")
    )
    print(f"{'batch':>6} {'images/s':>10} {'s/image':>9}")
    rates = {}
    for bs in sizes:
        if args.micro_batches:
            network.CPU_MICRO_BATCH = bs  # the call size the network uses on the CPU
        batch = rng.integers(0, 256, (bs, 64, 64, 3), dtype=np.uint8)
        extract_batch(net, batch, FeatureSet())  # warm-up: kernel selection, allocations
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        n_batches = -(-args.images // bs)
        fs = FeatureSet()
        t0 = time.perf_counter()
        for _ in range(n_batches):
            extract_batch(net, batch, fs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        rates[bs] = n_batches * bs / dt
        print(f"{bs:>6} {rates[bs]:>10.2f} {1 / rates[bs]:>9.3f}")
    best = max(rates, key=rates.get)
    if args.micro_batches:
        from diffit_eval.features.device import CPU_MICRO_BATCH

        now = rates.get(CPU_MICRO_BATCH)
        vs = f"; CPU_MICRO_BATCH = {CPU_MICRO_BATCH}: {now / rates[best]:.2f}x of the fastest" if now else ""
        print(f"fastest call size: {best} ({rates[best]:.2f} images/s){vs}")
        return
    ref = rates.get(CLI_DEFAULT)
    ratio = f"; {best} vs {CLI_DEFAULT}: {rates[best] / ref:.2f}x" if ref else ""
    print(
        f"fastest batch size: {best} ({rates[best]:.2f} images/s){ratio}; "
        f"chosen default: {best if ref is None or rates[best] > 1.1 * ref else CLI_DEFAULT} "
        f"(keeps {CLI_DEFAULT} unless another size is > 10% faster)"
    )


if __name__ == "__main__":
    main()
