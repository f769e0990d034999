"""Features + reference -> FID, sFID, IS, precision, recall, KID, FD_DINOv2, density, coverage,
FID_inf, IS_inf, per-class numbers and bootstrap intervals; and the JSON that records them.

A metric the reference cannot support is `None` with its reason in `unavailable`, never dropped.
Every metric comes from one pass over the images: Inception (and DINOv2 when FD_DINOv2 is asked
for) see each batch once, or a run folder's saved rows are replayed; KID and the bootstrap reuse
the pool_3 rows already extracted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffit_eval.errors import UserError
from diffit_eval.features.extract import FeatureSet, extract_features
from diffit_eval.features.run_features import run_folder_features
from diffit_eval.generate.shards import RunSource
from diffit_eval.io.sources import open_samples
from diffit_eval.metrics.bootstrap import BootstrapInputs, bootstrap_intervals
from diffit_eval.metrics.density_coverage import density_coverage, from_balls
from diffit_eval.metrics.fid import frechet_distance_by
from diffit_eval.metrics.inception_score import inception_score
from diffit_eval.metrics.kid import kid
from diffit_eval.metrics.prc import K, membership
from diffit_eval.protocol import (
    BOOTSTRAP_CONFIDENCE,
    CI_SUFFIX,
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_METRIC_GROUPS,
    DEFAULT_NETWORK,
    DEFAULT_RESIZE,
    DENSITY_K,
    FEATURE_NETWORKS,
    FID_INF_MIN_SAMPLES,
    FID_INF_POINTS,
    FID_INF_SEED,
    KID_SEED,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    METRIC_GROUPS,
)
from diffit_eval.provenance import device_description, now_iso, package_versions
from diffit_eval.references.store import Reference, load_reference

# precision/recall: ADM's float16 distances (the protocol); *_exact: float64 distances (diffit_eval/metrics/prc.py)
VALUE_KEYS = ("fid", "sfid", "is", "is_std", "precision", "recall", "precision_exact", "recall_exact")
# Written only when asked for (--metrics kid / fd_dinov2), so ADM-protocol records keep their keys.
EXTRA_VALUE_KEYS = {
    "kid": ("kid", "kid_std"),
    "fd_dinov2": ("fd_dinov2",),
    "density": ("density",),
    "coverage": ("coverage",),
    "fid_inf": ("fid_inf", "fid_inf_se"),
    "is_inf": ("is_inf", "is_inf_se"),
}
# Asked-for groups that need the pool_3 rows of the samples (and, but for fid_inf, of the reference).
ROW_GROUPS = ("pr", "kid", "density", "coverage", "fid_inf")


@dataclass
class MetricsResult:
    values: dict = field(default_factory=lambda: {k: None for k in VALUE_KEYS})
    unavailable: dict = field(default_factory=dict)
    num_samples: int = 0
    extra: dict = field(default_factory=dict)  # protocol settings of what was computed (KID subsets, bootstrap)


def parse_metrics(text: str | None) -> list[str] | None:
    """`fid,sfid,is,pr,kid,fd_dinov2,density,coverage,fid_inf,is_inf` -> list; None means the ADM
    set (`DEFAULT_METRIC_GROUPS`)."""
    if text is None or text.strip() in ("", "all"):
        return None
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METRIC_GROUPS]
    if bad:
        raise UserError(f"unknown metric(s) {', '.join(bad)}; choose from {','.join(METRIC_GROUPS)}")
    return names


def check_request(
    metrics: list[str] | None,
    num_samples: int,
    *,
    per_class: bool = False,
    sample_labels: np.ndarray | None = None,
    ref: Reference | None = None,
) -> None:
    """One line for a combination that cannot be computed, before any feature is extracted: per-class
    numbers without labels, density/coverage without reference rows, FID_inf/IS_inf with fewer
    samples than their schedule needs. `ref` None: its checks wait until it is loaded."""
    wanted = set(metrics or ())
    inf = sorted(wanted & {"fid_inf", "is_inf"})
    if inf and num_samples < FID_INF_MIN_SAMPLES:
        raise UserError(
            f"--metrics {','.join(inf)} need at least {FID_INF_MIN_SAMPLES} samples for their schedule "
            f"({FID_INF_POINTS} subset sizes from N/10 to N, docs/METRICS.md), got {num_samples}"
        )
    if per_class and sample_labels is None:
        raise UserError(
            "--per-class needs labelled samples (an npz with arr_1, a run folder of a class-conditional "
            "model, or a dataset with labels); these have none"
        )
    if ref is None:
        return
    dc = sorted(wanted & {"density", "coverage"})
    if dc and ref.num_pr_images is None:
        raise UserError(
            f"--metrics {','.join(dc)} need the reference's rows (its P/R images or rows) as the manifold; "
            f"reference {ref.shown} has only statistics"
        )
    if dc and ref.num_pr_images <= DENSITY_K:
        raise UserError(
            f"--metrics {','.join(dc)} need more than {DENSITY_K} reference rows (k-th neighbour, k = "
            f"{DENSITY_K}), reference {ref.shown} has {ref.num_pr_images}"
        )
    if per_class and ref.pr_labels is None:
        raise UserError(
            f"--per-class needs a reference with labelled rows; {ref.shown} has none (build one with "
            "`diffit-eval ref build` from a class-folder dataset or an npz with arr_1, or pass labelled images as --ref)"
        )


def check_labels(labels, count: int, where: str) -> np.ndarray | None:
    """Labels as int64 [count], or a one-line error (one-hot or float labels are not class indices)."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{where}: labels are {labels.dtype} {list(labels.shape)}, not one class index per image")
    if len(labels) < count:
        raise UserError(f"{where}: {len(labels)} labels for {count} images")
    return labels[:count].astype(np.int64)


def _distance(stats, mu, sigma, ref_name: str, fid_method: str = "eigh") -> float:
    try:
        return frechet_distance_by(fid_method)(stats.mean, stats.cov, mu, sigma)
    except ValueError as e:  # non-finite covariances: a broken file or diverged samples, not a crash
        raise UserError(f"cannot compute a Frechet distance against {ref_name}: {e}") from None


def evaluate(
    samples: FeatureSet,
    ref: Reference,
    metrics: list[str] | None = None,
    *,
    net=None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    fid_method: str = "eigh",
    bootstrap: int | None = None,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    labels: np.ndarray | None = None,
    per_class: bool = False,
) -> MetricsResult:
    """Compute the requested metrics (default: the ADM set the reference supports); with
    `bootstrap` B, also `<metric>_ci` intervals from B replicates (:mod:`diffit_eval.metrics.bootstrap`);
    with `per_class`, the numbers of each class of `labels` against the reference's rows of that class
    (:mod:`diffit_eval.metrics.per_class`)."""
    if samples.count < 2:
        raise UserError(f"need at least 2 samples for statistics, got {samples.count}")
    check_request(metrics, samples.count, per_class=per_class, sample_labels=labels, ref=ref)
    res = MetricsResult(num_samples=samples.count)
    wanted = list(DEFAULT_METRIC_GROUPS) if metrics is None else metrics
    for group in wanted:
        for key in EXTRA_VALUE_KEYS.get(group, ()):
            res.values[key] = None
    for m in wanted:
        reason = ref.unsupported(m)
        if reason:
            res.unavailable[m] = reason
    if net is not None and not getattr(net, "has_logits", True):
        from diffit_eval.features.network import NO_LOGITS

        for m in ("is", "is_inf"):
            if m in wanted:
                res.unavailable[m] = NO_LOGITS
    if "pr" in wanted and "pr" not in res.unavailable and samples.count <= K:
        res.unavailable["pr"] = (
            f"precision/recall need more than {K} samples (k-th neighbour, k = {K}), got {samples.count}"
        )
    if "fd_dinov2" in wanted and "fd_dinov2" not in res.unavailable and samples.dinov2 is None:
        res.unavailable["fd_dinov2"] = "the samples have no DINOv2 features"
    if "pr" in wanted and "pr" not in res.unavailable and ref.num_pr_images <= K:
        res.unavailable["pr"] = (
            f"precision/recall need more than {K} reference images (k-th neighbour, k = {K}), "
            f"the reference has {ref.num_pr_images}"
        )
    todo = [m for m in wanted if m not in res.unavailable]
    if "fid" in todo:
        res.values["fid"] = _distance(samples.pool, ref.mu, ref.sigma, ref.shown, fid_method)
    if "sfid" in todo:
        res.values["sfid"] = _distance(samples.spatial, ref.mu_s, ref.sigma_s, ref.shown, fid_method)
    if "is" in todo:
        res.values["is"], res.values["is_std"] = inception_score(samples.all_logits())
    if "fd_dinov2" in todo:
        res.values["fd_dinov2"] = _distance(samples.dinov2, ref.mu_dinov2, ref.sigma_dinov2, ref.shown, fid_method)
    rows = samples.all_pool_rows()
    if rows is None and (any(g in todo for g in ROW_GROUPS) or bootstrap or per_class):
        raise ValueError(
            "precision/recall, KID, density/coverage, FID_inf, per-class numbers and the bootstrap need the "
            "sample pool_3 rows (keep_rows=True)"
        )
    ref_rows = None
    dc = "density" in todo or "coverage" in todo
    if "pr" in todo or "kid" in todo or dc or per_class:
        ref_rows = ref.pr_feature_rows(net, batch_size=batch_size, progress=progress)
    adm = None
    if "pr" in todo:
        adm = membership(ref_rows, rows, device=device, keep_cover=bool(bootstrap))
        res.values["precision"], res.values["recall"] = adm.precision, adm.recall
        # density/coverage's counts come from the same float64 blocks (one pass)
        exact = membership(ref_rows, rows, arith="exact", device=device, ball_k=DENSITY_K if dc else None)
        res.values["precision_exact"], res.values["recall_exact"] = exact.precision, exact.recall
        dcv = from_balls(exact.balls) if dc else None
    elif dc:
        dcv = density_coverage(ref_rows, rows, device=device)
    for key in ("density", "coverage"):
        if key in todo:
            res.values[key] = getattr(dcv, key)
    if dc:
        res.extra["density_coverage_protocol"] = {"k": DENSITY_K, "manifold": "reference rows", "ball": "d < r"}
    _extrapolations(res, todo, samples, rows, ref, bootstrap, bootstrap_seed, device)
    if per_class:
        from diffit_eval.metrics.per_class import per_class_metrics

        res.extra["per_class"] = per_class_metrics(
            rows, labels, ref_rows, ref.pr_labels, density=dc, fid_method=fid_method, device=device
        )
    if "kid" in todo:
        res.values["kid"], res.values["kid_std"], m = kid(rows, ref_rows)
        res.extra["kid_protocol"] = {
            "subsets": KID_SUBSETS,
            "subset_size": m,
            "seed": KID_SEED,
            "kernel": "poly (x.y / d + 1)^3",
            **(
                {"note": f"subset size {m} < {KID_SUBSET_SIZE}: fewer samples or reference rows"}
                if m < KID_SUBSET_SIZE
                else {}
            ),
        }
    if bootstrap:
        inputs = BootstrapInputs(
            fid=(rows, ref.mu, ref.sigma) if "fid" in todo else None,
            fd_dinov2=(samples.all_dinov2_rows(), ref.mu_dinov2, ref.sigma_dinov2) if "fd_dinov2" in todo else None,
            kid=(rows, ref_rows, res.extra["kid_protocol"]["subset_size"]) if "kid" in todo else None,
            logits=samples.all_logits() if "is" in todo else None,
            sample_in=adm.sample_in if adm is not None else None,
            cover=adm.cover if adm is not None else None,
        )
        res.values.update(
            bootstrap_intervals(
                samples.count, inputs, bootstrap, seed=bootstrap_seed, device=device, estimates=dict(res.values)
            )
        )
        res.extra["bootstrap"] = {
            "replicates": bootstrap,
            "seed": bootstrap_seed,
            "confidence": BOOTSTRAP_CONFIDENCE,
            "interval": "percentile, centred on the reported value, clipped to the metric's range",
            "resampled": "samples, with replacement; reference fixed",
            "keys": sorted(k for k in res.values if k.endswith(CI_SUFFIX)),
        }
    return res


def _extrapolations(res, todo, samples, rows, ref, bootstrap, bootstrap_seed, device) -> None:
    """FID_inf and IS_inf (:mod:`diffit_eval.metrics.fid_inf`) into `res`, with their fits."""
    from diffit_eval.metrics.fid_inf import fid_infinity, inception_score_infinity

    fits = {}
    if "fid_inf" in todo:
        fits["fid_inf"] = fid_infinity(
            rows, ref.mu, ref.sigma, bootstrap=bootstrap, bootstrap_seed=bootstrap_seed, device=device
        )
    if "is_inf" in todo:
        fits["is_inf"] = inception_score_infinity(
            samples.all_logits(), bootstrap=bootstrap, bootstrap_seed=bootstrap_seed
        )
    for key, fit in fits.items():
        res.values[key], res.values[key + "_se"] = fit.value, fit.stderr
        if fit.interval is not None:
            res.values[key + CI_SUFFIX] = fit.interval
        res.extra[key + "_fit"] = {
            **fit.record(),
            "seed": FID_INF_SEED,
            "points": FID_INF_POINTS,
            **({"interval": "refits on fresh subsets", "replicates": bootstrap} if fit.interval else {}),
        }


def sample_features(
    source, net, *, limit: int | None, batch_size: int, keep_rows: bool, progress: bool, dinov2=None
) -> FeatureSet:
    """A run folder's saved per-shard features when they match the network(s); else extract from images."""
    fs = run_folder_features(source, net, limit, dinov2=dinov2) if isinstance(source, RunSource) else None
    if fs is None:
        fs = extract_features(
            source, net, batch_size=batch_size, limit=limit, keep_rows=keep_rows, progress=progress, dinov2=dinov2
        )
    return fs


def run_metrics(
    samples_path: str | Path,
    ref_spec: str,
    *,
    metrics: list[str] | None = None,
    num_samples: int | None = None,
    weights: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    resize: str = DEFAULT_RESIZE,
    allow_download: bool = True,
    label: str | None = None,
    progress: bool = True,
    allow_resolution_mismatch: bool = False,
    fid_method: str = "eigh",
    dinov2_weights: str | None = None,
    bootstrap: int | None = None,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
    network: str = DEFAULT_NETWORK,
    per_class: bool = False,
) -> dict:
    """The whole `diffit-eval metrics` job as a library call; returns the JSON-ready record.

    `network="digits"`: features of the demo's digit classifier (docs/DEMO.md) instead of InceptionV3.
    `per_class`: also each class's numbers (the samples' labels: npz `arr_1`, a run's shards)."""
    from diffit_eval.features.device import default_batch_size
    from diffit_eval.features.dinov2 import load_dinov2_network
    from diffit_eval.features.registry import load_feature_network

    t0 = time.time()
    if num_samples is not None and num_samples < 2:
        raise UserError(f"--num-samples must be at least 2, got {num_samples}")
    if bootstrap is not None and bootstrap < 1:
        raise UserError(f"--bootstrap {bootstrap}: the number of replicates must be at least 1 (e.g. 200)")
    source = open_samples(samples_path)
    if num_samples is not None and num_samples > source.num_images:
        raise UserError(f"--num-samples {num_samples} but {samples_path} holds only {source.num_images} images")
    count = source.num_images if num_samples is None else num_samples
    labels = check_labels(source.labels(), count, str(samples_path)) if per_class else None
    check_request(metrics, count, per_class=per_class, sample_labels=labels)
    dinov2 = None
    if (
        metrics is not None and "fd_dinov2" in metrics
    ):  # the weights before the Inception ones: both are checked before any work
        dinov2 = load_dinov2_network(dinov2_weights, device=device, allow_download=allow_download)
    net = load_feature_network(weights, device=device, resize=resize, allow_download=allow_download, network=network)
    batch_size = batch_size or default_batch_size(str(next(net.parameters()).device))
    wanted_pr = metrics is None or any(g in metrics for g in ROW_GROUPS) or bool(bootstrap) or per_class
    ref = load_reference(
        ref_spec,
        net=net,
        batch_size=batch_size,
        keep_rows=wanted_pr,
        allow_download=allow_download,
        progress=progress,
        samples_resolution=source.resolution,
        samples_shown=str(samples_path),
        allow_resolution_mismatch=allow_resolution_mismatch,
        dinov2=dinov2,
        need_labels=per_class,
    )
    check_request(metrics, count, per_class=per_class, sample_labels=labels, ref=ref)
    if dinov2 is not None and ref.dinov2_sha256 and ref.dinov2_sha256 != dinov2.weights_sha256:
        raise UserError(
            f"reference {ref.shown} has DINOv2 statistics of other weights (sha256 {ref.dinov2_sha256[:12]}) than "
            f"{dinov2.weights_path.name} (sha256 {dinov2.weights_sha256[:12]}); rebuild it or pass the same weights"
        )
    built_name = (ref.meta.get("feature_network") or {}).get("name")
    flag = {name: flag for flag, name in FEATURE_NETWORKS.items()}.get(built_name)
    if flag is not None and built_name != net.describe()["name"]:
        raise UserError(f"reference {ref.shown} was built with the {built_name} feature network; pass --network {flag}")
    if ref.resize != net.resize:
        raise UserError(
            f"reference {ref.shown} was built with the {ref.resize} resize but these features use "
            f"{net.resize}; pass --resize {ref.resize} or rebuild the reference"
        )
    built_with = (ref.meta.get("feature_network") or {}).get("sha256")
    if built_with and built_with != net.weights_sha256:
        raise UserError(
            f"reference {ref.shown} was built with another feature network (sha256 {built_with[:12]}, "
            f"{'a stand-in' if ref.meta['feature_network'].get('standin') else ref.meta['feature_network'].get('name', 'InceptionV3')}) than "
            f"{net.weights_path.name} (sha256 {net.weights_sha256[:12]}); rebuild it or pass the same weights"
        )
    fs = sample_features(
        source, net, limit=num_samples, batch_size=batch_size, keep_rows=wanted_pr, progress=progress, dinov2=dinov2
    )
    res = evaluate(
        fs,
        ref,
        metrics,
        net=net,
        batch_size=batch_size,
        device=device,
        progress=progress,
        fid_method=fid_method,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        labels=labels,
        per_class=per_class,
    )
    manifest = source.manifest if isinstance(source, RunSource) else {}
    return {
        **res.values,
        "num_samples": res.num_samples,
        "unavailable": res.unavailable,
        "label": label or manifest.get("model") or Path(samples_path).stem,
        "dataset": ref.meta.get("dataset"),
        "resolution": ref.meta.get("resolution") or int(source.resolution[0]),
        "samples": str(samples_path),
        "reference": ref.describe(),
        "feature_network": net.describe(),
        **({"dinov2_network": dinov2.describe()} if dinov2 is not None else {}),
        **res.extra,
        "resize": net.resize,
        "fid_method": fid_method,
        **({"resolution_mismatch": ref.resolution_note} if ref.resolution_note else {}),
        "provenance": {
            "versions": package_versions(),
            "device": device_description(str(next(net.parameters()).device)),
            "elapsed_s": round(time.time() - t0, 3),
            "created": now_iso(),
        },
    }
