"""Training data: any image source held in memory, and the order in which training visits it.

The source is opened through :func:`diffit_eval.io.sources.open_samples` (EDM's zip or folder of
PNGs with an optional dataset.json, an ADM npz, or a built-in dataset such as `sklearn-digits`)
and read once into a uint8 array, as EDM caches its datasets in memory (CIFAR-10 is 150 MB).

Order: epoch e visits the images in the permutation np.random.default_rng([seed, e]) draws, and
the global batch of the step that starts at image count n holds positions n .. n + batch - 1 of
that endless stream. It depends on neither the world size nor the process, and it needs no
state to resume: the position alone says which images come next. (EDM's InfiniteSampler shuffles
within a sliding window and deals images to ranks round-robin, so its order changes with the
number of GPUs; this one does not, which is what lets 2 processes match 1.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffit_eval.errors import UserError
from diffit_eval.io.sources import BUILTIN_SOURCES, open_samples

READ_BATCH = 1_000  # images per read while loading a source into memory


@dataclass
class TrainingSet:
    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray | None  # int64 [N] or float32 [N, D] from dataset.json / the built-in
    name: str  # what the user passed (path or built-in name)

    def __len__(self) -> int:
        return len(self.images)


def describe_data(spec: str, resolution: int) -> dict:
    """Check the dataset without reading it whole: what it is, how many images, their size."""
    if spec is None:
        raise UserError(
            "--data is required: an EDM dataset zip or folder, an ADM npz, or a built-in "
            f"dataset ({', '.join(BUILTIN_SOURCES)})"
        )
    try:
        source = open_samples(spec, resolution=resolution)
    except UserError as e:
        raise UserError(f"--data {spec}: {e}", e.code) from None
    h, w = source.resolution
    if (h, w) != (resolution, resolution):
        raise UserError(
            f"--data {spec} holds {w}x{h} images but the preset trains at {resolution}x{resolution}; "
            "resize the dataset first (EDM's dataset_tool.py --resolution)"
        )
    if source.num_images < 1:
        raise UserError(f"--data {spec} holds no images")
    builtin = str(spec) in BUILTIN_SOURCES and not Path(spec).exists()
    data = str(spec) if builtin else str(Path(spec).expanduser().resolve())
    return {"data": data, "num_images": int(source.num_images), "kind": type(source).__name__}


def check_labels(spec: str, resolution: int, num_classes: int) -> None:
    """A class-conditional preset needs one class index in [0, num_classes) per image."""
    labels = open_samples(spec, resolution=resolution).labels()
    if labels is None:
        raise UserError(
            f"--data {spec} has no class labels, but the preset is class-conditional ({num_classes} classes): "
            "use a dataset with labels (dataset.json, an npz with arr_1, or a built-in dataset)"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.min() < 0 or labels.max() >= num_classes:
        raise UserError(f"--data {spec}: its labels are not class indices in 0..{num_classes - 1}")


def label_vectors(labels: np.ndarray, idx: np.ndarray, num_classes: int, device) -> torch.Tensor:
    """The one-hot rows EDM's networks take as `class_labels`, for the images at `idx`."""
    from diffit.guidance import one_hot

    return one_hot(torch.as_tensor(labels[idx]), num_classes).to(device)


def load_training_set(spec: str, resolution: int) -> TrainingSet:
    """Read the whole source into memory (uint8 NHWC)."""
    source = open_samples(spec, resolution=resolution)
    images = np.empty((source.num_images, resolution, resolution, 3), dtype=np.uint8)
    at = 0
    for batch in source.iter_batches(READ_BATCH):
        images[at : at + len(batch)] = batch
        at += len(batch)
    return TrainingSet(images, source.labels(), str(spec))


class EpochOrder:
    """Dataset indices of stream positions: epoch e is np.random.default_rng([seed, e]).permutation(N)."""

    def __init__(self, num_images: int, seed: int) -> None:
        self.n, self.seed = num_images, seed
        self._cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> np.ndarray:
        """Dataset indices of stream positions start .. start + count - 1."""
        pos = np.arange(start, start + count, dtype=np.int64)
        epochs, within = np.divmod(pos, self.n)
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[within[sel]]
        return out


def to_model_range(images: np.ndarray, device: torch.device | str, channels: int = 3) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1] on `device` (EDM: x / 127.5 - 1); `channels=1`: the
    mean of R, G and B (a grey model; for grey data such as sklearn-digits it is the grey value itself)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    x = x.to(torch.float32) / 127.5 - 1
    return x.mean(1, keepdim=True) if channels == 1 else x
