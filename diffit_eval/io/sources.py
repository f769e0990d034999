"""Sample sources: where images come from, read a batch at a time.

Every source yields uint8 NHWC numpy batches, in a fixed order, without holding more than one
batch: an ADM npz is read straight from its `arr_0.npy` member (never `np.load`ed whole), an image
folder file by file (recursive, sorted by path), a zip of images (EDM's dataset layout, sorted by
member name), and a `diffit-eval sample` run folder shard by shard. Files are listed and decoded
by the readers of :mod:`diffit_eval.io.readers`; a source adds batching, the one-size check and
the labels. Folders and zips may carry EDM's `dataset.json`
(`{"labels": [["00000/img00000000.png", 6], ...]}`) with per-image labels.
Built-in datasets that ship inside installed packages are opened by name (:data:`BUILTIN_SOURCES`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from diffit_eval.errors import UserError
from diffit_eval.io.readers import (
    DATASET_JSON,
    IMAGE_SUFFIXES,
    FolderImages,
    NpzMember,
    ZipImages,
    check_image_array,
)
from diffit_eval.run_folder import is_run_folder


class SampleSource(Protocol):
    path: Path
    num_images: int
    resolution: tuple[int, int]  # (H, W)

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]: ...

    def labels(self) -> np.ndarray | None: ...


class NpzSource:
    """An ADM-style npz: `arr_0` uint8 [N, H, W, 3], optional `arr_1` labels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.images = NpzMember(path, "arr_0")
        check_image_array(self.images.shape, self.images.dtype, f"{path}:arr_0")
        if self.images.fortran:
            raise UserError(f"{path}:arr_0 is stored in Fortran order; save it C-contiguous")
        self.num_images = self.images.shape[0]
        self.resolution = tuple(self.images.shape[1:3])

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = self.num_images if limit is None else min(limit, self.num_images)
        for start in range(0, n, batch_size):
            yield self.images.read_rows(start, min(batch_size, n - start))

    def labels(self) -> np.ndarray | None:
        try:
            return NpzMember(self.path, "arr_1").read_all()
        except UserError:
            return None


class FolderSource:
    """A folder of PNG/JPEG images, recursive, sorted by path; all images must share one size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = FolderImages(path, order="path")
        self.files = self.reader.files
        if not self.files:
            raise UserError(f"{path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.num_images = len(self.files)
        self.resolution = self.reader.read(0).shape[:2]

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = self.num_images if limit is None else min(limit, self.num_images)
        for start in range(0, n, batch_size):
            batch = [self.reader.read(i) for i in range(start, min(start + batch_size, n))]
            for f, im in zip(self.files[start : start + batch_size], batch):
                if im.shape[:2] != self.resolution:
                    raise UserError(
                        f"{f} is {im.shape[1]}x{im.shape[0]} but {self.files[0].name} is "
                        f"{self.resolution[1]}x{self.resolution[0]}; resize them first (see `diffit-eval ref build --crop`)"
                    )
            yield np.stack(batch)

    def labels(self) -> np.ndarray | None:
        names = [f.relative_to(self.path).as_posix() for f in self.files]
        meta = self.path / DATASET_JSON
        return _dataset_json_labels(meta.read_bytes(), names, str(meta)) if meta.is_file() else None


def _dataset_json_labels(text: bytes, names: list[str], where: str) -> np.ndarray | None:
    """EDM's dataset.json: {"labels": [[name, label], ...]} or {"labels": null}; int64 [N] or float32 [N, D]."""
    try:
        labels = json.loads(text)["labels"]
        if labels is None:
            return None
        labels = dict(labels)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{where} is not an EDM dataset.json with a `labels` list ({type(e).__name__}: {e})") from None
    missing = [n for n in names if n not in labels]
    if missing:
        raise UserError(f"{where} has no label for {len(missing)} image(s), e.g. {missing[0]}")
    out = np.array([labels[n] for n in names])
    return out.astype({1: np.int64, 2: np.float32}[out.ndim])


class ZipSource:
    """A zip of images (EDM's `dataset_tool.py` output), sorted by member name, optional dataset.json."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = ZipImages(path, skip_macosx=False)
        self.names = self.reader.names
        self._has_json = DATASET_JSON in self.reader.members
        if not self.names:
            raise UserError(f"{path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.num_images = len(self.names)
        self.resolution = self.reader.read(0).shape[:2]

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = self.num_images if limit is None else min(limit, self.num_images)
        for start in range(0, n, batch_size):
            batch = [self.reader.read(i) for i in range(start, min(start + batch_size, n))]
            for name, im in zip(self.names[start : start + batch_size], batch):
                if im.shape[:2] != self.resolution:
                    raise UserError(
                        f"{self.path}:{name} is {im.shape[1]}x{im.shape[0]} but {self.names[0]} is "
                        f"{self.resolution[1]}x{self.resolution[0]}; all images must share one size"
                    )
            yield np.stack(batch)

    def labels(self) -> np.ndarray | None:
        if not self._has_json:
            return None
        return _dataset_json_labels(self.reader.read_member(DATASET_JSON), self.names, f"{self.path}:{DATASET_JSON}")


class ArraySource:
    """Images already in memory (a built-in dataset): uint8 [N, H, W, 3] and optional labels."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        check_image_array(images.shape, images.dtype, name)
        self.path = Path(name)
        self.images, self._labels = images, labels
        self.num_images = len(images)
        self.resolution = tuple(images.shape[1:3])

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = self.num_images if limit is None else min(limit, self.num_images)
        for start in range(0, n, batch_size):
            yield self.images[start : min(start + batch_size, n)]

    def labels(self) -> np.ndarray | None:
        return self._labels


# ----------------------------------------------------------------------------
# Built-in datasets: real images shipped inside installed packages, opened by name.

DIGITS_SPLIT_SEED = 0  # np.random.default_rng(0).permutation(1797) orders scikit-learn's digits
DIGITS_NUM_TRAIN = 1500  # the first 1,500 of that order are the training split, the other 297 held out
DIGITS_RESOLUTION = 32  # default rendering side when no resolution is asked for
# `sklearn-digits-train500`: a seeded 500 of the training split, the InceptionV3 reference of the
# demo and of `regress --suite digits` (500 forwards at 299x299 instead of 1,500 on a CPU).
DIGITS_SUBSET, DIGITS_SUBSET_SEED = 500, 0


def sklearn_digits_subset(resolution: int, count: int = DIGITS_SUBSET, seed: int = DIGITS_SUBSET_SEED):
    """`count` training digits chosen by `seed` (numpy PCG64, without replacement), in split order."""
    images, labels = sklearn_digits("train", resolution)
    keep = np.sort(np.random.default_rng(seed).choice(len(images), size=count, replace=False))
    return images[keep], labels[keep]


def sklearn_digits(split: str = "train", resolution: int = DIGITS_RESOLUTION) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as uint8 RGB [N, R, R, 3] plus their classes, in the fixed split order.

    Pixel values 0-16 become round(v * 255 / 16) (white strokes on black), then the 8x8 image is
    resized to R x R with PIL's bilinear filter and copied into the three channels. The split is a
    permutation drawn with numpy's PCG64 from seed 0: its first 1,500 images are `train`, the
    remaining 297 `heldout`; `all` is the 1,797 in scikit-learn's order.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the sklearn-digits dataset needs scikit-learn: pip install scikit-learn") from None
    from PIL import Image

    digits = load_digits()
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(digits.images))
    index = {
        "train": order[:DIGITS_NUM_TRAIN],
        "heldout": order[DIGITS_NUM_TRAIN:],
        "all": np.arange(len(digits.images)),
    }[split]
    gray = np.rint(digits.images[index] * (255 / 16)).astype(np.uint8)
    if resolution != gray.shape[1]:
        gray = np.stack([np.asarray(Image.fromarray(g).resize((resolution, resolution), Image.BILINEAR)) for g in gray])
    return np.repeat(gray[..., None], 3, axis=-1), digits.target[index].astype(np.int64)


# name -> fn(resolution) -> (images uint8 NHWC, labels)
BUILTIN_SOURCES: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray | None]]] = {
    "sklearn-digits": lambda r: sklearn_digits("train", r),
    "sklearn-digits-heldout": lambda r: sklearn_digits("heldout", r),
    "sklearn-digits-all": lambda r: sklearn_digits("all", r),
    f"sklearn-digits-train{DIGITS_SUBSET}": sklearn_digits_subset,
}


def open_builtin(name: str, resolution: int | None = None) -> ArraySource:
    """A built-in dataset by name, rendered at `resolution` (its default when None)."""
    if name not in BUILTIN_SOURCES:
        raise UserError(f"unknown built-in dataset {name!r}; choose from {', '.join(BUILTIN_SOURCES)}")
    images, labels = BUILTIN_SOURCES[name](resolution or DIGITS_RESOLUTION)
    return ArraySource(name, images, labels)


def open_samples(path: str | Path, resolution: int | None = None) -> SampleSource:
    """Open an npz, an image folder, a zip of images, a `diffit-eval sample` run folder or a built-in dataset.

    `resolution` only applies to built-in datasets (rendered at that side); files are read as they are.
    """
    if str(path) in BUILTIN_SOURCES and not Path(path).exists():
        return open_builtin(str(path), resolution)
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"no such file or folder: {path}")
    if is_run_folder(path):
        from diffit_eval.generate.shards import RunSource

        return RunSource(path)
    if path.is_dir():
        return FolderSource(path)
    if path.suffix == ".npz":
        return NpzSource(path)
    if path.suffix.lower() == ".zip":
        return ZipSource(path)
    raise UserError(f"{path}: expected an .npz file (ADM layout), an image folder, a zip of images or a run folder")
