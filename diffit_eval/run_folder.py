"""What every run folder shares, sample runs (:mod:`diffit_eval.generate.shards`) and training runs
(:mod:`diffit_eval.train.state`) alike: its manifest, the lock, the cleanup of a killed run's
temporary files, the comparison of configurations on resume, and where run folders live.

    RUN/manifest.json    the run's JSON manifest; its `format` says which kind of run it is
    RUN/.lock            flock held by rank 0 while a run writes here

Every file of a run is written under a temporary name and renamed
(:func:`diffit_eval.assets.cache.atomic_path`), so a killed run leaves only dot-files ending in
`.tmp`, which the next run removes (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from diffit_eval.errors import UserError

MANIFEST = "manifest.json"
LOCK = ".lock"
RUNS_ROOT = Path("runs")  # default parent of run folders, relative to the working directory


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a folder with a run manifest (which kind of run, its `format` says)."""
    return path.is_dir() and (path / MANIFEST).is_file()


def read_manifest(run_dir: str | os.PathLike, fmt: str, kind: str, required: tuple[str, ...] = ()) -> dict:
    """A run folder's manifest.json, checked to be format `fmt` with the keys `required`.

    `kind` names the folder in the one-line errors ("sample run", "training run").
    """
    path = Path(run_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir} is not a {kind} folder (no {MANIFEST})") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt or any(k not in manifest for k in required):
        raise UserError(f"{path} is not a diffit-eval {kind.split()[0]} manifest (expected format {fmt})")
    return manifest


def config_differences(old: dict, new: dict) -> list[str]:
    """Keys of the image-defining configuration whose values differ, as `key: old -> new`."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    return out


def _short(value, width: int = 40) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def remove_stale_temporaries(run_dir: Path, subfolders: tuple[str, ...] = ()) -> int:
    """Delete the `.NAME.XXXX.tmp` files a killed run left in the folder and its `subfolders`
    (call only while holding the lock: a live writer's temporaries look the same)."""
    count = 0
    for folder in (Path(run_dir), *(Path(run_dir) / s for s in subfolders)):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
            count += 1
    return count


def latest_run(root: str | os.PathLike = RUNS_ROOT) -> Path:
    """The run folder under `root` (default ./runs) whose manifest was written last."""
    root = Path(root)
    runs = [m.parent for m in root.rglob(MANIFEST)] if root.is_dir() else []
    if not runs:
        raise UserError(
            f"no sample source given and no run folder under {root}/ ; pass an npz, an image folder "
            "or a run folder, or run `diffit-eval sample` first"
        )
    return max(runs, key=lambda r: (r / MANIFEST).stat().st_mtime_ns)


class RunLock:
    """An exclusive `flock` on RUN/.lock; the kernel drops it when the process dies, even on kill -9."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._file = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            # The sampler's wording; `diffit-eval train` catches this and says its own command.
            raise UserError(
                f"{self.path.parent} is being written by another `diffit-eval sample` run "
                f"({holder}); wait for it to finish or pass another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
