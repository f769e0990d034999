"""Feature extraction at 299x299: this project's InceptionV3 path against torch-fidelity's own extractor.

    python benchmarks/bench_features.py [--images 64] [--batch-size 8] [--weights PATH] [--device cpu]

Both networks load the same weights file (a seeded stand-in made here unless `--weights` is
given: same layers, same cost as the real network) and see the same uint8 images, 64x64 resized
to 299 by TF1's bilinear resize inside each forward. Ours (`batch_features`: batch norm folded,
channels-last, pool_3 + sFID + logits in one pass) is timed against
`FeatureExtractorInceptionV3.forward` (pool_3 and logits), alternating runs so both see the
same machine load. Prints images/s of each, the ratio (target >= 1.2x, >= 12 images/s on 2 CPU
cores), the largest pool_3 / logits difference relative to their scale and the
FLOP-limit share (InceptionV3 at 299x299: 5.7 GMAC = 11.4 GFLOP an image).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np

GFLOP_PER_IMAGE = 11.4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64, help="images timed per network per round")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    p.add_argument("--device", default=None)
    p.add_argument("--weights", default=None, help="InceptionV3 weights; default: a stand-in made here")
    args = p.parse_args()

    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from diffit_eval.features.device import default_device
    from diffit_eval.features.extract import batch_features
    from diffit_eval.features.network import InceptionFeatures
    from diffit_eval.protocol import FEATURE_NETWORK
    from diffit_eval.testing import make_standin_weights

    device = args.device or default_device()
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or make_standin_weights(Path(tmp) / "standin.pth", seed=0)
        ours = InceptionFeatures(weights).to(device)
        with contextlib.redirect_stdout(None):
            theirs = FeatureExtractorInceptionV3(
                FEATURE_NETWORK, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
            ).to(device)
    theirs.eval()
    bs = args.batch_size
    images = np.random.default_rng(0).integers(0, 256, (bs, 64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    runs = {
        "ours": lambda: batch_features(ours, images),
        "torch-fidelity": lambda: theirs(x),
    }
    with torch.no_grad():
        mine, (pool, logits) = runs["ours"](), runs["torch-fidelity"]()  # warm-up and the comparison
        n_batches = -(-args.images // bs)
        best = {k: 0.0 for k in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                sync()
                t0 = time.perf_counter()
                for _ in range(n_batches):
                    run()
                sync()
                best[name] = max(best[name], n_batches * bs / (time.perf_counter() - t0))

    def rel(a, b) -> float:
        return float((a.float() - b.float()).abs().max() / b.float().abs().max())

    print(
        f"device {device}, torch threads {torch.get_num_threads()}, batch {bs}, {n_batches * bs} images "
        f"x {args.rounds} rounds, weights {'stand-in' if args.weights is None else args.weights}"
    )
    for name, rate in best.items():
        print(f"{name:>15}: {rate:6.2f} images/s ({rate * GFLOP_PER_IMAGE:5.1f} GFLOP/s)")
    print(f"ratio ours / torch-fidelity: {best['ours'] / best['torch-fidelity']:.2f}x (target >= 1.2x, >= 12 images/s)")
    print(f"max |difference| / max |value|: pool_3 {rel(mine.pool, pool):.2e}, logits {rel(mine.logits, logits):.2e}")


if __name__ == "__main__":
    main()
