"""The download cache: where assets live, resumable verified downloads, atomic writes.

Every asset (Inception weights, DiffiT checkpoints, reference batches) goes through
:func:`download`, so they all share one behaviour: a `.part` file that resumes, a check against
the expected hash, and a rename only once the file is verified. A failed download never leaves
a file under the final name. Offline, the error names the URL and what to pass instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from diffit_eval.errors import MissingAssetError, UserError

CHUNK = 1 << 20


def cache_dir() -> Path:
    """The cache folder: `$DIFFIT_EVAL_CACHE`, else `$XDG_CACHE_HOME/diffit-eval`, else `~/.cache/diffit-eval`."""
    env = os.environ.get("DIFFIT_EVAL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffit-eval"


# Digests already computed in this process, keyed by the file's identity and state: loading the
# same 95 MB weights file again (a second command in one process, the tests) reads it once.
_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Remembered per (real path, device, inode, size, mtime, ctime): any write to the file, or a
    new file under the same name, changes the key and the file is read again.
    """
    st = os.stat(path)
    key = (os.path.realpath(path), algorithm, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        h = hashlib.new(algorithm)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def md5_file(path: str | os.PathLike) -> str:
    return file_digest(path, "md5")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only if the block succeeds.

    The temporary name ends in `.tmp` and starts with a dot, so nothing half-written ever looks
    finished; on error it is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file 0600; results are meant to be shared like any file written with open().
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Fail now, before any expensive work, if `path` could not be written at the end.

    Tries what the final write does (create the folder, a temporary file beside `path`) and undoes
    it, so nothing is left behind. `what` is how the user named the path ("--json m.json").
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {what}: {path} is a folder; pass a file name")
    created = _missing_folders(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(f"cannot write {what}: {e.strerror or e} ({e.filename or path})") from None
    finally:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    """Write `obj` as indented JSON under a temporary name, then rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def cached_weights_path(url: str) -> Path:
    """Where a downloaded network's weights live in the cache: named after the URL's file."""
    return cache_dir() / "weights" / url.rsplit("/", 1)[1]


def resolve_weights_file(
    path: str | os.PathLike | None,
    *,
    env: str,
    url: str,
    what: str,
    flag: str,
    fetch_name: str,
    allow_download: bool = True,
    md5_prefix: str | None = None,
) -> Path:
    """A network's weights: `path`, else `$env`, else the cache (named after the URL's file), else a
    verified download; offline or with downloads off, one line naming the URL and `flag`."""
    explicit = path or os.environ.get(env)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UserError(f"{what} file not found: {p}")
        return p
    p = cached_weights_path(url)
    if p.is_file():
        return p
    if not allow_download:
        raise MissingAssetError(
            f"{what} are not cached at {p} and downloads are off; run "
            f"`diffit-eval weights fetch {fetch_name}` (downloads {url}) or pass {flag}"
        )
    return download(url, p, what=what, alternative=flag, md5_prefix=md5_prefix)


def _check(path: Path, *, sha256: str | None, md5_prefix: str | None, size: int | None) -> str | None:
    """Return a reason the file is wrong, or None when every given expectation holds."""
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} bytes, expected {size}"
    if md5_prefix is not None and not md5_file(path).startswith(md5_prefix.lower()):
        return f"md5 does not start with {md5_prefix}"
    if sha256 is not None and sha256_file(path) != sha256.lower():
        return "sha256 mismatch"
    return None


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    what: str,
    alternative: str,
    sha256: str | None = None,
    md5_prefix: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download `url` to `dest` (resuming a `.part` file), verify it, and rename into place.

    `what` names the asset in messages ("Inception weights"); `alternative` is the flag or path a
    user can pass instead ("--inception-weights PATH"). Raises :class:`MissingAssetError` (exit 2)
    with one line when the host cannot be reached, and :class:`UserError` when the bytes that
    arrived fail verification (the partial file is deleted so it is never reused).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "diffit-eval"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part is already complete
            resp = None
        else:
            raise MissingAssetError(
                f"cannot download {what} from {url} (HTTP {e.code}); "
                f"fetch it by hand and pass {alternative}, or place it at {dest}"
            ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise MissingAssetError(
            f"cannot download {what} from {url} (offline? {reason}); "
            f"fetch it by hand and pass {alternative}, or place it at {dest}"
        ) from None

    if resp is not None:
        resumed = have and resp.status == 206
        mode = "ab" if resumed else "wb"
        length = resp.headers.get("Content-Length")
        total = int(length) + (have if resumed else 0) if length else None
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        try:
            with (
                resp,
                open(part, mode) as f,
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    disable=not progress,
                    transient=True,
                ) as bar,
            ):
                task = bar.add_task(f"{what}", total=total, completed=have if resumed else 0)
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    f.write(chunk)
                    bar.advance(task, len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise MissingAssetError(
                f"download of {what} from {url} was interrupted ({type(e).__name__}); "
                f"run the same command again to resume"
            ) from None
        finally:
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
        # A short read ends the loop silently; the .part stays so the next run resumes it.
        if total is not None and part.stat().st_size < total:
            raise MissingAssetError(
                f"download of {what} from {url} stopped at {part.stat().st_size} of {total} "
                f"bytes; run the same command again to resume"
            )

    problem = _check(part, sha256=sha256, md5_prefix=md5_prefix, size=size)
    if problem:
        part.unlink(missing_ok=True)
        raise UserError(f"downloaded {what} from {url} is corrupt ({problem}); it was deleted, run again")
    os.replace(part, dest)
    return dest
