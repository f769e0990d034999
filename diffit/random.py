"""Per-sample random streams (the EDM convention): sample i draws only from generator i.

A sampler that takes `randn_like` from a `StackedRandomGenerator` gives each sample the same
numbers whatever the batch size, its position in the batch or the number of devices, so a
sample is a function of its own seed alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


class BatchRandom:
    """Draws for a batch that is rows `rows` of a larger batch of `total` images (one generator).

    Training splits one global batch over processes and accumulation rounds. Every part draws the
    whole global batch's values from the same seeded generator and keeps its own rows, so image j
    of the global batch gets the same sigma, noise and augmentation whatever the world size.
    With no generator the draws come from torch's global generator (EDM's behaviour).
    """

    def __init__(
        self,
        generator: torch.Generator | None = None,
        rows: slice | None = None,
        total: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if (rows is None) != (total is None):
            raise ValueError("rows and total go together")
        self.generator, self.rows, self.total = generator, rows, total
        self.device = device

    def _draw(self, fn, size: Sequence[int], *args, device=None, **kwargs) -> torch.Tensor:
        size = list(size)
        if self.rows is not None:
            n = len(range(*self.rows.indices(self.total)))
            if size[0] != n:
                raise ValueError(f"batch size {size[0]} does not match rows {self.rows} of {self.total}")
            size = [self.total, *size[1:]]
        where = self.generator.device if self.generator is not None else (device or self.device)
        out = fn(*args, size, generator=self.generator, device=where, **kwargs)
        if self.rows is not None:
            out = out[self.rows]
        return out.to(device) if device is not None else out

    def rand(self, size: Sequence[int], **kwargs) -> torch.Tensor:
        return self._draw(torch.rand, size, **kwargs)

    def randn(self, size: Sequence[int], **kwargs) -> torch.Tensor:
        return self._draw(torch.randn, size, **kwargs)

    def randint(self, high: int, size: Sequence[int], **kwargs) -> torch.Tensor:
        return self._draw(torch.randint, size, high, **kwargs)

    def randn_like(self, input: torch.Tensor) -> torch.Tensor:
        return self.randn(input.shape, dtype=input.dtype, device=input.device)
