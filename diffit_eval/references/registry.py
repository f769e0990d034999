"""Named reference statistics: the registry and the cached files (inspection: :mod:`diffit_eval.references.inspect`;
building: :mod:`diffit_eval.references.build`).

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

import functools
import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from diffit_eval.assets.cache import cache_dir, download, sha256_file, write_json_atomic
from diffit_eval.errors import MissingAssetError, UserError
from diffit_eval.protocol import DEFAULT_RESIZE, RESIZE_MODES
from diffit_eval.provenance import now_iso
from diffit_eval.shipped import shipped_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REGISTRY_PATH = shipped_dir("reference_stats") / "registry.toml"
HOLDS = ("fid", "sfid", "pr")  # what a reference can support; IS needs no reference
# field -> type; every registry entry must have these (reference_stats/README.md).
REQUIRED_FIELDS = {
    "url": str,
    "dataset": str,
    "resolution": int,
    "resize": str,
    "holds": list,
    "content": str,
    "protocol": str,
    "source": str,
    "licence": str,
}
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
    again = (
        "rebuild it with `diffit-eval ref build`"
        if entry["built"]
        else f"run `diffit-eval ref fetch {name}` to download it again"
    )
    return CorruptReferenceError(
        f"cached reference {name} at {path} was corrupt ({problem}) and has been removed; {again}"
    )


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
            write_json_atomic(
                record_path(name),
                {
                    "name": name,
                    "url": entry.get("url"),
                    "sha256": sha,
                    "size": size,
                    "sha256_source": source,
                    "recorded": now_iso(),
                },
            )
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
            "name": name,
            "built": True,
            "url": None,
            "dataset": meta.get("dataset"),
            "resolution": meta.get("resolution"),
            "resize": meta.get("resize", DEFAULT_RESIZE),
            "holds": meta.get("holds", ["fid"]),
            **({"pr_images": pr} if pr else {}),
            "content": f"built by `diffit-eval ref build` from {meta.get('source', 'unknown data')}"
            if meta.get("source")
            else "a reference placed in the cache by hand",
            "protocol": f"crop {meta.get('crop', '?')}, resize {meta.get('resize', 'legacy-tf')}",
            "source": meta.get("source"),
            "licence": "that of the source images",
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
        download(
            url,
            path,
            what=f"reference {name}",
            alternative="--ref PATH",
            sha256=entry.get("sha256"),
            size=entry.get("size"),
            progress=progress,
        )
    except UserError:  # offline, interrupted (cache.download keeps a non-empty .part to resume) or corrupt
        _drop_empty_part(name)
        raise
    problem = _npz_problem(path)
    if problem:
        path.unlink()
        raise UserError(f"downloaded reference {name} from {url} is unusable ({problem}); it was deleted, run again")
    write_json_atomic(
        record_path(name),
        {
            "name": name,
            "url": url,
            "sha256": sha256_file(path),
            "size": path.stat().st_size,
            "sha256_source": "registry" if entry.get("sha256") else "first download",
            "fetched": now_iso(),
        },
    )
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
        raise MissingAssetError(
            f"reference {name} is not cached at {path} and downloads are off; "
            f"fetch {entry['url']} by hand and pass --ref PATH, or run `diffit-eval ref fetch {name}`"
        )
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
