"""The run: every rank samples its share of the missing shards and writes them; rank 0 then
streams the shards into the ADM npz, draws the grid and completes the manifest.

This is the one module of :mod:`diffit_eval.generate` that looks past the shards: when the plan
asks for on-the-fly features, each finished shard is handed to
:func:`diffit_eval.features.run_features.write_shard_features` (the features stage of the data path),
so `metrics RUN` can skip re-extracting the images.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from diffit_eval import distributed
from diffit_eval.errors import Interrupted, UserError
from diffit_eval.features.registry import load_feature_network
from diffit_eval.features.run_features import write_dinov2_features, write_shard_features
from diffit_eval.generate import shards
from diffit_eval.generate.plan import _resolve_dinov2, _resolve_inception, claim_run_dir, plan_run
from diffit_eval.generate.sample import (
    COLLECTIVE_TIMEOUT,
    RESIZE,
    RunPlan,
    SampleConfig,
    build_model,
    matmul_precision,
    sample_batch,
)
from diffit_eval.protocol import DINOV2_FEATURE_NETWORK, FEATURE_NETWORK

# ----------------------------------------------------------------------------
# The run.


def _progress(description: str, total: int, num_shards: int, done: int, enabled: bool):
    """A rich bar on stderr (rank 0): images, img/s, ETA and shards done; a no-op elsewhere."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from diffit_eval.progress import RateColumn, stderr_console

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        TextColumn("shards {task.fields[shards]}"),
        console=stderr_console,
        transient=True,
        disable=not (enabled and sys.stderr.isatty()),
    )
    task = bar.add_task(description, total=total, shards=f"{done}/{num_shards}")
    return bar, task


def _count_done(plan: RunPlan) -> int:
    return sum(shards.shard_path(plan.run_dir, k).is_file() for k in range(plan.num_shards))


def _row_writers(plan: RunPlan, device: str) -> list[tuple[Callable[[int], Path], Callable[[np.ndarray, Path], None]]]:
    """(shard k -> its rows' file, (images, file) -> write) for each feature network the run keeps rows of."""
    writers = []
    if plan.inception_weights is not None:
        weights = plan.inception_weights
        if not Path(weights).is_file():  # another node: its own copy (same sha256 or the features are named apart)
            weights = _resolve_inception(plan.inception_source)
        net = load_feature_network(weights, device=device, resize=RESIZE)
        writers.append(
            (
                lambda k: shards.features_path(plan.run_dir, k, net.weights_sha256, net.resize),
                lambda images, path: write_shard_features(net, images, path),
            )
        )
    if plan.dinov2_weights is not None:
        from diffit_eval.features.dinov2 import DINOv2Features

        weights = plan.dinov2_weights
        if not Path(weights).is_file():  # another node: its own copy (the rows are named by the sha256)
            weights = _resolve_dinov2(plan.dinov2_source)
        dino = DINOv2Features(weights).to(device)
        writers.append(
            (
                lambda k: shards.dinov2_features_path(plan.run_dir, k, dino.weights_sha256),
                lambda images, path: write_dinov2_features(dino, images, path),
            )
        )
    return writers


def _backfill_rows(plan: RunPlan, d: distributed.Dist, writers) -> None:
    """Shards finished by an earlier run without some network's rows get them now; each shard is read once."""
    missing = set(plan.todo)
    for k in distributed.my_share([k for k in range(plan.num_shards) if k not in missing], d):
        files = [(path_of(k), write) for path_of, write in writers]
        absent = [(path, write) for path, write in files if not path.is_file()]
        if absent:
            shard = shards.read_shard(
                shards.shard_path(plan.run_dir, k), shards.shard_seeds(plan.seeds, k, plan.shard_size)
            )
            for path, write in absent:
                write(shard["images"], path)


def run_shards(plan: RunPlan, d: distributed.Dist, device: str, vae=None, verbose: bool = True) -> tuple[int, float]:
    """This rank's share of the shards: sample, write, extract features. Returns (images generated, seconds
    spent generating them, model and VAE set-up excluded)."""
    from diffit.models import MODEL_PRESETS

    preset = MODEL_PRESETS[plan.preset]
    # The missing shards are shared out, not all shards, so a resumed run stays balanced.
    todo = distributed.my_share(plan.todo, d)
    writers = _row_writers(plan, device)
    _backfill_rows(plan, d, writers)
    if not todo:
        return 0, 0.0

    model = build_model(plan, device)
    if preset.kind == "latent" and vae is None:
        from diffit_eval.assets.vae import load_or_fetch_vae

        vae = load_or_fetch_vae(plan.vae, device=device)
    elif vae is not None:
        vae = vae.to(device)

    total = sum(len(shards.shard_seeds(plan.seeds, k, plan.shard_size)) for k in todo)
    generated, t0 = 0, time.time()
    what = "sampling" if d.world_size == 1 else f"sampling (rank 0 of {d.world_size})"
    bar, task = _progress(what, total, plan.num_shards, _count_done(plan), verbose and d.is_main)
    with bar, matmul_precision(plan.precision):
        for k in todo:
            seeds = shards.shard_seeds(plan.seeds, k, plan.shard_size)
            images = np.empty((len(seeds), preset.resolution, preset.resolution, 3), dtype=np.uint8)
            labels = np.empty(len(seeds), dtype=np.int64) if preset.num_classes else None
            first = k * plan.shard_size  # position of the shard's first seed in the seed list
            for start in range(0, len(seeds), plan.batch_size):
                batch = seeds[start : start + plan.batch_size]
                x, y = sample_batch(
                    model,
                    preset,
                    batch,
                    steps=plan.steps,
                    cfg_scale=plan.cfg_scale,
                    vae=vae,
                    quantize=plan.quantize,
                    device=device,
                    class_labels=plan.labels_at(range(first + start, first + start + len(batch))),
                )
                images[start : start + len(batch)] = x.cpu().numpy()
                if labels is not None:
                    labels[start : start + len(batch)] = y.cpu().numpy()
                generated += len(batch)
                bar.advance(task, len(batch))
            shards.write_shard(shards.shard_path(plan.run_dir, k), images, labels, seeds)
            for path_of, write in writers:
                write(images, path_of(k))
            del images, labels
            bar.update(task, shards=f"{_count_done(plan)}/{plan.num_shards}")
    return generated, time.time() - t0


def finish_run(plan: RunPlan, elapsed: float, generated: int, world_size: int, device: str) -> Path:
    """Rank 0, after every rank is done: the npz (streamed from the shards), grid.png, the manifest."""
    from diffit_eval.provenance import device_description, now_iso

    missing = shards.missing_shards(plan.run_dir, plan.manifest)
    if missing:  # a rank died without raising; say so rather than write a short npz
        raise UserError(
            f"{len(missing)} of {plan.num_shards} shards are missing after sampling; "
            f"re-run the same command to resume: {plan.manifest['command']}"
        )
    npz_name = shards.npz_name(len(plan.seeds), *plan.manifest["resolution"])
    if not (plan.run_dir / npz_name).is_file():
        shards.assemble_npz(plan.run_dir, plan.manifest)
    grid_labels = shards.write_grid(plan.run_dir, plan.manifest)
    features = None
    if plan.inception_weights is not None:
        from diffit_eval.assets.cache import sha256_file

        features = {
            "network": FEATURE_NETWORK,
            "weights": plan.inception_weights,
            "sha256": sha256_file(plan.inception_weights),
            "resize": RESIZE,
            "files": "shards/shard_NNNNN.features-<sha256[:16]>-<resize>.npz",
        }
    dinov2 = plan.manifest.get("dinov2_features")
    if plan.dinov2_weights is not None:
        from diffit_eval.assets.cache import sha256_file

        digest = sha256_file(plan.dinov2_weights)
        dinov2 = {
            "network": DINOV2_FEATURE_NETWORK,
            "weights": plan.dinov2_weights,
            "sha256": digest,
            "files": "shards/shard_NNNNN.dinov2-<sha256[:16]>.npz",
        }
    sessions = list(plan.manifest.get("sessions", []))
    sessions.append(
        {
            "finished": now_iso(),
            "elapsed_s": round(elapsed, 3),
            "generated": generated,
            "world_size": world_size,
            "batch_size": plan.batch_size,
            "device": device_description(device),
            "compile": plan.compile,
        }
    )
    plan.manifest.update(
        {
            "complete": True,
            "npz": npz_name,
            "grid": shards.GRID,
            "grid_labels": grid_labels,
            "features": features or plan.manifest.get("features"),
            "dinov2_features": dinov2,
            "updated": now_iso(),
            "sessions": sessions,
        }
    )
    shards.write_manifest(plan.run_dir, plan.manifest)
    return plan.run_dir / npz_name


def _interrupted_message(plan: RunPlan | None) -> str:
    """What Ctrl-C leaves: the finished shards (kept, every one complete) and the command that resumes."""
    if plan is None:
        return "before sampling started; nothing was written"
    done = _count_done(plan)
    npz = shards.npz_name(len(plan.seeds), *plan.manifest["resolution"])
    if done == plan.num_shards and not (plan.run_dir / npz).is_file():
        kept = f"all {done} shards are finished and kept in {plan.run_dir}, {npz} is not written yet"
    else:
        kept = (
            f"{done} of {plan.num_shards} shards are finished and kept in {plan.run_dir} "
            "(the shard being sampled is dropped)"
        )
    return f"{kept}; resume with: {plan.manifest['command']}"


def generate(config: SampleConfig) -> Path:
    """Sample `config` into its run folder (resuming a matching one); returns the run folder.

    One process by default; under torchrun or srun every rank calls this and takes its share.
    """
    d = distributed.init(config.device, timeout=COLLECTIVE_TIMEOUT)
    device = distributed.device_for(d, config.device)
    lock, vae, plan = None, None, None
    t0 = time.time()
    try:

        def plan_and_claim():
            nonlocal lock, vae
            planned, vae = plan_run(config)
            lock = claim_run_dir(planned)
            return planned, None

        plan, _ = distributed.main_then_broadcast(plan_and_claim, d)
        generated, seconds = run_shards(plan, d, device, vae=vae, verbose=config.verbose)
        distributed.barrier(d)
        per_rank = distributed.all_gather_objects((generated, seconds), d)
        generated, seconds = sum(g for g, _ in per_rank), max(s for _, s in per_rank)
        if d.is_main:
            elapsed = time.time() - t0
            npz = finish_run(plan, elapsed, generated, d.world_size, device)
            if config.verbose:
                rate = generated / seconds if seconds > 0 else 0.0  # over the slowest rank's sampling time
                resumed = len(plan.seeds) - generated
                print(
                    f"diffit-eval: sampled {generated} images in {elapsed:.1f} s ({rate:.2f} img/s while sampling, "
                    f"{d.world_size} process{'es' if d.world_size > 1 else ''})"
                    + (f", {resumed} from earlier runs" if resumed else "")
                    + f"; {len(plan.seeds)} samples in {npz}",
                    file=sys.stderr,
                )
        distributed.shutdown(d)
        return plan.run_dir
    except KeyboardInterrupt:
        claimed = lock is not None or (plan is not None and not d.is_main)
        raise Interrupted(_interrupted_message(plan if claimed else None)) from None
    finally:
        if lock is not None:
            lock.release()
        if d.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
