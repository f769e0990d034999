"""Per-sample random streams (the EDM convention): sample i draws only from generator i.

A sampler that takes `randn_like` from a `StackedRandomGenerator` gives each sample the same
numbers whatever the batch size, its position in the batch or the number of devices, so a
sample is a function of its own seed alone.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch


class StackedRandomGenerator:
    """One `torch.Generator` per sample; draws for a batch are the per-sample draws stacked."""

    def __init__(self, device: torch.device | str, seeds: Iterable[int]) -> None:
        # Seeds are reduced modulo 2**32 as EDM's generate.py does, so both give the same streams.
        self.generators = [torch.Generator(device).manual_seed(int(seed) % (1 << 32)) for seed in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def _check(self, size: Sequence[int]) -> None:
        if size[0] != len(self.generators):
            raise ValueError(f"batch size {size[0]} does not match the {len(self.generators)} seeds")

    def randn(self, size: Sequence[int], **kwargs) -> torch.Tensor:
        """Standard normal of shape `size`; row i comes from generator i."""
        self._check(size)
        return torch.stack([torch.randn(size[1:], generator=gen, **kwargs) for gen in self.generators])

    def randn_like(self, input: torch.Tensor) -> torch.Tensor:
        """Standard normal shaped, typed and placed like `input`; row i from generator i."""
        return self.randn(input.shape, dtype=input.dtype, layout=input.layout, device=input.device)

    def randint(self, *args, size: Sequence[int], **kwargs) -> torch.Tensor:
        """`torch.randint(*args, size)` with row i from generator i (e.g. class labels)."""
        self._check(size)
        return torch.stack([torch.randint(*args, size=size[1:], generator=gen, **kwargs) for gen in self.generators])
