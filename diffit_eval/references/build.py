"""Building a reference from a dataset (`diffit-eval ref build`): ADM's preprocessing, then the
images streamed through the feature network into float64 running sums, split into fixed chunks of
images so that any number of processes writes the same bytes."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from diffit_eval import distributed
from diffit_eval.assets.cache import atomic_path, check_writable, sha256_file, write_json_atomic
from diffit_eval.errors import Interrupted, UserError
from diffit_eval.features.extract import FeatureSet, extract_batch
from diffit_eval.features.stats import RunningStats
from diffit_eval.protocol import (
    DEFAULT_NETWORK,
    DEFAULT_RESIZE,
    DINOV2_STAT_KEYS,
    PR_LABELS_KEY,
    PR_ROWS_KEY,
    RESIZE_MODES,
)
from diffit_eval.provenance import now_iso, package_versions
from diffit_eval.references.registry import (
    NAME_PATTERN,
    cached_path,
    record_path,
    registry,
)


def pr_subset(count: int, pr_images: int, seed: int) -> np.ndarray:
    """Sorted indices of the images kept for precision/recall: chosen up front from the seed alone."""
    k = min(pr_images, count)
    return np.sort(np.random.default_rng(seed).choice(count, size=k, replace=False)) if k else np.zeros(0, np.int64)


def _on_main(fn, d: distributed.Dist):
    """`fn()` on rank 0 only (a download, a file write); its result, or its error, on every rank."""
    return distributed.main_then_broadcast(lambda: (fn(), None), d)[0]


class _ChunkWorker:
    """Features, P/R images and their pool_3 rows of one chunk of images, on this rank."""

    def __init__(
        self,
        images,
        net,
        *,
        resolution: int,
        crop: str,
        batch_size: int,
        pr_positions: dict[int, int],
        threads: ThreadPoolExecutor | None,
        advance,
        dinov2=None,
    ) -> None:
        self.images, self.net, self.resolution, self.crop = images, net, resolution, crop
        self.dinov2 = dinov2  # the FD_DINOv2 network, run on the same batches, or None
        self.batch_size, self.pr_positions, self.threads, self.advance = batch_size, pr_positions, threads, advance

    def _load(self, index: int) -> np.ndarray:
        from diffit_eval.io.preprocess import load_preprocessed

        return load_preprocessed(self.images, index, self.resolution, self.crop)

    def __call__(self, chunk: int, indices: range) -> dict:
        try:
            fs = FeatureSet.for_network(self.net)  # per chunk: its logits are dropped with it, so memory stays flat
            pr_pos, pr_images, pr_rows, batch, in_pr = [], [], [], [], []
            # Threads decode and crop ahead (PIL releases the GIL); map keeps the order.
            loaded = self.threads.map(self._load, indices) if self.threads else map(self._load, indices)
            for index, image in zip(indices, loaded):
                batch.append(image)
                in_pr.append(index in self.pr_positions)
                if in_pr[-1]:
                    pr_pos.append(self.pr_positions[index])
                    pr_images.append(image)
                if len(batch) == self.batch_size or index == indices[-1]:
                    extract_batch(self.net, np.stack(batch), fs, keep_rows=True, dinov2=self.dinov2)
                    pr_rows.append(fs.pool_rows.pop()[np.array(in_pr)])  # only the P/R images' rows are kept
                    self.advance(len(batch))
                    batch, in_pr = [], []
            return {
                "chunk": chunk,
                "count": len(indices),
                "pool": fs.pool,
                "spatial": fs.spatial,
                "dinov2": fs.dinov2,
                "pr_pos": np.array(pr_pos, np.int64),
                "pr_images": np.stack(pr_images) if pr_images else None,
                "pr_rows": np.concatenate(pr_rows) if pr_images else None,
            }
        except UserError as e:  # handed to every rank, so all stop together instead of waiting forever
            return {"error": str(e)}


def build_reference(
    data: str | os.PathLike,
    *,
    name: str,
    resolution: int,
    crop: str = "adm",
    dataset: str | None = None,
    resize: str = DEFAULT_RESIZE,
    pr_images: int = 10_000,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    dinov2: bool = False,
    dinov2_weights: str | os.PathLike | None = None,
    network: str = DEFAULT_NETWORK,
    device: str | None = None,
    batch_size: int | None = None,
    chunk_size: int = 1000,
    workers: int = 4,
    allow_download: bool = True,
    progress: bool = True,
) -> Path:
    """Compute an ADM-compatible reference npz from a dataset: `mu`, `sigma`, `mu_s`, `sigma_s`
    (float64), `arr_0` (a seeded random `pr_images` of the preprocessed images, in index order) and
    `meta` (JSON); from a labelled dataset (class folders, npz `arr_1`) also `pr_labels`, the class of
    each `arr_0` image (`metrics --per-class`), and the class folder names in `meta`. With `dinov2` (or `dinov2_weights`), the DINOv2 CLS-token statistics of the same
    images, from the same read of each batch, as `mu_dinov2` / `sigma_dinov2` (FD_DINOv2,
    docs/METRICS.md). `network="digits"`: the demo's digit classifier instead of InceptionV3
    (:mod:`diffit_eval.features.digits`; no sFID statistics).

    Images are taken in sorted order and cut into chunks of `chunk_size`. Each chunk's float64 sums
    are formed on one rank, batch by batch, and rank 0 adds the chunk sums in chunk order, so the
    file depends on `batch_size` and `chunk_size` but not on the number of processes (torchrun).
    Identical bytes also need identical kernels: on CPU the same threads per process (torchrun
    gives each one thread; set OMP_NUM_THREADS=1 for a single process to match), on GPU the same
    GPU model and deterministic cuDNN choices.
    """
    from diffit_eval.assets.inception import resolve_inception_weights
    from diffit_eval.features.device import default_batch_size
    from diffit_eval.features.network import InceptionFeatures
    from diffit_eval.features.registry import load_feature_network
    from diffit_eval.io.preprocess import check_crop
    from diffit_eval.io.readers import open_image_set
    from diffit_eval.progress import progress_bar

    if not NAME_PATTERN.match(name):
        raise UserError(f"--name {name!r} must be letters, digits, '.', '_' or '-' (it names a file in the cache)")
    if out is None and name in registry():
        raise UserError(f"{name} is a registry name; choose another --name or pass --out PATH")
    check_crop(crop)
    if resize not in RESIZE_MODES:
        raise UserError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    for label, value, least in (
        ("--resolution", resolution, 8),
        ("--batch-size", batch_size or 1, 1),
        ("--chunk-size", chunk_size, 1),
        ("--pr-images", pr_images, 0),
        ("--workers", workers, 0),
    ):
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
    if network == DEFAULT_NETWORK:
        weights_path = _on_main(lambda: resolve_inception_weights(weights, allow_download=allow_download), d)
        net = InceptionFeatures(weights_path, resize=resize).to(dev)
    else:  # the shipped digits network: nothing to fetch
        net = load_feature_network(weights, device=dev, network=network)
        resize = net.resize
    dino = None
    if dinov2 or dinov2_weights is not None:
        from diffit_eval.assets.dinov2 import resolve_dinov2_weights
        from diffit_eval.features.dinov2 import DINOv2Features

        dino_path = _on_main(lambda: resolve_dinov2_weights(dinov2_weights, allow_download=allow_download), d)
        dino = DINOv2Features(dino_path).to(dev)

    chunks = [range(s, min(s + chunk_size, count)) for s in range(0, count, chunk_size)]
    kept = pr_subset(count, pr_images, seed)
    labelled = images.labels()
    pr_labels = None if labelled is None or not len(kept) else labelled[0][kept]
    pr_positions = {int(i): p for p, i in enumerate(kept)}
    pool_sum = RunningStats(net.pool_dim)
    spatial_sum = RunningStats(net.spatial_dim) if net.spatial_dim else None
    dino_sum = RunningStats(dino.dim) if dino is not None else None
    pr_store, pr_tmp = None, None
    if d.is_main and len(kept):
        # The P/R images go to a scratch .npy beside the output: 10,000 at 512x512 are 7.9 GB.
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, pr_tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".pr.tmp", dir=out_path.parent)
        os.close(fd)
        pr_store = np.lib.format.open_memmap(
            pr_tmp, mode="w+", dtype=np.uint8, shape=(len(kept), resolution, resolution, 3)
        )
        pr_rows = np.zeros((len(kept), net.pool_dim), np.float32)
    done = [0]  # images through the network on this rank, for the Ctrl-C message
    try:
        with (
            progress_bar(count, f"reference {name}", enabled=progress and d.is_main) as bar_advance,
            ThreadPoolExecutor(workers) if workers else contextlib.nullcontext() as threads,
        ):

            def advance(n: int) -> None:
                done[0] += n
                bar_advance(n)

            work = _ChunkWorker(
                images,
                net,
                resolution=resolution,
                crop=crop,
                batch_size=batch_size,
                pr_positions=pr_positions,
                threads=threads,
                advance=advance if d.is_main else lambda n: None,
                dinov2=dino,
            )
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
                    if spatial_sum is not None:
                        spatial_sum.merge(r["spatial"])
                    if dino_sum is not None:
                        dino_sum.merge(r["dinov2"])
                    if r["pr_images"] is not None:
                        pr_store[r["pr_pos"]] = r["pr_images"]
                        pr_rows[r["pr_pos"]] = r["pr_rows"]
                    if rank:
                        advance(r["count"])

        holds = (
            ["fid"]
            + (["sfid"] if spatial_sum is not None else [])
            + (["pr"] if len(kept) else [])
            + (["fd_dinov2"] if dino is not None else [])
        )
        meta = {
            "name": name,
            "dataset": dataset or name,
            "resolution": resolution,
            "resize": resize,
            "crop": crop,
            "source": str(Path(data).expanduser().resolve()),
            "count": count,
            "pr_images": int(len(kept)),
            "holds": holds,
            **({"labelled": True} if pr_labels is not None else {}),
            **({"classes": labelled[1]} if pr_labels is not None and labelled[1] else {}),
            "seed": seed,
            "batch_size": batch_size,
            "chunk_size": chunk_size,
            "feature_network": {k: v for k, v in net.describe().items() if k != "weights"},
            **({"dinov2_network": {k: v for k, v in dino.describe().items() if k != "weights"}} if dino else {}),
            "versions": package_versions(),
            "created": now_iso(),
        }

        def write() -> Path:
            arrays = {"mu": pool_sum.mean, "sigma": pool_sum.cov}
            if spatial_sum is not None:
                arrays.update(mu_s=spatial_sum.mean, sigma_s=spatial_sum.cov)
            if dino_sum is not None:
                arrays.update(zip(DINOV2_STAT_KEYS, (dino_sum.mean, dino_sum.cov)))
            if pr_store is not None:
                pr_store.flush()
                arrays["arr_0"] = pr_store
                arrays[PR_ROWS_KEY] = pr_rows  # for the network and resize `meta` names
                if pr_labels is not None:
                    arrays[PR_LABELS_KEY] = pr_labels
            arrays["meta"] = np.array(json.dumps(meta))  # 0-d unicode: reference.py reads json.loads(str(z["meta"]))
            in_cache = out_path.resolve() == cached_path(name).resolve()
            if in_cache:  # a stale record would make the new file look corrupt to a concurrent reader
                record_path(name).unlink(missing_ok=True)
            with atomic_path(out_path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
            if in_cache:
                write_json_atomic(
                    record_path(name),
                    {
                        "name": name,
                        "built": True,
                        "sha256": sha256_file(out_path),
                        "size": out_path.stat().st_size,
                        "sha256_source": "built",
                        "created": meta["created"],
                        **{
                            k: meta[k]
                            for k in (
                                "dataset",
                                "resolution",
                                "resize",
                                "crop",
                                "source",
                                "count",
                                "pr_images",
                                "holds",
                            )
                        },
                        "standin": meta["feature_network"]["standin"]
                        or bool(meta.get("dinov2_network", {}).get("standin")),
                    },
                )
            return out_path

        written = _on_main(write, d)
    except KeyboardInterrupt:
        raise Interrupted(
            f"{done[0]} of {count} images had gone through the feature network; {out_path} was not "
            "written and the scratch file is removed (a build starts over)"
        ) from None
    finally:
        if pr_tmp is not None:
            pr_store = None
            Path(pr_tmp).unlink(missing_ok=True)
    if owns_group:
        distributed.shutdown(d)
    return written
