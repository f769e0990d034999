"""Dataset images -> the square uint8 images a reference is computed from (`diffit-eval ref build`).

The images are read by :func:`diffit_eval.io.readers.open_image_set` (a folder, a zip or an npz,
converted to RGB), then cropped by one of :data:`CROPS` (name -> function of a PIL RGB image and
the target size):

- `adm`: guided-diffusion's `center_crop_arr` (`image_datasets.py`), the preprocessing behind
  the ADM ImageNet reference batches: halve with BOX while the short side is >= 2x the target,
  bicubic-resize the short side to the target (both sides rounded), centre-crop.
- `edm`: EDM's `dataset_tool.py --transform=center-crop --resolution=RxR`: centre-crop the
  largest square (offsets `(h - s) // 2`, `(w - s) // 2`), then PIL LANCZOS to RxR. On square
  inputs this equals dataset_tool's default (no `--transform`) LANCZOS scale, the route of EDM's
  CIFAR-10 and FFHQ-64 datasets; PIL returns an unchanged copy when the size already matches.
- `none`: images must already be RxR; they are used as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from diffit_eval.errors import UserError
from diffit_eval.io.readers import ImageSet

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


def load_preprocessed(images: ImageSet, index: int, resolution: int, crop: str) -> np.ndarray:
    """Image `index` of the set, cropped and resized to uint8 [resolution, resolution, 3]."""
    try:
        return CROPS[crop](images.load(index), resolution)
    except ValueError as e:
        raise UserError(f"{images.name_of(index)} {e}") from None
