"""Features + reference -> FID, sFID, IS, precision, recall; and the JSON that records them.

A metric the reference cannot support is `None` with its reason in `unavailable`, never dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from diffit_eval.errors import UserError
from diffit_eval.features.extract import FeatureSet, extract_features
from diffit_eval.features.run_features import run_folder_features
from diffit_eval.generate.shards import RunSource
from diffit_eval.io.sources import open_samples
from diffit_eval.metrics.fid import frechet_distance_by
from diffit_eval.metrics.inception_score import inception_score
from diffit_eval.metrics.prc import K, precision_recall
from diffit_eval.protocol import DEFAULT_RESIZE, METRIC_GROUPS
from diffit_eval.provenance import device_description, now_iso, package_versions
from diffit_eval.references.store import Reference, load_reference

# precision/recall: ADM's float16 distances (the protocol); *_exact: float64 distances (diffit_eval/metrics/prc.py)
VALUE_KEYS = ("fid", "sfid", "is", "is_std", "precision", "recall", "precision_exact", "recall_exact")


@dataclass
class MetricsResult:
    values: dict = field(default_factory=lambda: {k: None for k in VALUE_KEYS})
    unavailable: dict = field(default_factory=dict)
    num_samples: int = 0


def parse_metrics(text: str | None) -> list[str] | None:
    """`fid,sfid,is,pr` -> list; None means every metric the reference supports."""
    if text is None or text.strip() in ("", "all"):
        return None
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METRIC_GROUPS]
    if bad:
        raise UserError(f"unknown metric(s) {', '.join(bad)}; choose from {','.join(METRIC_GROUPS)}")
    return names


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
) -> MetricsResult:
    """Compute the requested metrics (default: all the reference supports)."""
    if samples.count < 2:
        raise UserError(f"need at least 2 samples for statistics, got {samples.count}")
    res = MetricsResult(num_samples=samples.count)
    wanted = list(METRIC_GROUPS) if metrics is None else metrics
    for m in wanted:
        reason = ref.unsupported(m)
        if reason:
            res.unavailable[m] = reason
    if "pr" in wanted and "pr" not in res.unavailable and samples.count <= K:
        res.unavailable["pr"] = (
            f"precision/recall need more than {K} samples (k-th neighbour, k = {K}), got {samples.count}"
        )
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
    if "pr" in todo:
        rows = samples.all_pool_rows()
        if rows is None:
            raise ValueError("precision/recall need the sample pool_3 rows (extract with keep_rows=True)")
        ref_rows = ref.pr_feature_rows(net, batch_size=batch_size, progress=progress)
        res.values["precision"], res.values["recall"] = precision_recall(ref_rows, rows, device=device)
        res.values["precision_exact"], res.values["recall_exact"] = precision_recall(
            ref_rows, rows, arith="exact", device=device
        )
    return res


def sample_features(source, net, *, limit: int | None, batch_size: int, keep_rows: bool, progress: bool) -> FeatureSet:
    """A run folder's saved per-shard features when they match the network; else extract from images."""
    fs = run_folder_features(source, net, limit) if isinstance(source, RunSource) else None
    if fs is None:
        fs = extract_features(source, net, batch_size=batch_size, limit=limit, keep_rows=keep_rows, progress=progress)
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
) -> dict:
    """The whole `diffit-eval metrics` job as a library call; returns the JSON-ready record."""
    from diffit_eval.features.network import default_batch_size, load_feature_network

    t0 = time.time()
    if num_samples is not None and num_samples < 2:
        raise UserError(f"--num-samples must be at least 2, got {num_samples}")
    source = open_samples(samples_path)
    if num_samples is not None and num_samples > source.num_images:
        raise UserError(f"--num-samples {num_samples} but {samples_path} holds only {source.num_images} images")
    net = load_feature_network(weights, device=device, resize=resize, allow_download=allow_download)
    batch_size = batch_size or default_batch_size(str(next(net.parameters()).device))
    wanted_pr = metrics is None or "pr" in metrics
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
    )
    if ref.resize != net.resize:
        raise UserError(
            f"reference {ref.shown} was built with the {ref.resize} resize but these features use "
            f"{net.resize}; pass --resize {ref.resize} or rebuild the reference"
        )
    built_with = (ref.meta.get("feature_network") or {}).get("sha256")
    if built_with and built_with != net.weights_sha256:
        raise UserError(
            f"reference {ref.shown} was built with another feature network (sha256 {built_with[:12]}, "
            f"{'a stand-in' if ref.meta['feature_network'].get('standin') else 'InceptionV3'}) than "
            f"{net.weights_path.name} (sha256 {net.weights_sha256[:12]}); rebuild it or pass the same weights"
        )
    fs = sample_features(source, net, limit=num_samples, batch_size=batch_size, keep_rows=wanted_pr, progress=progress)
    res = evaluate(
        fs, ref, metrics, net=net, batch_size=batch_size, device=device, progress=progress, fid_method=fid_method
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
