"""Sample sources: where images come from, read a batch at a time.

Every source yields uint8 NHWC numpy batches, in a fixed order, without holding more than one
batch: an ADM npz is read straight from its `arr_0.npy` member (never `np.load`ed whole), an image
folder file by file (recursive, sorted by path), and a `diffit-eval sample` run folder shard by shard.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from diffit_eval.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class SampleSource(Protocol):
    path: Path
    num_images: int
    resolution: tuple[int, int]  # (H, W)

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]: ...

    def labels(self) -> np.ndarray | None: ...


class NpzMember:
    """One array inside an npz, read row-range by row-range without loading it."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise UserError(f"{path} is not a readable npz file ({e})") from None
        names = self._zip.namelist()
        if f"{key}.npy" not in names:
            have = ", ".join(sorted(n[:-4] for n in names if n.endswith(".npy"))) or "none"
            raise UserError(f"{path} has no `{key}` array (keys: {have})")
        with self._zip.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version, np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        self.shape, self.dtype, self.fortran = tuple(shape), np.dtype(dtype), fortran

    def read_rows(self, start: int, count: int) -> np.ndarray:
        row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        with self._zip.open(f"{self.key}.npy") as f:
            f.seek(self.offset + start * row)
            buf = f.read(count * row)
        return np.frombuffer(bytearray(buf), dtype=self.dtype).reshape((-1, *self.shape[1:]))

    def read_all(self) -> np.ndarray:
        return self.read_rows(0, self.shape[0]) if self.shape else np.load(self.path)[self.key]


def _check_image_array(shape: tuple, dtype: np.dtype, where: str) -> None:
    """ADM layout: uint8 [N, H, W, 3]. Say exactly what is wrong otherwise."""
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1):
        raise UserError(f"{where} holds grayscale images {list(shape)}; expected RGB uint8 [N, H, W, 3]")
    if len(shape) != 4:
        raise UserError(f"{where} has shape {list(shape)}; expected uint8 images [N, H, W, 3]")
    if shape[-1] != 3:
        if shape[1] == 3:
            raise UserError(f"{where} looks channels-first {list(shape)}; expected channels-last uint8 [N, H, W, 3]")
        raise UserError(f"{where} has shape {list(shape)}; expected uint8 images [N, H, W, 3]")
    if dtype != np.uint8:
        raise UserError(f"{where} is {dtype}; expected uint8 images [N, H, W, 3] with values 0-255")


class NpzSource:
    """An ADM-style npz: `arr_0` uint8 [N, H, W, 3], optional `arr_1` labels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.images = NpzMember(path, "arr_0")
        _check_image_array(self.images.shape, self.images.dtype, f"{path}:arr_0")
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
        self.files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise UserError(f"{path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.num_images = len(self.files)
        first = self._read(self.files[0])
        self.resolution = first.shape[:2]

    @staticmethod
    def _read(file: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(file) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as e:
            raise UserError(f"cannot read image {file} ({type(e).__name__}: {e})") from None

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        files = self.files if limit is None else self.files[:limit]
        for start in range(0, len(files), batch_size):
            batch = [self._read(f) for f in files[start:start + batch_size]]
            for f, im in zip(files[start:start + batch_size], batch):
                if im.shape[:2] != self.resolution:
                    raise UserError(
                        f"{f} is {im.shape[1]}x{im.shape[0]} but {self.files[0].name} is "
                        f"{self.resolution[1]}x{self.resolution[0]}; resize them first (see `diffit-eval ref build --crop`)"
                    )
            yield np.stack(batch)

    def labels(self) -> None:
        return None


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()


def open_samples(path: str | Path) -> SampleSource:
    """Open an npz, an image folder or a `diffit-eval sample` run folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"no such file or folder: {path}")
    if is_run_folder(path):
        from diffit_eval.shards import RunSource

        return RunSource(path)
    if path.is_dir():
        return FolderSource(path)
    if path.suffix == ".npz":
        return NpzSource(path)
    raise UserError(f"{path}: expected an .npz file (ADM layout), an image folder or a run folder")
