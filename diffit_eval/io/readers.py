"""One reader per input kind: an image folder, a zip of images, an npz array.

Every way images enter the toolkit reads through these: the sample sources of an evaluation
(:mod:`diffit_eval.io.sources`, batches of one size) and the image sets of `ref build`
(:func:`open_image_set`, one image at a time, then cropped by :mod:`diffit_eval.io.preprocess`).
Each reader lists its images once, in a fixed order, and decodes them through the one
:func:`decode_image` (PIL, converted to RGB as ADM's loader does, so grayscale or palette files
work); an npz is read row-range by row-range from its member (:class:`NpzMember`), never
`np.load`ed whole, and checked by the one :func:`check_image_array`.
"""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from diffit_eval.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
DATASET_JSON = "dataset.json"  # EDM's label file inside a dataset folder or zip


def decode_image(data: bytes | Path, where: str) -> Image.Image:
    """An encoded image (file contents or a file) as a loaded PIL RGB image; `where` names it in the error."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:
        raise UserError(f"cannot read image {where} ({type(e).__name__}: {e})") from None


def check_image_array(shape: tuple, dtype: np.dtype, where: str) -> None:
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
        try:
            with self._zip.open(f"{key}.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                    version, np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError ...
            raise UserError(
                f"{path}: `{key}` is not a readable .npy array ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else 'bad header'})"
            ) from None
        self.shape, self.dtype, self.fortran = tuple(shape), np.dtype(dtype), fortran

    def read_rows(self, start: int, count: int) -> np.ndarray:
        row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        with self._zip.open(f"{self.key}.npy") as f:
            f.seek(self.offset + start * row)
            buf = f.read(count * row)
        return np.frombuffer(bytearray(buf), dtype=self.dtype).reshape((-1, *self.shape[1:]))

    def read_all(self) -> np.ndarray:
        return self.read_rows(0, self.shape[0]) if self.shape else np.load(self.path)[self.key]


# --------------------------------------------------------------------------------------------
# The readers: `num_images`, `name_of(i)`, `load(i)` (PIL RGB) and `read(i)` (uint8 [H, W, 3]).


class ImageSet(Protocol):
    """What `ref build` reads: images by index, and the classes it records (None: unlabelled)."""

    path: Path
    num_images: int

    def name_of(self, index: int) -> str: ...

    def load(self, index: int) -> Image.Image: ...

    def labels(self) -> tuple[np.ndarray, list[str] | None] | None: ...


class FolderImages:
    """Every image file under a folder, recursive.

    `order`: "name" sorts by the relative path as text (EDM's dataset order, `ref build`), "path"
    by path component (pathlib's order, the sample sources'); they differ only where a name holds
    a character that sorts before "/" (such as "-" or ".") at a separator's position.
    """

    def __init__(self, path: Path, order: Literal["name", "path"] = "name") -> None:
        self.path = path
        files = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files = sorted(files, key=lambda p: p.relative_to(path).as_posix()) if order == "name" else sorted(files)
        self.num_images = len(self.files)

    def name_of(self, index: int) -> str:
        return str(self.files[index])

    def load(self, index: int) -> Image.Image:
        return decode_image(self.files[index], self.name_of(index))

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.load(index))

    def labels(self) -> tuple[np.ndarray, list[str]] | None:
        """ImageNet-style class folders: each image's class is the index of its top-level folder
        among the sorted folder names (guided-diffusion's and torchvision's rule); None when any
        image lies directly in the root or there is only one folder."""
        tops = [p.relative_to(self.path).parts for p in self.files]
        if any(len(t) < 2 for t in tops):
            return None
        classes = sorted({t[0] for t in tops})
        if len(classes) < 2:
            return None
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[t[0]] for t in tops], np.int64), classes


class ZipImages:
    """Every image member of a zip, sorted by member name; one zip handle per thread.

    `skip_macosx`: `ref build`'s listing, every entry but the `__MACOSX/` resource forks macOS
    adds; without it, a sample source's: each name once, forks included (the first of them
    fails to decode, naming it).
    """

    def __init__(self, path: Path, skip_macosx: bool = True) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as z:
                entries = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise UserError(f"{path} is not a readable zip file ({e})") from None
        self.members = set(entries)
        listed = [n for n in entries if not n.startswith("__MACOSX/")] if skip_macosx else self.members
        self.names = sorted(n for n in listed if Path(n).suffix.lower() in IMAGE_SUFFIXES)
        self.num_images = len(self.names)
        self._local = threading.local()

    def read_member(self, name: str) -> bytes:
        z = getattr(self._local, "zip", None)
        if z is None:
            z = self._local.zip = zipfile.ZipFile(self.path)
        return z.read(name)

    def name_of(self, index: int) -> str:
        return f"{self.path}:{self.names[index]}"

    def load(self, index: int) -> Image.Image:
        return decode_image(self.read_member(self.names[index]), self.name_of(index))

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.load(index))

    def labels(self) -> None:
        return None


class NpzImages:
    """The rows of an npz `arr_0` (uint8 [N, H, W, 3]), read one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.member = NpzMember(path, "arr_0")
        check_image_array(self.member.shape, self.member.dtype, f"{path}:arr_0")
        self.num_images = self.member.shape[0]

    def name_of(self, index: int) -> str:
        return f"{self.path}:arr_0[{index}]"

    def read(self, index: int) -> np.ndarray:
        return self.member.read_rows(index, 1)[0]

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.read(index), "RGB")

    def labels(self) -> tuple[np.ndarray, None] | None:
        """`arr_1`, when present and one integer class per image."""
        try:
            labels = NpzMember(self.path, "arr_1").read_all()
        except UserError:
            return None
        if labels.shape != (self.num_images,) or not np.issubdtype(labels.dtype, np.integer):
            return None
        return labels.astype(np.int64), None


def open_image_set(path: str | Path) -> ImageSet:
    """A folder of images (recursive, ImageNet-style class folders allowed), a zip of images, or an
    npz with `arr_0`, for `ref build`; items sorted by name, so every process of a distributed
    build sees the same order."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"no such file or folder: {path}")
    if path.is_dir():
        images: ImageSet = FolderImages(path)
    elif path.suffix.lower() == ".zip":
        images = ZipImages(path)
    elif path.suffix.lower() == ".npz":
        images = NpzImages(path)
    else:
        raise UserError(f"{path}: expected an image folder, a .zip of images or an .npz with arr_0")
    if images.num_images == 0:
        if path.suffix.lower() == ".npz":
            raise UserError(f"{path} holds no images (its arr_0 has 0 rows)")
        raise UserError(f"{path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images
