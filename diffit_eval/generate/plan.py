"""Planning a run (rank 0): resolve the configuration, check every asset in the order a user meets
them (checkpoint, VAE, feature network), then lock the run folder and check or write its manifest.
Nothing is written before every check passed; a refusal leaves no folder and no lock."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from diffit_eval import run_folder
from diffit_eval.errors import UserError
from diffit_eval.generate import shards
from diffit_eval.generate.sample import (
    DEFAULT_BATCH,
    DEFAULT_NUM_SAMPLES,
    DEFAULT_PRECISION,
    DEFAULT_QUANTIZE,
    PRECISIONS,
    TEST_PRESETS,
    RunPlan,
    SampleConfig,
    parse_class_labels,
)
from diffit_eval.protocol import ROW_BYTES

# ----------------------------------------------------------------------------
# Planning (rank 0): resolve the configuration, check assets, lock and check the folder.


def _resolve_weights(preset: str, has_release: str | None, ckpt: str | None) -> tuple[tuple, str, dict]:
    """(weights for build_model, the compared checkpoint identity, the manifest's checkpoint record)."""
    from diffit_eval.assets.cache import sha256_file
    from diffit_eval.assets.checkpoints import resolve_checkpoint

    if ckpt is None:
        if has_release:
            ckpt = has_release
        elif preset in TEST_PRESETS:
            text = "random weights (test preset) seed 0"
            return ("random", 0, None), text, {"source": text, "sha256": None}
        else:
            raise UserError(
                f"model {preset} has no released checkpoint; pass --ckpt PATH "
                "(or --ckpt random[:SEED] for random weights)"
            )
    if ckpt == "random" or ckpt.startswith("random:"):
        try:
            seed = int(ckpt.partition(":")[2] or 0)
        except ValueError:
            raise UserError(f"bad --ckpt {ckpt!r}: expected random or random:SEED") from None
        text = f"random weights seed {seed}"
        return ("random", seed, None), text, {"source": text, "sha256": None}
    path = resolve_checkpoint(ckpt)  # downloads a released name; offline: MissingAssetError naming --ckpt
    digest = sha256_file(path)
    return ("file", str(path), ckpt), f"sha256:{digest}", {"source": ckpt, "path": str(path), "sha256": digest}


def _vae_identity(source: str) -> tuple[str, dict]:
    from diffit.vae import vae_repo

    from diffit_eval.assets.cache import sha256_file

    path = Path(source).expanduser()
    if path.is_dir():
        weights = sorted(path.glob("diffusion_pytorch_model.*"))
        digest = sha256_file(weights[0]) if weights else None
        return (f"sha256:{digest}" if digest else str(path.resolve())), {"source": str(path), "sha256": digest}
    return source, {"source": source, "repo": vae_repo(source)}


def _resolved(resolve, weights: str | None, hint: str) -> str:
    """`resolve(weights)` as a path string; a missing file's error (same exit code) says how to do without."""
    try:
        return str(resolve(weights))
    except UserError as e:
        raise type(e)(f"{e}; {hint}", e.code) from None


def _resolve_inception(weights: str | None) -> str:
    from diffit_eval.assets.inception import resolve_inception_weights

    return _resolved(resolve_inception_weights, weights, "or pass --no-features to sample without on-the-fly features")


def _resolve_dinov2(weights: str | None) -> str:
    from diffit_eval.assets.dinov2 import resolve_dinov2_weights

    return _resolved(resolve_dinov2_weights, weights, "or leave dinov2 out of --features")


def keep_features(resolution: int, asked: bool | None) -> bool:
    """Whether shards keep their Inception features: as asked, else (auto) only where the float32
    rows (20,316 bytes an image) cost less than the images they describe, i.e. from 83x83 up:
    10% of the images at 256x256, but 6.6x them at 32x32, where `metrics RUN` re-extracting from
    the shard images costs one Inception pass (well under 1% of sampling's network calls)."""

    return asked if asked is not None else ROW_BYTES < resolution * resolution * 3


def default_run_dir(
    preset: str, sampler: str, steps: int, cfg_scale: float | None, seeds: list[int], extras: list[str] = ()
) -> Path:
    """runs/latent-256-ddpm250-cfg4.4-seeds0-49999 (plus any non-default precision, rule, VAE, weights)."""
    parts = [preset, f"{sampler}{steps}"]
    if cfg_scale is not None:
        parts.append(f"cfg{cfg_scale:g}")
    parts.append("seeds" + shards.format_seeds(seeds).replace(",", "_"))
    parts += list(extras)
    name = "-".join(parts)
    if len(name) > 120:  # a long comma list of seeds
        name = name[:100] + f"-{len(seeds)}seeds"
    return run_folder.RUNS_ROOT / name


def _command(config: SampleConfig, plan_seeds: str, run_dir: Path, steps: int, cfg: float | None) -> str:
    import shlex

    resolved = replace(config, steps=steps, cfg_scale=cfg, seeds=plan_seeds, num_samples=None, out=run_dir)
    return shlex.join(["diffit-eval", *resolved.cli_args()])


def plan_run(config: SampleConfig) -> tuple[RunPlan, object | None]:
    """Resolve `config` (no folder is touched): the plan, and the VAE loaded while checking it (or None)."""
    from diffit.models import MODEL_PRESETS, resolve_preset
    from diffit.quantize import UINT8_RULES

    try:
        name = resolve_preset(config.model)
    except ValueError as e:
        raise UserError(str(e)) from None
    p = MODEL_PRESETS[name]

    steps = p.steps if config.steps is None else int(config.steps)
    if not 2 <= steps <= 1000:  # EDM needs sigma_0 > sigma_min; DDPM respacing needs two kept steps
        raise UserError(f"--steps {steps}: the {p.sampler} sampler takes 2 to 1000 steps")
    if p.guidance is None:
        if config.cfg_scale is not None:
            raise UserError(f"--cfg-scale does not apply: model {name} is unconditional (no classifier-free guidance)")
        cfg = None
    else:
        cfg = p.guidance.scale if config.cfg_scale is None else float(config.cfg_scale)
        if not cfg >= 1:
            raise UserError(f"--cfg-scale {cfg:g}: the guidance scale must be at least 1 (1 = no guidance)")

    class_labels = None
    if config.class_labels is not None:
        class_labels = parse_class_labels(config.class_labels, p.num_classes, name)

    if config.seeds is not None:
        seeds = shards.parse_seeds(config.seeds)
        if config.num_samples is not None and config.num_samples != len(seeds) and config.verbose:
            print(
                f"diffit-eval: --seeds gives {len(seeds)} samples; --num-samples {config.num_samples} is ignored",
                file=sys.stderr,
            )
    else:
        n = DEFAULT_NUM_SAMPLES if config.num_samples is None else int(config.num_samples)
        if not 1 <= n <= shards.MAX_SEEDS:
            raise UserError(f"--num-samples must be 1 to {shards.MAX_SEEDS:,}, got {n}")
        seeds = list(range(n))
    if config.shard_size < 1:
        raise UserError(f"--shard-size must be at least 1, got {config.shard_size}")
    batch = DEFAULT_BATCH[p.kind] if config.batch_size is None else int(config.batch_size)
    if batch < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch}")
    quantize = config.quantize or DEFAULT_QUANTIZE
    if quantize not in UINT8_RULES:
        raise UserError(f"unknown --quantize {quantize!r}; choose from {', '.join(UINT8_RULES)}")
    if config.precision not in PRECISIONS:
        raise UserError(f"unknown --precision {config.precision!r}; choose from {', '.join(PRECISIONS)}")

    if p.kind == "latent":
        vae = config.vae or ("tiny" if name == "latent-tiny" else "ema")
    elif config.vae is not None:
        raise UserError(f"--vae does not apply: model {name} samples in pixel space")
    else:
        vae = None

    # Assets, in the order a user meets them: checkpoint, VAE, feature network. Nothing is written yet.
    weights, ckpt_id, ckpt_record = _resolve_weights(name, p.checkpoint, config.ckpt)
    loaded_vae, vae_id, vae_record = None, None, None
    if vae is not None:
        from diffit_eval.assets.vae import load_or_fetch_vae

        loaded_vae = load_or_fetch_vae(vae)  # offline and not cached: MissingAssetError with --vae PATH
        vae_id, vae_record = _vae_identity(vae)
    inception = _resolve_inception(config.inception_weights) if keep_features(p.resolution, config.features) else None
    dinov2 = _resolve_dinov2(config.dinov2_weights) if config.dinov2_features else None

    guidance = None
    if p.guidance is not None:
        guidance = {"scale": cfg, "ramp": p.guidance.ramp, "power": p.guidance.power, "channels": p.guidance.channels}
    extras = [x for x, default in ((config.precision, DEFAULT_PRECISION), (quantize, DEFAULT_QUANTIZE)) if x != default]
    if config.vae is not None and vae_id != ("tiny" if name == "latent-tiny" else "ema"):
        extras.append(f"vae-{Path(config.vae).name}")
    if class_labels is not None:
        extras.append("class" + config.class_labels.replace(" ", "").replace(",", "_"))
    if config.ckpt is not None and weights[0] == "random":
        extras.append(config.ckpt.replace(":", ""))
    run_dir = (
        Path(config.out) if config.out is not None else default_run_dir(name, p.sampler, steps, cfg, seeds, extras)
    )

    seeds_text = shards.format_seeds(seeds)
    # Only what changes the images is compared on resume: batch size, world size, device,
    # --features and --compile are deliberately absent.
    image_config = {
        "model": name,
        "resolution": p.resolution,
        "num_classes": p.num_classes,
        "checkpoint": ckpt_id,
        "sampler": p.sampler,
        "steps": steps,
        "guidance": guidance,
        "seeds": seeds_text,
        "shard_size": config.shard_size,
        "quantize": quantize,
        "vae": vae_id,
        "precision": config.precision,
    }
    if class_labels is not None:  # only when given, so the folders of drawn-class runs keep their configuration
        image_config["class_labels"] = config.class_labels.replace(" ", "")
    from diffit_eval.provenance import now_iso, package_versions

    manifest = {
        "format": shards.FORMAT,
        "model": name,
        "config": image_config,
        "num_samples": len(seeds),
        "resolution": [p.resolution, p.resolution],
        "num_shards": shards.num_shards(len(seeds), config.shard_size),
        "checkpoint": ckpt_record,
        "vae": vae_record,
        "command": _command(config, seeds_text, run_dir, steps, cfg),
        "versions": package_versions(),
        "created": now_iso(),
        "complete": False,
    }
    plan = RunPlan(
        preset=name,
        run_dir=run_dir,
        seeds=seeds,
        shard_size=config.shard_size,
        batch_size=batch,
        steps=steps,
        cfg_scale=cfg,
        quantize=quantize,
        precision=config.precision,
        compile=config.compile,
        weights=weights,
        vae=vae,
        inception_weights=inception,
        inception_source=config.inception_weights,
        dinov2_weights=dinov2,
        dinov2_source=config.dinov2_weights,
        class_labels=class_labels,
        manifest=manifest,
    )
    return plan, loaded_vae


def claim_run_dir(plan: RunPlan) -> run_folder.RunLock:
    """Lock the folder, then check or write its manifest; returns the held lock (rank 0 only).

    A refusal (a folder that is not a run, another configuration, an unwritable path) leaves
    nothing behind: no lock file, no folder this call created.
    """
    run_dir = plan.run_dir
    where = f"the run folder {run_dir}"
    try:
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"--out {run_dir} is a file; pass a folder for the run")
        manifest_path = run_dir / run_folder.MANIFEST
        if (
            run_dir.is_dir()
            and not manifest_path.is_file()
            and any(p.name != run_folder.LOCK for p in run_dir.iterdir())
        ):
            raise UserError(
                f"{run_dir} exists and is not a sample run folder (no {run_folder.MANIFEST}); pass another --out"
            )
        created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # removed again on a refusal
        lock_existed = (run_dir / run_folder.LOCK).exists()
        lock = run_folder.RunLock(run_dir).acquire()
    except OSError as e:
        raise UserError(
            f"cannot write {where} ({e.strerror or e}: {e.filename or run_dir}); pass another --out"
        ) from None
    try:
        if manifest_path.is_file():
            old = shards.read_manifest(run_dir)
            diff = run_folder.config_differences(old["config"], plan.manifest["config"])
            if diff:
                raise UserError(
                    f"{run_dir} holds a run with another configuration ({'; '.join(diff)}); "
                    "pass another --out, or delete the folder to start over"
                )
            plan.manifest = {**old, "versions": plan.manifest["versions"], "command": plan.manifest["command"]}
        run_folder.remove_stale_temporaries(run_dir, (shards.SHARD_DIR,))
        shards.write_manifest(run_dir, plan.manifest)
        (run_dir / shards.SHARD_DIR).mkdir(exist_ok=True)
        plan.todo = shards.missing_shards(run_dir, plan.manifest)
    except BaseException as e:
        lock.release()
        if not lock_existed:
            (run_dir / run_folder.LOCK).unlink(missing_ok=True)
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        if isinstance(e, OSError):
            raise UserError(
                f"cannot write {where} ({e.strerror or e}: {e.filename or run_dir}); pass another --out"
            ) from None
        raise
    return lock
