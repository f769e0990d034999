"""The other half of every metric: reference statistics.

A reference is one of:
- an ADM reference batch (`mu`, `sigma`, `mu_s`, `sigma_s`, `arr_0` with the P/R images), and
  in files built with DINOv2 its statistics under `mu_dinov2`, `sigma_dinov2` (FD_DINOv2);
- a statistics file with only `mu`/`sigma` (EDM fid-refs, clean-fid): FID only;
- another sample source (npz, folder, run folder): everything is computed from its images;
- a registry name (`imagenet256`, ...), resolved through :mod:`diffit_eval.references.registry`.

Files written by `diffit-eval ref build` carry a `meta` entry (JSON) saying how they were made;
files without one are taken to follow the ADM/EDM protocol (legacy TF resize). Built files also
keep the pool_3 rows of their P/R images (`pr_pool`), made in the same pass as the statistics,
for the feature network `meta` names; ADM's batches (images only) have theirs extracted on first
use and cached per (file, network, resize). Built from a labelled dataset, they keep the class of
each P/R image too (`pr_labels`), the rows `metrics --per-class` splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffit_eval.assets.cache import atomic_path, cache_dir, sha256_file
from diffit_eval.errors import UserError
from diffit_eval.features.extract import FeatureSet, extract_features
from diffit_eval.io.readers import NpzMember, check_image_array
from diffit_eval.io.sources import NpzSource, open_samples
from diffit_eval.protocol import DEFAULT_RESIZE, DINOV2_STAT_KEYS, POOL_DIM, PR_LABELS_KEY, PR_ROWS_KEY, SPATIAL_DIM


@dataclass
class Reference:
    name: str
    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray | None = None
    sigma_s: np.ndarray | None = None
    pr_features: np.ndarray | None = None  # pool_3 rows of the P/R images, once computed
    pr_images: NpzMember | None = None  # arr_0 of a reference batch, read on demand
    pr_rows: NpzMember | None = None  # a built file's pool_3 rows of arr_0 (PR_ROWS_KEY), read on demand
    path: Path | None = None
    sha256: str | None = None
    resize: str = DEFAULT_RESIZE
    meta: dict = field(default_factory=dict)
    spec: str | None = None  # what the user passed as --ref: the name every message uses
    resolution_note: str | None = None  # set when samples of another resolution were allowed
    mu_dinov2: np.ndarray | None = None  # DINOv2 CLS-token statistics (FD_DINOv2), when built with them
    sigma_dinov2: np.ndarray | None = None
    pr_labels: np.ndarray | None = None  # int64 class of each P/R row (PR_LABELS_KEY), when labelled

    @property
    def shown(self) -> str:
        return self.spec or str(self.path or self.name)

    @property
    def resolution(self) -> tuple[int, int] | None:
        """(H, W) of the images the statistics describe, when the file says (meta, or its P/R images)."""
        r = self.meta.get("resolution")
        if isinstance(r, int) and r > 0:
            return (r, r)
        if self.pr_images is not None:
            return tuple(int(v) for v in self.pr_images.shape[1:3])
        return None

    @property
    def num_pr_images(self) -> int | None:
        if self.pr_features is not None:
            return len(self.pr_features)
        return self.pr_images.shape[0] if self.pr_images is not None else None

    def unsupported(self, metric: str) -> str | None:
        """Why this reference cannot give `metric`, or None when it can."""
        if metric == "sfid" and (self.mu_s is None or self.sigma_s is None):
            return "reference has no sFID statistics (mu_s, sigma_s)"
        if metric == "pr" and self.num_pr_images is None:
            return "reference has no images (arr_0) for precision/recall"
        if metric == "kid" and self.num_pr_images is None:
            return "reference has no images (arr_0) whose pool_3 rows KID needs"
        if metric == "fd_dinov2" and self.mu_dinov2 is None:
            return (
                f"reference has no DINOv2 statistics ({', '.join(DINOV2_STAT_KEYS)}); build one with "
                "`diffit-eval ref build ... --dinov2` or pass the reference images (npz, folder or run folder) as --ref"
            )
        return None

    @property
    def dinov2_sha256(self) -> str | None:
        """sha256 of the DINOv2 weights the reference's DINOv2 statistics were built with, when recorded."""
        return (self.meta.get("dinov2_network") or {}).get("sha256")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "resize": self.resize,
            "pr_images": self.num_pr_images,
            "dinov2": self.mu_dinov2 is not None,
            **({"labelled": True} if self.pr_labels is not None else {}),
            **{k: self.meta[k] for k in ("dataset", "resolution") if k in self.meta},
        }

    def pr_feature_rows(self, net, *, batch_size: int, progress: bool = True) -> np.ndarray:
        """pool_3 rows of the P/R images; cached per (file, network, resize) since ADM's 10,000 cost minutes on CPU."""
        if self.pr_features is not None:
            return self.pr_features
        if self.pr_rows is not None and self._rows_are_of(net):
            self.pr_features = self.pr_rows.read_all()
            return self.pr_features
        key = f"{self.sha256}-{net.weights_sha256[:16]}-{net.resize}.npy"
        cached = cache_dir() / "features" / key
        if cached.is_file():
            self.pr_features = np.load(cached)
        else:
            fs = extract_features(
                NpzSource(self.path),
                net,
                batch_size=batch_size,
                progress=progress,
                description=f"reference images {self.name}",
            )
            self.pr_features = fs.all_pool_rows()
            with atomic_path(cached) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, self.pr_features)
        return self.pr_features

    def _rows_are_of(self, net) -> bool:
        """The file's stored rows are `net`'s: same weights (sha256), same resize, one row per P/R image."""
        built = self.meta.get("feature_network") or {}
        return (
            built.get("sha256") == net.weights_sha256
            and self.resize == net.resize
            and self.pr_rows.shape == (self.num_pr_images, net.pool_dim)
            and self.pr_rows.dtype == np.float32
        )


def _check_dims(ref: Reference, where: str) -> None:
    """Dimensions and finiteness, checked when the file is opened, before any feature is extracted."""
    network = ref.meta.get("feature_network") or {}
    dim = int(network.get("pool_dim", POOL_DIM))  # files built with the digits network say so
    if ref.mu.shape != (dim,) or ref.sigma.shape != (dim, dim):
        raise UserError(
            f"reference {where}: mu/sigma are {list(ref.mu.shape)}/{list(ref.sigma.shape)}, "
            f"but {network['name'] if 'pool_dim' in network else 'pool_3'} features are {dim}-d"
        )
    if ref.mu_s is not None and (ref.mu_s.shape != (SPATIAL_DIM,) or ref.sigma_s.shape != (SPATIAL_DIM, SPATIAL_DIM)):
        raise UserError(
            f"reference {where}: mu_s/sigma_s are {list(ref.mu_s.shape)}/{list(ref.sigma_s.shape)}, "
            f"but sFID features are {SPATIAL_DIM}-d"
        )
    if (ref.mu_dinov2 is None) != (ref.sigma_dinov2 is None) or (
        ref.mu_dinov2 is not None and ref.sigma_dinov2.shape != (len(ref.mu_dinov2),) * 2
    ):
        raise UserError(
            f"reference {where}: {' and '.join(DINOV2_STAT_KEYS)} must come together, a mean [d] and a covariance [d, d]"
        )
    for key in ("mu", "sigma", "mu_s", "sigma_s", "mu_dinov2", "sigma_dinov2"):
        a = getattr(ref, key)
        if a is not None and not np.isfinite(a).all():
            raise UserError(
                f"reference {where}: {key} holds {int((~np.isfinite(a)).sum())} non-finite values "
                "(NaN or inf); the file is broken, rebuild or re-fetch it"
            )


def check_resolution(
    ref_hw: tuple[int, int] | None, samples_hw: tuple[int, int], ref_shown: str, samples_shown: str, allow: bool
) -> str | None:
    """Samples and reference of different sizes give meaningless numbers (48x40 against 32x32: FID
    ~2e5): an error naming both sizes, or with `allow` the note every output carries."""
    if ref_hw is None or tuple(ref_hw) == tuple(samples_hw):
        return None
    sizes = (
        f"samples {samples_shown} are {samples_hw[1]}x{samples_hw[0]} but reference {ref_shown} is "
        f"{ref_hw[1]}x{ref_hw[0]}"
    )
    if not allow:
        raise UserError(f"{sizes}; sample at the reference's resolution, or pass --allow-resolution-mismatch")
    return f"resolution mismatch allowed: {sizes}"


def load_statistics_file(path: Path, name: str | None = None) -> Reference:
    """Read an npz holding `mu`/`sigma` (and maybe `mu_s`, `sigma_s`, `arr_0`, `meta`)."""
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserError(f"{path} is not a readable npz file ({type(e).__name__})") from None
    with z:
        keys = set(z.files)
        missing = [k for k in ("mu", "sigma") if k not in keys]
        if missing:
            raise UserError(
                f"{path} has no {' or '.join(missing)} (keys: {', '.join(sorted(keys)) or 'none'}); "
                f"a reference needs mu and sigma"
            )
        try:
            meta = json.loads(str(z["meta"])) if "meta" in keys else {}
            if not isinstance(meta, dict):
                raise ValueError("meta is not a JSON object")
            ref = Reference(
                name=name or meta.get("name") or path.stem,
                mu=z["mu"].astype(np.float64),
                sigma=z["sigma"].astype(np.float64),
                mu_s=z["mu_s"].astype(np.float64) if "mu_s" in keys else None,
                sigma_s=z["sigma_s"].astype(np.float64) if "sigma_s" in keys else None,
                mu_dinov2=z[DINOV2_STAT_KEYS[0]].astype(np.float64) if DINOV2_STAT_KEYS[0] in keys else None,
                sigma_dinov2=z[DINOV2_STAT_KEYS[1]].astype(np.float64) if DINOV2_STAT_KEYS[1] in keys else None,
                path=path,
                resize=meta.get("resize", DEFAULT_RESIZE),
                meta=meta,
            )
        except Exception as e:  # pickled objects, non-numeric arrays, truncated members, bad meta JSON
            raise UserError(f"{path}: cannot read the reference statistics ({type(e).__name__}: {e})") from None
    if "arr_0" in keys:
        ref.pr_images = NpzMember(path, "arr_0")
        check_image_array(ref.pr_images.shape, ref.pr_images.dtype, f"{path}:arr_0")
        if PR_ROWS_KEY in keys:
            ref.pr_rows = NpzMember(path, PR_ROWS_KEY)
        if PR_LABELS_KEY in keys:
            labels = NpzMember(path, PR_LABELS_KEY).read_all()
            if labels.shape != (ref.pr_images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
                raise UserError(
                    f"{path}: {PR_LABELS_KEY} is {labels.dtype} {list(labels.shape)}, expected one integer "
                    f"class per arr_0 image ({ref.pr_images.shape[0]})"
                )
            ref.pr_labels = labels.astype(np.int64)
    _check_dims(ref, str(path))
    ref.sha256 = sha256_file(path)
    return ref


def reference_from_features(
    fs: FeatureSet, name: str, path: Path | None, resize: str, meta: dict | None = None
) -> Reference:
    if fs.count < 2:
        raise UserError(f"reference {name} has {fs.count} image(s); statistics need at least 2")
    return Reference(
        name=name,
        mu=fs.pool.mean,
        sigma=fs.pool.cov,
        mu_s=None if fs.spatial is None else fs.spatial.mean,
        sigma_s=None if fs.spatial is None else fs.spatial.cov,
        mu_dinov2=None if fs.dinov2 is None else fs.dinov2.mean,
        sigma_dinov2=None if fs.dinov2 is None else fs.dinov2.cov,
        pr_features=fs.all_pool_rows(),
        path=path,
        resize=resize,
        meta=meta or {},
    )


def _is_statistics_npz(path: Path) -> bool:
    try:
        with np.load(path) as z:
            return "mu" in z.files and "sigma" in z.files
    except Exception:
        return False


def load_reference(
    spec: str,
    *,
    net=None,
    batch_size: int = 64,
    keep_rows: bool = True,
    allow_download: bool = True,
    progress: bool = True,
    samples_resolution: tuple[int, int] | None = None,
    samples_shown: str = "",
    allow_resolution_mismatch: bool = False,
    dinov2=None,
    need_labels: bool = False,
) -> Reference:
    """Resolve `--ref`: a statistics file, a sample source (needs `net`; with `dinov2`, its DINOv2
    statistics come from the same pass), or a registry name. With `need_labels` (`--per-class`), a
    sample source's labels are read (and their absence refused) before its images are extracted.

    With `samples_resolution`, a reference of another size is refused (or noted, when allowed)
    before any of its images go through the network.
    """
    path = Path(spec).expanduser()

    def checked(ref: Reference, hw) -> Reference:
        ref.spec = spec
        if samples_resolution is not None:
            ref.resolution_note = check_resolution(
                hw, samples_resolution, spec, samples_shown, allow_resolution_mismatch
            )
        return ref

    if not path.exists():
        from diffit_eval.references import registry as refs

        if refs.is_registry_name(spec):
            path = refs.resolve_reference(spec, allow_download=allow_download)
            ref = load_statistics_file(path, name=spec)
            entry = refs.registry_entry(spec)
            ref.resize = entry.get("resize", ref.resize)
            for key in ("dataset", "resolution"):
                ref.meta.setdefault(key, entry.get(key))
            return checked(ref, ref.resolution)
        raise UserError(
            f"reference not found: {spec} is neither a file, a folder nor a registry name (see `diffit-eval ref list`)"
        )
    if path.is_file() and path.suffix == ".npz" and _is_statistics_npz(path):
        ref = load_statistics_file(path)
        return checked(ref, ref.resolution)
    source = open_samples(path)
    labels = None
    if need_labels:
        labels = source.labels()
        if labels is None:
            raise UserError(
                f"--per-class needs a reference with labelled rows; {spec} has no labels "
                "(an npz with arr_1, a run folder of a class-conditional model, or a dataset.json)"
            )
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != source.num_images:
            raise UserError(f"{spec}: labels are {labels.dtype} {list(labels.shape)}, not one class per image")
    note = None
    if samples_resolution is not None:  # before the reference's images are extracted
        note = check_resolution(source.resolution, samples_resolution, spec, samples_shown, allow_resolution_mismatch)
    # "reference X" unless the folder is already called that (the demo's `reference` run)
    label = path.name if "reference" in path.name.lower() else f"reference {path.name}"
    fs = extract_features(
        source, net, batch_size=batch_size, keep_rows=keep_rows, progress=progress, description=label, dinov2=dinov2
    )
    meta = {"dinov2_network": dinov2.describe()} if dinov2 is not None else None
    ref = reference_from_features(fs, path.name, path, net.resize, meta)
    ref.pr_labels = None if labels is None else labels.astype(np.int64)
    ref.sha256 = sha256_file(path) if path.is_file() else None
    ref.spec, ref.resolution_note = spec, note
    return ref
