"""A sample run on disk: seed lists, shard files, the manifest, the final npz.

A sample run folder holds (the manifest and the lock are every run folder's, :mod:`diffit_eval.run_folder`)

    manifest.json                         what produced the images (the `config` part is compared on resume)
    .lock                                 flock held by rank 0 while a run writes here
    shards/shard_00000.npz                images uint8 [S, H, W, 3], labels int64 [S], seeds int64 [S]
    shards/shard_00000.features-<net>-<resize>.npz   the shard's Inception features, float32 rows (optional)
    shards/shard_00000.dinov2-<net>.npz   the shard's DINOv2 CLS tokens, float32 `dinov2` [S, d] (optional)
    samples_{N}x{H}x{W}x3.npz             ADM layout (`arr_0` images, `arr_1` labels), built from the shards
    grid.png                              the first 64 samples in seed order

Shard k holds seeds[k*S:(k+1)*S]. Every file is written under a temporary name and renamed, so a
file under its final name is complete; a killed run leaves only dot-files ending in `.tmp`,
which the next run removes (:func:`diffit_eval.run_folder.remove_stale_temporaries`). Nothing here holds more than one shard of images.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from diffit_eval import run_folder
from diffit_eval.assets.cache import atomic_path, write_json_atomic
from diffit_eval.errors import UserError
from diffit_eval.run_folder import MANIFEST

SHARD_DIR = "shards"
GRID = "grid.png"
GRID_SIDE = 8  # grid.png is GRID_SIDE x GRID_SIDE samples
GRID_GAP = 2  # white pixels between tiles, so a grid of noise still reads as separate samples
FORMAT = "diffit-eval-run/1"


# ----------------------------------------------------------------------------
# Seed lists: "0-49999", "0-9,20-29", "7".


MAX_SEEDS = 1_000_000  # 20x the protocol's 50,000; a run holds its seed list in memory
SEED_LIMIT = 1 << 32  # per-sample generators take the seed modulo 2**32 (diffit.random): larger ones repeat


def parse_seeds(text: str) -> list[int]:
    """EDM's seed syntax: comma-separated integers and inclusive ranges a-b, kept in the given order.

    Sizes are checked before anything is expanded: at most MAX_SEEDS seeds, each below 2**32.
    """
    ranges, total = [], 0
    for part in str(text).replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise UserError(f"bad --seeds {text!r}: expected ranges like 0-49999 or 0-9,20-29") from None
        if a < 0 or b < a:
            raise UserError(f"bad --seeds {text!r}: range {part!r} must be ascending and non-negative")
        if b >= SEED_LIMIT:
            raise UserError(f"bad --seeds {text!r}: seed {b} is too large (seeds must be below 2**32 = {SEED_LIMIT})")
        total += b - a + 1
        if total > MAX_SEEDS:
            raise UserError(
                f"bad --seeds {text!r}: more than {MAX_SEEDS:,} seeds; split the run into several "
                "runs of at most that many"
            )
        ranges.append(range(a, b + 1))
    seeds = [s for r in ranges for s in r]
    if not seeds:
        raise UserError(f"bad --seeds {text!r}: no seeds")
    return seeds


def format_seeds(seeds: list[int]) -> str:
    """The shortest text `parse_seeds` turns back into exactly `seeds` (runs of +1 steps become a-b)."""
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


# ----------------------------------------------------------------------------
# Shard files.


def num_shards(num_samples: int, shard_size: int) -> int:
    return math.ceil(num_samples / shard_size)


def shard_seeds(seeds: list[int], k: int, shard_size: int) -> list[int]:
    return seeds[k * shard_size : (k + 1) * shard_size]


def shard_path(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / SHARD_DIR / f"shard_{k:05d}.npz"


def features_path(run_dir: Path, k: int, network_sha256: str, resize: str) -> Path:
    """Named by the feature network and resize mode, so features of another network are never read."""
    return Path(run_dir) / SHARD_DIR / f"shard_{k:05d}.features-{network_sha256[:16]}-{resize}.npz"


def dinov2_features_path(run_dir: Path, k: int, network_sha256: str) -> Path:
    """A shard's DINOv2 rows, named by the weights' sha256 (the preprocessing has no options)."""
    return Path(run_dir) / SHARD_DIR / f"shard_{k:05d}.dinov2-{network_sha256[:16]}.npz"


def write_shard(path: Path, images: np.ndarray, labels: np.ndarray | None, seeds: list[int]) -> None:
    """One shard, atomically: images uint8 NHWC, seeds int64 and (class-conditional models) labels int64."""
    arrays = {"images": np.ascontiguousarray(images, dtype=np.uint8), "seeds": np.asarray(seeds, dtype=np.int64)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_shard(path: Path, expected_seeds: list[int] | None = None) -> dict[str, np.ndarray]:
    """A shard's arrays; with `expected_seeds`, a shard holding other seeds is an error, never silently used."""
    try:
        with np.load(path) as z:
            out = {key: z[key] for key in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"cannot read shard {path} ({e}); delete it and re-run the sample command") from None
    if expected_seeds is not None and not np.array_equal(out["seeds"], np.asarray(expected_seeds, dtype=np.int64)):
        raise UserError(
            f"shard {path} holds other seeds than the manifest says; delete it and re-run the sample command"
        )
    return out


# ----------------------------------------------------------------------------
# Manifest.


def read_manifest(run_dir: Path) -> dict:
    return run_folder.read_manifest(run_dir, FORMAT, "sample run", ("config",))


def write_manifest(run_dir: Path, manifest: dict) -> None:
    write_json_atomic(Path(run_dir) / MANIFEST, manifest)


def run_seeds(manifest: dict) -> list[int]:
    return parse_seeds(manifest["config"]["seeds"])


def missing_shards(run_dir: Path, manifest: dict) -> list[int]:
    c = manifest["config"]
    count = num_shards(manifest["num_samples"], c["shard_size"])
    return [k for k in range(count) if not shard_path(run_dir, k).is_file()]


# ----------------------------------------------------------------------------
# Outputs assembled from the shards.


def npz_name(num_samples: int, height: int, width: int) -> str:
    return f"samples_{num_samples}x{height}x{width}x3.npz"


def _write_npy_header(f, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(f, header)
    except ValueError:  # header over 64 KiB: format 2.0
        np.lib.format.write_array_header_2_0(f, header)


def iter_shards(run_dir: Path, manifest: dict) -> Iterator[dict[str, np.ndarray]]:
    """The shards in seed order, one in memory at a time, each checked against the manifest's seeds."""
    seeds, size = run_seeds(manifest), manifest["config"]["shard_size"]
    for k in range(num_shards(len(seeds), size)):
        yield read_shard(shard_path(run_dir, k), shard_seeds(seeds, k, size))


def assemble_npz(run_dir: Path, manifest: dict) -> Path:
    """Stream the shards into the ADM npz (`arr_0` uint8 [N, H, W, 3], `arr_1` int64 [N] if conditional).

    The zip is written member by member exactly as `np.savez` lays it out (stored, zip64), with
    each shard's bytes appended after the array header, so no more than one shard is in memory.
    """
    run_dir = Path(run_dir)
    n, (h, w) = manifest["num_samples"], manifest["resolution"]
    final = run_dir / npz_name(n, h, w)
    conditional = manifest["config"]["num_classes"] > 0
    with atomic_path(final) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as f:
                _write_npy_header(f, np.uint8, (n, h, w, 3))
                for shard in iter_shards(run_dir, manifest):
                    f.write(np.ascontiguousarray(shard["images"], dtype=np.uint8).data)
            if conditional:
                with zf.open("arr_1.npy", "w", force_zip64=True) as f:
                    _write_npy_header(f, np.dtype("<i8"), (n,))
                    for shard in iter_shards(run_dir, manifest):
                        f.write(np.ascontiguousarray(shard["labels"], dtype="<i8").data)
    return final


def first_samples(run_dir: Path, manifest: dict, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `count` images (and labels) in seed order, reading only the shards needed."""
    images, labels, have = [], [], 0
    for shard in iter_shards(run_dir, manifest):
        take = min(count - have, len(shard["images"]))
        images.append(shard["images"][:take])
        if "labels" in shard:
            labels.append(shard["labels"][:take])
        have += take
        if have >= count:
            break
    return np.concatenate(images), (np.concatenate(labels) if labels else None)


def write_grid(run_dir: Path, manifest: dict) -> list[int] | None:
    """grid.png: the first 64 samples in seed order, GRID_SIDE per row; returns their labels."""
    from PIL import Image

    images, labels = first_samples(run_dir, manifest, GRID_SIDE * GRID_SIDE)
    n, h, w, _ = images.shape
    rows = math.ceil(n / GRID_SIDE)
    cols = min(n, GRID_SIDE)
    g = GRID_GAP
    canvas = np.full((rows * (h + g) + g, cols * (w + g) + g, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, GRID_SIDE)
        canvas[g + r * (h + g) : g + r * (h + g) + h, g + c * (w + g) : g + c * (w + g) + w] = im
    path = Path(run_dir) / GRID
    with atomic_path(path) as tmp:
        Image.fromarray(canvas).save(tmp, format="PNG")
    return None if labels is None else [int(x) for x in labels]


# ----------------------------------------------------------------------------
# A run folder as a sample source (diffit_eval.io.sources.SampleSource).


class RunSource:
    """A finished `diffit-eval sample` run read shard by shard in seed order; `manifest` is its manifest.json."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.seeds = run_seeds(self.manifest)
        self.shard_size = self.manifest["config"]["shard_size"]
        self.num_images = len(self.seeds)
        self.resolution = tuple(self.manifest["resolution"])
        missing = missing_shards(self.path, self.manifest)
        if missing:
            total = num_shards(self.num_images, self.shard_size)
            raise UserError(
                f"run {self.path} is incomplete: {len(missing)} of {total} shards are missing; "
                f"re-run the sample command to resume it: {self.manifest.get('command', 'diffit-eval sample ...')}"
            )

    @property
    def num_shards(self) -> int:
        return num_shards(self.num_images, self.shard_size)

    def iter_batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        """uint8 NHWC batches of `batch_size` in seed order (batches span shard boundaries, like an npz)."""
        n = self.num_images if limit is None else min(limit, self.num_images)
        carry = np.zeros((0, *self.resolution, 3), dtype=np.uint8)  # the tail of the previous shard
        produced = 0
        for shard in iter_shards(self.path, self.manifest):
            images = shard["images"][: n - produced - len(carry)]
            buf = np.concatenate([carry, images]) if len(carry) else images
            start = 0
            while len(buf) - start >= batch_size:
                yield buf[start : start + batch_size]
                start += batch_size
            produced += start
            carry = buf[start:]
            if produced + len(carry) >= n:
                break
        if len(carry):
            yield carry

    def labels(self) -> np.ndarray | None:
        if self.manifest["config"]["num_classes"] == 0:
            return None
        return np.concatenate([shard["labels"] for shard in iter_shards(self.path, self.manifest)])
