"""Where a feature network runs when no device is given, and how many images go into one forward.

Every network (InceptionV3, the digits classifier, DINOv2) and every caller that builds one reads
these, so they live apart from any one network.
"""

from __future__ import annotations

import torch

__all__ = ["CPU_MICRO_BATCH", "DEFAULT_BATCH_SIZE", "default_batch_size", "default_device"]


def default_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`."""
    return "cuda" if torch.cuda.is_available() else "cpu"


# Chosen with benchmarks/bench_inception.py on 2 CPU cores with the prepared network (folded,
# channels-last): images/s is flat from batch 4 to 16 and lower at 1 and at 64 (the speed itself:
# docs/TESTING.md, "The stand-in's speed"); on a GPU larger batches keep the device busy.
# On the CPU the network itself then runs CPU_MICRO_BATCH images a call (below).
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 64}


def default_batch_size(device: str | None = None) -> int:
    """Images per feature-network forward when --batch-size is not given, by device type."""
    kind = torch.device(device or default_device()).type
    return DEFAULT_BATCH_SIZE.get(kind, 64)


# On the CPU the InceptionV3 trunk always runs this many images per call, the last call padded
# with copies of its last image, whatever --batch-size says. PyTorch picks a CPU convolution's
# kernel by the call's shape: a 1x1 convolution of fewer than 16 images on one thread goes to its
# own GEMM (`_slow_conv2d_forward`), otherwise to oneDNN, and the two round differently (pool_3 by
# 3.5e-5, FID by ~5e-6 relative, between --batch-size 4 and 16 on one thread). One call shape makes
# an image's features independent of its batch at any thread count. 4 is within the machine's noise
# of the fastest call size and pads a small set least (benchmarks/bench_inception.py --micro-batches
# on 2 CPU cores, images/s at 1 / 2 / 4 / 8 / 16: one thread 5.8 / 6.2 / 6.4 / 6.6 / 6.8, two
# threads 9.0 / 11.0 / 12.2 / 13.3 / 12.8, then 4 and 8 equal in a repeat). GPUs take the batch as given.
CPU_MICRO_BATCH = 4
