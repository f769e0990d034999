"""Listing and inspecting reference files (`diffit-eval ref list`, `ref show`): what a file holds,
its array headers, and whether its covariances are what a Frechet distance needs."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from diffit_eval.assets.cache import sha256_file
from diffit_eval.errors import UserError
from diffit_eval.protocol import POOL_DIM, PR_ROWS_KEY, SPATIAL_DIM
from diffit_eval.references.registry import (
    _built_names,
    cached_path,
    part_path,
    read_meta,
    read_record,
    registry,
    registry_entry,
    verify_cached,
)


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
        rows.append(
            {
                "name": name,
                "dataset": entry.get("dataset"),
                "resolution": entry.get("resolution"),
                "resize": entry.get("resize"),
                "holds": entry.get("holds", []),
                "status": status,
                "size": size,
                "path": str(path),
            }
        )
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
                checks += _covariance_checks(
                    f"{mu_key}/{sigma_key}", z[mu_key].astype(np.float64), z[sigma_key].astype(np.float64)
                )
    if "mu" not in arrays or "sigma" not in arrays:
        checks.append(("has mu and sigma", False, "FID needs both"))
    for key, dim in (("mu", POOL_DIM), ("mu_s", SPATIAL_DIM)):
        if key in arrays:
            checks.append((f"{key}: {dim}-d", arrays[key][0] == (dim,), f"shape {list(arrays[key][0])}"))
    if "arr_0" in arrays:
        shape, dtype = arrays["arr_0"]
        ok = len(shape) == 4 and shape[-1] == 3 and dtype == np.uint8
        checks.append(("arr_0: uint8 [N, H, W, 3]", ok, f"{list(shape)} {dtype}"))
    if PR_ROWS_KEY in arrays:  # a built file's pool_3 rows of its P/R images (docs/PROTOCOL.md)
        shape, dtype = arrays[PR_ROWS_KEY]
        want = (
            (arrays["arr_0"][0][0] if "arr_0" in arrays else None),
            (meta.get("feature_network") or {}).get("pool_dim", POOL_DIM),
        )
        ok = tuple(shape) == want and dtype == np.float32
        checks.append((f"{PR_ROWS_KEY}: float32 rows of arr_0", ok, f"{list(shape)} {dtype}"))
    holds = [
        m
        for m, keys in (("fid", ("mu", "sigma")), ("sfid", ("mu_s", "sigma_s")), ("pr", ("arr_0",)))
        if all(k in arrays for k in keys)
    ]
    return {
        "path": str(path),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "arrays": {k: {"shape": list(s), "dtype": str(d)} for k, (s, d) in arrays.items()},
        "pr_images": arrays["arr_0"][0][0] if "arr_0" in arrays else None,
        "statistics_count": meta.get("count"),
        "holds": holds,
        "meta": meta,
        "checks": [{"check": c, "ok": ok, "detail": detail} for c, ok, detail in checks],
        "ok": all(ok for _, ok, _ in checks),
    }


def show_reference(spec: str) -> dict:
    """`ref show`: a file is inspected; a name gives its entry, its cache record and, once cached,
    a full check (sha256) and inspection of the file. Nothing is downloaded."""
    path = Path(spec).expanduser()
    if path.exists():
        return {"name": None, "entry": None, "record": None, "file": inspect_file(path)}
    entry = registry_entry(spec)  # an unknown name raises, listing the known ones
    file = inspect_file(verify_cached(spec, full=True)) if cached_path(spec).is_file() else None
    return {
        "name": spec,
        "entry": entry,
        "record": read_record(spec),
        "file": file,
        "cached_path": str(cached_path(spec)),
    }
