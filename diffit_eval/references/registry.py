"""Named reference statistics: the registry, the cached files, inspection, and building new ones.

- The registry is one human-readable file, `reference_stats/registry.toml` (see its README): a
  name -> URL, dataset, resolution, resize mode, what the file holds, protocol, source, licence.
- A fetched or built reference lives at `cache_dir()/refs/<name>.npz` (other code, the regress
  suites included, relies on that path), with a record `<name>.json` beside it: sha256, size, URL,
  when it was fetched. Publishers give no hashes for these files, so the hash seen on first
  download is recorded and checked afterwards: the size on every use, the sha256 on
  `ref fetch` / `ref show` / `verify=True`. A file that fails a check is removed, never reused.
- `ref build` streams a dataset through the feature network into float64 running sums, split
  into fixed chunks of images so that any number of processes writes the same bytes.

:mod:`diffit_eval.references.store` uses :func:`is_registry_name`, :func:`registry_entry` and
:func:`resolve_reference` to turn `--ref NAME` into a file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from diffit_eval import distributed
from diffit_eval.assets.cache import atomic_path, cache_dir, check_writable, download, sha256_file, write_json_atomic
from diffit_eval.errors import Interrupted, MissingAssetError, UserError
from diffit_eval.features.extract import FeatureSet, extract_batch
from diffit_eval.features.stats import RunningStats
from diffit_eval.protocol import DEFAULT_RESIZE, POOL_DIM, RESIZE_MODES, SPATIAL_DIM
from diffit_eval.provenance import now_iso, package_versions
from diffit_eval.shipped import shipped_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REGISTRY_PATH = shipped_dir("reference_stats") / "registry.toml"
HOLDS = ("fid", "sfid", "pr")  # what a reference can support; IS needs no reference
# field -> type; every registry entry must have these (reference_stats/README.md).
REQUIRED_FIELDS = {"url": str, "dataset": str, "resolution": int, "resize": str, "holds": list,
                   "content": str, "protocol": str, "source": str, "licence": str}
OPTIONAL_FIELDS = {"pr_images": int, "sha256": str, "size": int}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a name is never a path


class CorruptReferenceError(UserError):
    """A cached reference failed its size or hash check and was removed."""


# --------------------------------------------------------------------------------------------
# The registry file


def _validate_entry(name: str, entry: dict, where: Path) -> None:

    def bad(why: str) -> UserError:
        return UserError(f"{where}: entry {name!r} {why}")

    if not NAME_PATTERN.match(name):
        raise bad("is not a valid name (letters, digits, '.', '_', '-')")
    for key, kind in REQUIRED_FIELDS.items():
        if not isinstance(entry.get(key), kind) or entry.get(key) in ("", []):
            raise bad(f"needs `{key}` ({kind.__name__})")
    for key, kind in OPTIONAL_FIELDS.items():
        if key in entry and not isinstance(entry[key], kind):
            raise bad(f"has `{key}` that is not {kind.__name__}")
    unknown = set(entry) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        raise bad(f"has unknown field(s) {', '.join(sorted(unknown))}")
    if entry["resize"] not in RESIZE_MODES:
        raise bad(f"has resize {entry['resize']!r}; expected one of {', '.join(RESIZE_MODES)}")
    if not set(entry["holds"]) <= set(HOLDS):
        raise bad(f"has holds {entry['holds']}; expected a subset of {list(HOLDS)}")
    if ("pr" in entry["holds"]) != ("pr_images" in entry):
        raise bad("must give `pr_images` exactly when it holds `pr`")
    if not entry["url"].startswith("https://"):
        raise bad("needs an https:// url")


@functools.cache
def load_registry(path: Path) -> dict[str, dict]:
    """Parse and validate a registry file: name -> entry (with `name` and `built: False` added)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read the reference registry {path} ({e})") from None
    entries = data.get("refs", {})
    for name, entry in entries.items():
        _validate_entry(name, entry, path)
    return {name: {"name": name, "built": False, **entry} for name, entry in entries.items()}


def registry() -> dict[str, dict]:
    return load_registry(REGISTRY_PATH)


# --------------------------------------------------------------------------------------------
# The cache: files, records, checks


def refs_dir() -> Path:
    return cache_dir() / "refs"


def cached_path(name: str) -> Path:
    return refs_dir() / f"{name}.npz"


def record_path(name: str) -> Path:
    return refs_dir() / f"{name}.json"


def part_path(name: str) -> Path:
    """Where :func:`diffit_eval.assets.cache.download` keeps an unfinished download of `name`."""
    path = cached_path(name)
    return path.with_name(f".{path.name}.part")


def read_record(name: str) -> dict | None:
    try:
        return json.loads(record_path(name).read_text())
    except (OSError, ValueError):
        return None


def _built_names() -> list[str]:
    """References in the cache that the registry does not name (made by `ref build`, or placed there)."""
    if not refs_dir().is_dir():
        return []
    known = registry()
    return sorted(p.stem for p in refs_dir().glob("*.npz") if p.stem not in known and NAME_PATTERN.match(p.stem))


def read_meta(path: Path) -> dict:
    """The `meta` JSON of a file written by `ref build` ({} for other files); reads only that member."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"])) if "meta" in z.files else {}
    except Exception:
        return {}


def _npz_problem(path: Path) -> str | None:
    """Why `path` is not a usable statistics npz (truncated, not a zip, no mu/sigma), or None."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        return f"not a complete npz file: {e}"
    missing = [k for k in ("mu", "sigma") if f"{k}.npy" not in names]
    return f"no {' or '.join(missing)} array" if missing else None


def _remove(name: str) -> None:
    for p in (cached_path(name), record_path(name)):
        p.unlink(missing_ok=True)


def _corrupt(name: str, entry: dict, problem: str) -> CorruptReferenceError:
    path = cached_path(name)
    _remove(name)
    again = ("rebuild it with `diffit-eval ref build`" if entry["built"]
             else f"run `diffit-eval ref fetch {name}` to download it again")
    return CorruptReferenceError(f"cached reference {name} at {path} was corrupt ({problem}) and has been removed; {again}")


def verify_cached(name: str, *, full: bool = False) -> Path:
    """Check a cached reference against its recorded (or published) size and, if `full`, sha256.

    A file with no record yet (placed by hand, or cached by an older version) is checked in full
    once and its hash recorded. Raises :class:`CorruptReferenceError` after removing a bad file.
    """
    entry = registry_entry(name)
    path = cached_path(name)
    rec = read_record(name)
    want_size = entry.get("size") or (rec or {}).get("size")
    want_sha = entry.get("sha256") or (rec or {}).get("sha256")
    size = path.stat().st_size
    if want_size is not None and size != want_size:
        raise _corrupt(name, entry, f"{size} bytes, expected {want_size}")
    if rec is None or full:
        problem = _npz_problem(path)
        if problem:
            raise _corrupt(name, entry, problem)
        sha = sha256_file(path)
        if want_sha is not None and sha != want_sha.lower():
            raise _corrupt(name, entry, f"sha256 {sha[:12]}... differs from the recorded {want_sha[:12]}...")
        if rec is None:
            source = "registry" if entry.get("sha256") else "first seen in the cache"
            write_json_atomic(record_path(name), {"name": name, "url": entry.get("url"), "sha256": sha, "size": size,
                                                  "sha256_source": source, "recorded": now_iso()})
    return path


# --------------------------------------------------------------------------------------------
# The contract used by diffit_eval.references.store: names -> entries -> files


def is_registry_name(name: str) -> bool:
    """A registry entry, or a reference stored in the cache under that name."""
    if not NAME_PATTERN.match(name):
        return False
    return name in registry() or cached_path(name).is_file()


def registry_entry(name: str) -> dict:
    """The registry entry of `name`; for a reference built into the cache, one made from its metadata."""
    known = registry()
    if name in known:
        return dict(known[name])
    path = cached_path(name)
    if NAME_PATTERN.match(name) and path.is_file():
        meta = {**read_meta(path), **(read_record(name) or {})}
        pr = meta.get("pr_images")
        return {
            "name": name, "built": True, "url": None,
            "dataset": meta.get("dataset"), "resolution": meta.get("resolution"),
            "resize": meta.get("resize", DEFAULT_RESIZE), "holds": meta.get("holds", ["fid"]),
            **({"pr_images": pr} if pr else {}),
            "content": f"built by `diffit-eval ref build` from {meta.get('source', 'unknown data')}"
                       if meta.get("source") else "a reference placed in the cache by hand",
            "protocol": f"crop {meta.get('crop', '?')}, resize {meta.get('resize', 'legacy-tf')}",
            "source": meta.get("source"), "licence": "that of the source images",
        }
    names = ", ".join(list(known) + _built_names())
    raise UserError(f"unknown reference {name!r}; known: {names} (see `diffit-eval ref list`)")


def _drop_empty_part(name: str) -> None:
    """A failed connection can leave a 0-byte `.part`; it holds nothing to resume, so never keep it."""
    part = part_path(name)
    if part.exists() and part.stat().st_size == 0:
        part.unlink()


def _download(name: str, entry: dict, progress: bool) -> Path:
    url, path = entry["url"], cached_path(name)
    try:
        download(url, path, what=f"reference {name}", alternative="--ref PATH",
                 sha256=entry.get("sha256"), size=entry.get("size"), progress=progress)
    except UserError:  # offline, interrupted (cache.download keeps a non-empty .part to resume) or corrupt
        _drop_empty_part(name)
        raise
    problem = _npz_problem(path)
    if problem:
        path.unlink()
        raise UserError(f"downloaded reference {name} from {url} is unusable ({problem}); it was deleted, run again")
    write_json_atomic(record_path(name), {
        "name": name, "url": url, "sha256": sha256_file(path), "size": path.stat().st_size,
        "sha256_source": "registry" if entry.get("sha256") else "first download", "fetched": now_iso()})
    return path


def resolve_reference(name: str, allow_download: bool = True, *, verify: bool = False, progress: bool = True) -> Path:
    """The cached file of `name`, checked (size; sha256 with `verify`); else download it if allowed.

    A cached file that fails its check is removed and, for a registry entry, downloaded again.
    """
    entry = registry_entry(name)
    path = cached_path(name)
    if path.is_file():
        try:
            return verify_cached(name, full=verify)
        except CorruptReferenceError as e:
            if entry["built"] or not allow_download:
                raise
            print(f"diffit-eval: warning: {e}", file=sys.stderr)
    if not allow_download:
        raise MissingAssetError(f"reference {name} is not cached at {path} and downloads are off; "
                                f"fetch {entry['url']} by hand and pass --ref PATH, or run `diffit-eval ref fetch {name}`")
    return _download(name, entry, progress)


def fetch_reference(name: str, *, progress: bool = True) -> tuple[Path, str]:
    """Make sure `name` is in the cache and passes a full check; returns (path, what happened)."""
    entry = registry_entry(name)
    if cached_path(name).is_file():
        try:
            path = verify_cached(name, full=True)
            return path, "built locally; verified" if entry["built"] else "already cached; verified"
        except CorruptReferenceError as e:
            if entry["built"]:
                raise
            print(f"diffit-eval: warning: {e}", file=sys.stderr)
    return _download(name, entry, progress), "downloaded; verified"


# --------------------------------------------------------------------------------------------
# Listing and inspection


def list_references() -> list[dict]:
    """One row per registry entry and per reference found in the cache: name, what it holds, cached or not."""
    rows = []
    for name in list(registry()) + _built_names():
        entry = registry_entry(name)
        path, part = cached_path(name), part_path(name)
        if path.is_file():
            status, size = "built" if entry["built"] else "cached", path.stat().st_size
        elif part.is_file():
            status, size = f"partial ({part.stat().st_size / 2**20:.0f} MiB)", entry.get("size")
        else:
            status, size = "-", entry.get("size")
        rows.append({"name": name, "dataset": entry.get("dataset"), "resolution": entry.get("resolution"),
                     "resize": entry.get("resize"), "holds": entry.get("holds", []), "status": status,
                     "size": size, "path": str(path)})
    return rows


def _array_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """key -> (shape, dtype) of every array in an npz, read from the headers (no data loaded)."""
    out = {}
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            if not member.endswith(".npy"):
                continue
            with z.open(member) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
            out[member[:-4]] = (tuple(shape), np.dtype(dtype))
    return out


def _covariance_checks(label: str, mu: np.ndarray, sigma: np.ndarray) -> list[tuple[str, bool, str]]:
    """finite, symmetric, eigenvalues >= -1e-6 x the largest: what a usable mean/covariance pair needs."""
    checks = [(f"{label}: finite", bool(np.isfinite(mu).all() and np.isfinite(sigma).all()), "")]
    if sigma.ndim != 2 or sigma.shape != (mu.shape[0], mu.shape[0]):
        return checks + [(f"{label}: shapes agree", False, f"{list(mu.shape)} vs {list(sigma.shape)}")]
    if not checks[0][1]:
        return checks
    scale = float(np.abs(sigma).max()) or 1.0
    asym = float(np.abs(sigma - sigma.T).max()) / scale
    checks.append((f"{label}: symmetric", asym <= 1e-9, f"max |S - S^T| / max |S| = {asym:.1e}"))
    w = np.linalg.eigvalsh((sigma + sigma.T) / 2)
    rel = float(w[0] / w[-1]) if w[-1] > 0 else float("-inf")
    checks.append((f"{label}: positive semi-definite", rel >= -1e-6, f"smallest / largest eigenvalue = {rel:.1e}"))
    return checks


def inspect_file(path: str | os.PathLike) -> dict:
    """Keys, shapes, dtypes, image count, provenance and sanity checks of a reference npz."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a readable npz file (truncated or not an npz?)")
    arrays = _array_headers(path)
    meta = read_meta(path)
    checks = []
    with np.load(path, allow_pickle=False) as z:
        for mu_key, sigma_key in (("mu", "sigma"), ("mu_s", "sigma_s")):
            if mu_key in arrays and sigma_key in arrays:
                checks += _covariance_checks(f"{mu_key}/{sigma_key}", z[mu_key].astype(np.float64),
                                             z[sigma_key].astype(np.float64))
    if "mu" not in arrays or "sigma" not in arrays:
        checks.append(("has mu and sigma", False, "FID needs both"))
    for key, dim in (("mu", POOL_DIM), ("mu_s", SPATIAL_DIM)):
        if key in arrays:
            checks.append((f"{key}: {dim}-d", arrays[key][0] == (dim,), f"shape {list(arrays[key][0])}"))
    if "arr_0" in arrays:
        shape, dtype = arrays["arr_0"]
        ok = len(shape) == 4 and shape[-1] == 3 and dtype == np.uint8
        checks.append(("arr_0: uint8 [N, H, W, 3]", ok, f"{list(shape)} {dtype}"))
    holds = [m for m, keys in (("fid", ("mu", "sigma")), ("sfid", ("mu_s", "sigma_s")), ("pr", ("arr_0",)))
             if all(k in arrays for k in keys)]
    return {"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path),
            "arrays": {k: {"shape": list(s), "dtype": str(d)} for k, (s, d) in arrays.items()},
            "pr_images": arrays["arr_0"][0][0] if "arr_0" in arrays else None,
            "statistics_count": meta.get("count"), "holds": holds, "meta": meta,
            "checks": [{"check": c, "ok": ok, "detail": detail} for c, ok, detail in checks],
            "ok": all(ok for _, ok, _ in checks)}


def show_reference(spec: str) -> dict:
    """`ref show`: a file is inspected; a name gives its entry, its cache record and, once cached,
    a full check (sha256) and inspection of the file. Nothing is downloaded."""
    path = Path(spec).expanduser()
    if path.exists():
        return {"name": None, "entry": None, "record": None, "file": inspect_file(path)}
    entry = registry_entry(spec)  # an unknown name raises, listing the known ones
    file = inspect_file(verify_cached(spec, full=True)) if cached_path(spec).is_file() else None
    return {"name": spec, "entry": entry, "record": read_record(spec), "file": file,
            "cached_path": str(cached_path(spec))}


# --------------------------------------------------------------------------------------------
# Building a reference from a dataset


def pr_subset(count: int, pr_images: int, seed: int) -> np.ndarray:
    """Sorted indices of the images kept for precision/recall: chosen up front from the seed alone."""
    k = min(pr_images, count)
    return np.sort(np.random.default_rng(seed).choice(count, size=k, replace=False)) if k else np.zeros(0, np.int64)


def _main_then_share(fn, d: distributed.Dist):
    """Run `fn` on rank 0 only (a download, a file write) and hand its result or its error to every rank."""
    result = None
    if d.is_main:
        try:
            result = ("ok", fn())
        except UserError as e:
            result = ("error", e)
        except OSError as e:  # e.g. a full disk while writing: every rank must hear of it
            result = ("error", UserError(f"{type(e).__name__}: {e}"))
    status, value = distributed.broadcast_object(result, d)
    if status == "error":
        raise value
    return value


class _ChunkWorker:
    """Features and P/R images of one chunk of images, on this rank."""

    def __init__(self, images, net, *, resolution: int, crop: str, batch_size: int, pr_positions: dict[int, int],
                 threads: ThreadPoolExecutor | None, advance) -> None:
        self.images, self.net, self.resolution, self.crop = images, net, resolution, crop
        self.batch_size, self.pr_positions, self.threads, self.advance = batch_size, pr_positions, threads, advance

    def _load(self, index: int) -> np.ndarray:
        from diffit_eval.io.preprocess import load_preprocessed

        return load_preprocessed(self.images, index, self.resolution, self.crop)

    def __call__(self, chunk: int, indices: range) -> dict:
        try:
            fs = FeatureSet()  # per chunk: its logits are dropped with it, so memory stays flat
            pr_pos, pr_images, batch = [], [], []
            # Threads decode and crop ahead (PIL releases the GIL); map keeps the order.
            loaded = self.threads.map(self._load, indices) if self.threads else map(self._load, indices)
            for index, image in zip(indices, loaded):
                batch.append(image)
                if index in self.pr_positions:
                    pr_pos.append(self.pr_positions[index])
                    pr_images.append(image)
                if len(batch) == self.batch_size or index == indices[-1]:
                    extract_batch(self.net, np.stack(batch), fs, keep_rows=False)
                    self.advance(len(batch))
                    batch = []
            return {"chunk": chunk, "count": len(indices), "pool": fs.pool, "spatial": fs.spatial,
                    "pr_pos": np.array(pr_pos, np.int64), "pr_images": np.stack(pr_images) if pr_images else None}
        except UserError as e:  # handed to every rank, so all stop together instead of waiting forever
            return {"error": str(e)}


def build_reference(data: str | os.PathLike, *, name: str, resolution: int, crop: str = "adm",
                    dataset: str | None = None, resize: str = DEFAULT_RESIZE, pr_images: int = 10_000, seed: int = 0,
                    out: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
                    device: str | None = None, batch_size: int | None = None, chunk_size: int = 1000, workers: int = 4,
                    allow_download: bool = True, progress: bool = True) -> Path:
    """Compute an ADM-compatible reference npz from a dataset: `mu`, `sigma`, `mu_s`, `sigma_s`
    (float64), `arr_0` (a seeded random `pr_images` of the preprocessed images, in index order) and
    `meta` (JSON).

    Images are taken in sorted order and cut into chunks of `chunk_size`. Each chunk's float64 sums
    are formed on one rank, batch by batch, and rank 0 adds the chunk sums in chunk order, so the
    file depends on `batch_size` and `chunk_size` but not on the number of processes (torchrun).
    Identical bytes also need identical kernels: on CPU the same threads per process (torchrun
    gives each one thread; set OMP_NUM_THREADS=1 for a single process to match), on GPU the same
    GPU model and deterministic cuDNN choices.
    """
    from diffit_eval.assets.inception import resolve_inception_weights
    from diffit_eval.features.network import InceptionFeatures, default_batch_size
    from diffit_eval.io.preprocess import check_crop, open_image_set
    from diffit_eval.progress import progress_bar

    if not NAME_PATTERN.match(name):
        raise UserError(f"--name {name!r} must be letters, digits, '.', '_' or '-' (it names a file in the cache)")
    if out is None and name in registry():
        raise UserError(f"{name} is a registry name; choose another --name or pass --out PATH")
    check_crop(crop)
    if resize not in RESIZE_MODES:
        raise UserError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    for label, value, least in (("--resolution", resolution, 8), ("--batch-size", batch_size or 1, 1),
                                ("--chunk-size", chunk_size, 1), ("--pr-images", pr_images, 0), ("--workers", workers, 0)):
        if value < least:
            raise UserError(f"{label} must be at least {least}, got {value}")
    out_path = Path(out).expanduser() if out is not None else cached_path(name)
    check_writable(out_path, f"--out {out}" if out is not None else f"the cache file {out_path}")
    images = open_image_set(data)
    count = images.num_images
    if count < 2:
        raise UserError(f"{data} holds {count} image; statistics need at least 2")

    import torch.distributed

    owns_group = not torch.distributed.is_initialized()  # shut down only a group this call started
    d = distributed.init(device)
    dev = distributed.device_for(d, device)
    batch_size = batch_size or default_batch_size(dev)
    weights_path = _main_then_share(lambda: resolve_inception_weights(weights, allow_download=allow_download), d)
    net = InceptionFeatures(weights_path, resize=resize).to(dev)

    chunks = [range(s, min(s + chunk_size, count)) for s in range(0, count, chunk_size)]
    kept = pr_subset(count, pr_images, seed)
    pr_positions = {int(i): p for p, i in enumerate(kept)}
    pool_sum, spatial_sum = RunningStats(POOL_DIM), RunningStats(SPATIAL_DIM)
    pr_store, pr_tmp = None, None
    if d.is_main and len(kept):
        # The P/R images go to a scratch .npy beside the output: 10,000 at 512x512 are 7.9 GB.
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, pr_tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".pr.tmp", dir=out_path.parent)
        os.close(fd)
        pr_store = np.lib.format.open_memmap(pr_tmp, mode="w+", dtype=np.uint8,
                                             shape=(len(kept), resolution, resolution, 3))
    done = [0]  # images through the network on this rank, for the Ctrl-C message
    try:
        with progress_bar(count, f"reference {name}", enabled=progress and d.is_main) as bar_advance, \
                ThreadPoolExecutor(workers) if workers else contextlib.nullcontext() as threads:
            def advance(n: int) -> None:
                done[0] += n
                bar_advance(n)

            work = _ChunkWorker(images, net, resolution=resolution, crop=crop, batch_size=batch_size,
                                pr_positions=pr_positions, threads=threads,
                                advance=advance if d.is_main else lambda n: None)
            for first in range(0, len(chunks), d.world_size):
                # Round: rank r takes chunk first + r; rank 0 then folds the round's chunks in chunk order.
                chunk = first + d.rank
                mine = work(chunk, chunks[chunk]) if chunk < len(chunks) else None
                results = distributed.all_gather_objects(mine, d)
                errors = [r["error"] for r in results if r and "error" in r]
                if errors:
                    raise UserError(errors[0])
                if not d.is_main:
                    continue
                for rank, r in enumerate(results):
                    if r is None:
                        continue
                    pool_sum.merge(r["pool"])
                    spatial_sum.merge(r["spatial"])
                    if r["pr_images"] is not None:
                        pr_store[r["pr_pos"]] = r["pr_images"]
                    if rank:
                        advance(r["count"])

        holds = ["fid", "sfid"] + (["pr"] if len(kept) else [])
        meta = {
            "name": name, "dataset": dataset or name, "resolution": resolution, "resize": resize, "crop": crop,
            "source": str(Path(data).expanduser().resolve()), "count": count, "pr_images": int(len(kept)),
            "holds": holds, "seed": seed, "batch_size": batch_size, "chunk_size": chunk_size,
            "feature_network": {k: v for k, v in net.describe().items() if k != "weights"},
            "versions": package_versions(), "created": now_iso(),
        }

        def write() -> Path:
            arrays = {"mu": pool_sum.mean, "sigma": pool_sum.cov, "mu_s": spatial_sum.mean, "sigma_s": spatial_sum.cov}
            if pr_store is not None:
                pr_store.flush()
                arrays["arr_0"] = pr_store
            arrays["meta"] = np.array(json.dumps(meta))  # 0-d unicode: reference.py reads json.loads(str(z["meta"]))
            in_cache = out_path.resolve() == cached_path(name).resolve()
            if in_cache:  # a stale record would make the new file look corrupt to a concurrent reader
                record_path(name).unlink(missing_ok=True)
            with atomic_path(out_path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
            if in_cache:
                write_json_atomic(record_path(name), {
                    "name": name, "built": True, "sha256": sha256_file(out_path), "size": out_path.stat().st_size,
                    "sha256_source": "built", "created": meta["created"],
                    **{k: meta[k] for k in ("dataset", "resolution", "resize", "crop", "source", "count",
                                            "pr_images", "holds")},
                    "standin": meta["feature_network"]["standin"]})
            return out_path

        written = _main_then_share(write, d)
    except KeyboardInterrupt:
        raise Interrupted(f"{done[0]} of {count} images had gone through the feature network; {out_path} was not "
                          "written and the scratch file is removed (a build starts over)") from None
    finally:
        if pr_tmp is not None:
            pr_store = None
            Path(pr_tmp).unlink(missing_ok=True)
    if owns_group:
        distributed.shutdown(d)
    return written
