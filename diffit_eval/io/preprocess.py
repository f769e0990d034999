"""Dataset images -> the square uint8 images a reference is computed from.

Two ideas, both used only by `diffit-eval ref build`:

- crops (:data:`CROPS`, name -> function of a PIL RGB image and the target size):
  - `adm`: guided-diffusion's `center_crop_arr` (`image_datasets.py`), the preprocessing behind
    the ADM ImageNet reference batches: halve with BOX while the short side is >= 2x the target,
    bicubic-resize the short side to the target (both sides rounded), centre-crop.
  - `edm`: EDM's `dataset_tool.py --transform=center-crop --resolution=RxR`: centre-crop the
    largest square (offsets `(h - s) // 2`, `(w - s) // 2`), then PIL LANCZOS to RxR. On square
    inputs this equals dataset_tool's default (no `--transform`) LANCZOS scale, the route of EDM's
    CIFAR-10 and FFHQ-64 datasets; PIL returns an unchanged copy when the size already matches.
  - `none`: images must already be RxR; they are used as they are.
- image sets (:func:`open_image_set`): a folder (recursive, ImageNet-style class folders
  allowed), a zip of images, or an npz `arr_0`. Items are sorted by name so that every process of
  a distributed build sees the same order.

Every image is converted to RGB first (as ADM's loader does), so grayscale or palette files work.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from diffit_eval.errors import UserError
from diffit_eval.io.sources import IMAGE_SUFFIXES, NpzMember, _check_image_array

# --------------------------------------------------------------------------------------------
# Crops


def adm_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """ADM's `center_crop_arr` (guided-diffusion `image_datasets.py`)."""
    # BOX halving first: ADM's stand-in for PIL's `reducing_gap`, for a cleaner downsample.
    while min(*image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.Resampling.BOX)
    scale = size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.Resampling.BICUBIC)
    arr = np.array(image)
    crop_y = (arr.shape[0] - size) // 2
    crop_x = (arr.shape[1] - size) // 2
    return arr[crop_y : crop_y + size, crop_x : crop_x + size]


def edm_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """EDM `dataset_tool.py` `center_crop`: largest centred square, then LANCZOS to size x size."""
    arr = np.array(image)
    s = min(arr.shape[:2])
    h, w = arr.shape[:2]
    arr = arr[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2]
    return np.array(Image.fromarray(arr, "RGB").resize((size, size), Image.Resampling.LANCZOS))


def no_crop(image: Image.Image, size: int) -> np.ndarray:
    """Use the image as it is; it must already be size x size."""
    if image.size != (size, size):
        raise ValueError(f"is {image.size[0]}x{image.size[1]}, not {size}x{size}; choose --crop adm or edm")
    return np.array(image)


CROPS: dict[str, Callable[[Image.Image, int], np.ndarray]] = {
    "adm": adm_center_crop,
    "edm": edm_center_crop,
    "none": no_crop,
}


def check_crop(crop: str) -> None:
    if crop not in CROPS:
        raise UserError(f"unknown crop {crop!r}; choose one of {', '.join(CROPS)}")


# --------------------------------------------------------------------------------------------
# Image sets


class ImageSet(Protocol):
    path: Path
    num_images: int

    def name_of(self, index: int) -> str: ...

    def load(self, index: int) -> Image.Image: ...

    def labels(self) -> tuple[np.ndarray, list[str] | None] | None: ...


def _decode(data: bytes | Path, where: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:
        raise UserError(f"cannot read image {where} ({type(e).__name__}: {e})") from None


class FolderImages:
    """Every image file under a folder, recursive, sorted by relative path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        files = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files = sorted(files, key=lambda p: p.relative_to(path).as_posix())
        self.num_images = len(self.files)

    def name_of(self, index: int) -> str:
        return str(self.files[index])

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

    def load(self, index: int) -> Image.Image:
        return _decode(self.files[index], self.name_of(index))


class ZipImages:
    """Every image member of a zip, sorted by member name; one zip handle per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as z:
                names = [
                    n
                    for n in z.namelist()
                    if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith("__MACOSX/")
                ]
        except (zipfile.BadZipFile, OSError) as e:
            raise UserError(f"{path} is not a readable zip file ({e})") from None
        self.names = sorted(names)
        self.num_images = len(self.names)
        self._local = threading.local()

    def name_of(self, index: int) -> str:
        return f"{self.path}:{self.names[index]}"

    def labels(self) -> None:
        return None

    def load(self, index: int) -> Image.Image:
        z = getattr(self._local, "zip", None)
        if z is None:
            z = self._local.zip = zipfile.ZipFile(self.path)
        return _decode(z.read(self.names[index]), self.name_of(index))


class NpzImages:
    """The rows of an npz `arr_0` (uint8 [N, H, W, 3]), read one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.member = NpzMember(path, "arr_0")
        _check_image_array(self.member.shape, self.member.dtype, f"{path}:arr_0")
        self.num_images = self.member.shape[0]

    def name_of(self, index: int) -> str:
        return f"{self.path}:arr_0[{index}]"

    def labels(self) -> tuple[np.ndarray, None] | None:
        """`arr_1`, when present and one integer class per image."""
        try:
            labels = NpzMember(self.path, "arr_1").read_all()
        except UserError:
            return None
        if labels.shape != (self.num_images,) or not np.issubdtype(labels.dtype, np.integer):
            return None
        return labels.astype(np.int64), None

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.member.read_rows(index, 1)[0], "RGB")


def open_image_set(path: str | Path) -> ImageSet:
    """A folder of images, a zip of images, or an npz with `arr_0`."""
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


def load_preprocessed(images: ImageSet, index: int, resolution: int, crop: str) -> np.ndarray:
    """Image `index` of the set, cropped and resized to uint8 [resolution, resolution, 3]."""
    try:
        return CROPS[crop](images.load(index), resolution)
    except ValueError as e:
        raise UserError(f"{images.name_of(index)} {e}") from None
