"""Where a feature network runs when no device is given, and how many images go into one forward.

Every network (InceptionV3, the digits classifier, DINOv2) and every caller that builds one reads
these, so they live apart from any one network.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_BATCH_SIZE", "default_batch_size", "default_device"]


def default_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`."""
    return "cuda" if torch.cuda.is_available() else "cpu"


# Chosen with benchmarks/bench_inception.py on 2 CPU cores with the prepared network (folded,
# channels-last): images/s is flat from batch 4 to 16 and lower at 1 and at 64 (the speed itself:
# docs/TESTING.md, "The stand-in's speed"); on a GPU larger batches keep the device busy.
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 64}


def default_batch_size(device: str | None = None) -> int:
    """Images per feature-network forward when --batch-size is not given, by device type."""
    kind = torch.device(device or default_device()).type
    return DEFAULT_BATCH_SIZE.get(kind, 64)
