"""The sharded sample generator behind `diffit-eval sample`, as a library call.

`generate(SampleConfig(model="latent-256"))` follows the paper's protocol for the preset unless
told otherwise: 50,000 samples, the preset's sampler and steps (latent: DDPM 250 with the
preset's guidance; image space: EDM Heun), classes drawn uniformly per sample, the released
checkpoint, sd-vae-ft-ema, and the release's truncating uint8 rule.

Randomness follows EDM: sample i draws its class, its initial noise and every per-step noise, in
that order, from its own generator seeded with i (:class:`diffit.random.StackedRandomGenerator`),
so the images do not depend on the world size, the batch size or where a run was resumed.

Work is split by shard: shard k holds seeds[k*S:(k+1)*S]; under torchrun or srun each rank takes
its share of the shard indices (:func:`diffit_eval.distributed.my_share`) and holds at most its
current batch and one shard of images. Finished shards are skipped on a re-run; rank 0 holds the
run lock, checks the manifest, and at the end streams the shards into the ADM npz (see
:mod:`diffit_eval.shards` for the folder layout).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from diffit_eval import distributed, shards
from diffit_eval.errors import Interrupted, MissingAssetError, UserError

TEST_PRESETS = ("latent-tiny", "cifar10-tiny")  # no checkpoint: seeded random weights by default
PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "tf32"                      # the release: fp32 weights, TF32 matmuls (DiT's sample_ddp.py)
DEFAULT_BATCH = {"latent": 16, "image": 64}     # per GPU
DEFAULT_NUM_SAMPLES = 50_000
DEFAULT_SHARD_SIZE = 1_000
DEFAULT_QUANTIZE = "truncate"                   # the DiffiT release's uint8 rule (SPEC 2, "Pixels")
FEATURE_BATCH = 64                              # images per Inception forward for the on-the-fly features
RESIZE = "legacy-tf"                            # the published protocol's resize (SPEC 5)
LATENT_CHANNELS = 4                             # SD VAE latents
# How long a rank may wait for the others (rank 0 downloading the checkpoint, a rank finishing one
# more shard than the rest, rank 0 writing the npz); torch's NCCL default of 10 minutes is too short.
COLLECTIVE_TIMEOUT = timedelta(hours=12)


@dataclass
class SampleConfig:
    """Everything `diffit-eval sample` takes; None means the preset's (the paper's) choice."""

    model: str                                  # Preset name or alias (diffit.models.MODEL_PRESETS).
    ckpt: str | None = None                     # Checkpoint name or path, "random" or "random:SEED".
    vae: str | None = None                      # ema | mse | tiny | PATH (latent models only).
    steps: int | None = None                    # Sampler steps (DDPM respaced steps, EDM N).
    cfg_scale: float | None = None              # Guidance scale s (guided presets only); 1 = unguided.
    num_samples: int | None = None              # Samples with seeds 0..N-1 (default 50,000).
    seeds: str | None = None                    # "0-49999", "0-9,20-29"; overrides num_samples.
    batch_size: int | None = None               # Samples per forward on each device.
    shard_size: int = DEFAULT_SHARD_SIZE        # Samples per shard file.
    out: str | Path | None = None               # Run folder (default runs/<model>-<sampler><steps>-...).
    precision: str = DEFAULT_PRECISION          # fp32 | tf32 | bf16 (autocast of the model forward).
    quantize: str | None = None                 # uint8 rule: truncate | round.
    compile: bool = False                       # torch.compile the model.
    features: bool | None = None                # Inception features per shard, for `metrics`; None: auto.
    inception_weights: str | None = None        # Local Inception weights for the features.
    device: str | None = None                   # Default: this rank's GPU, else the CPU.
    verbose: bool = True                        # Progress bar and summary line on rank 0 (stderr).


@dataclass
class RunPlan:
    """A SampleConfig resolved against the preset and the disk: what every rank needs (picklable)."""

    preset: str
    run_dir: Path
    seeds: list[int]
    shard_size: int
    batch_size: int
    steps: int
    cfg_scale: float | None
    quantize: str
    precision: str
    compile: bool
    weights: tuple[str, object, str | None]     # ("random", seed, None) or ("file", path, name or path given)
    vae: str | None
    inception_weights: str | None               # path resolved on rank 0; None = no features
    inception_source: str | None = None         # what was given (None: env / cache), for ranks on other nodes
    manifest: dict = field(default_factory=dict)
    todo: list[int] = field(default_factory=list)  # shards missing when the run started (set by claim_run_dir)

    @property
    def num_shards(self) -> int:
        return shards.num_shards(len(self.seeds), self.shard_size)


# ----------------------------------------------------------------------------
# One batch: the sampler registry.


def _sample_ddpm(model, noise, labels, steps, cfg_scale, randn_like):
    """Latent models: ADM's ancestral DDPM on the respaced schedule, with the preset's guidance."""
    from diffit.guidance import guided_ddpm_sample

    return guided_ddpm_sample(model, noise, labels, cfg_scale, num_steps=steps, randn_like=randn_like)


def _sample_edm(model, noise, labels, steps, cfg_scale, randn_like):
    """Image-space models: EDM's deterministic Heun sampler (x_0 = noise * sigma_0 happens inside)."""
    from diffit.edm import EDMPrecond, edm_sampler

    return edm_sampler(EDMPrecond(model), noise, class_labels=labels, randn_like=randn_like, num_steps=steps)


# preset.sampler -> fn(model, noise, labels, steps, cfg_scale, randn_like) -> final state (latents or pixels).
SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": _sample_ddpm,
    "edm": _sample_edm,
}


def _preset(preset):
    from diffit.models import MODEL_PRESETS, resolve_preset

    return MODEL_PRESETS[resolve_preset(preset)] if isinstance(preset, str) else preset


def state_shape(preset) -> tuple[int, int, int]:
    """C, H, W of the sampler's state: SD latents for latent presets, RGB pixels otherwise."""
    p = _preset(preset)
    if p.kind == "latent":
        return (LATENT_CHANNELS, p.latent_size, p.latent_size)
    return (3, p.img_resolution, p.img_resolution)


@torch.no_grad()
def sample_batch(model: torch.nn.Module, preset, seeds: list[int], *, steps: int | None = None,
                 cfg_scale: float | None = None, vae=None, quantize: str = DEFAULT_QUANTIZE,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images for `seeds`, one per seed: (uint8 NHWC tensor, int64 labels or None if unconditional).

    `model` is the preset's network in eval mode (latent: with `forward_with_cfg`); `preset` a
    name or a ModelPreset; `vae` decodes latent presets. Sample i draws from generator seeds[i]
    only: its class first, then its initial noise, then the sampler's per-step noise.
    """
    from diffit.images import to_uint8
    from diffit.random import StackedRandomGenerator

    p = _preset(preset)
    if device is None:
        device = next(model.parameters()).device
    if cfg_scale is None and p.guidance is not None:
        cfg_scale = p.guidance.scale
    rnd = StackedRandomGenerator(device, seeds)
    n = len(seeds)
    labels = rnd.randint(p.num_classes, size=[n], device=device) if p.num_classes else None
    noise = rnd.randn([n, *state_shape(p)], device=device)
    x = SAMPLERS[p.sampler](model, noise, labels, steps or p.steps, cfg_scale, rnd.randn_like)
    if p.kind == "latent":
        from diffit.vae import decode_latents

        if vae is None:
            raise ValueError("a latent preset needs a VAE to decode its samples")
        x = decode_latents(vae, x)
    return to_uint8(x, quantize), labels


# ----------------------------------------------------------------------------
# The network as it is sampled: precision and compilation.


class PreparedModel(torch.nn.Module):
    """A preset's network in eval mode, its forward under bf16 autocast (`bf16`) and/or torch.compile.

    The output is returned in float32, so the samplers' arithmetic never runs in bf16. For latent
    models, `forward_with_cfg` is the model class's own guidance code run on this wrapper, so the
    guided forward passes go through the same autocast and compiled forward.
    """

    def __init__(self, net: torch.nn.Module, precision: str = "fp32", compile: bool = False) -> None:
        super().__init__()
        self.net = net
        self.call = torch.compile(net) if compile else net
        self.autocast = precision == "bf16"
        self.guidance = getattr(net, "guidance", None)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        if not self.autocast:
            return self.call(*args, **kwargs)
        device_type = next(self.net.parameters()).device.type
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = self.call(*args, **kwargs)
        return out.float()

    def forward_with_cfg(self, x, t, y, cfg_scale=None):
        return type(self.net).forward_with_cfg(self, x, t, y, cfg_scale)


@contextlib.contextmanager
def matmul_precision(precision: str):
    """fp32: no TF32 anywhere; tf32 (and bf16, outside autocast): TF32 matmuls and convolutions. Restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    allow = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def build_model(plan: RunPlan, device: torch.device | str) -> PreparedModel:
    """The preset's network with the plan's weights, on `device`, ready to sample."""
    from diffit.presets import create_model
    from diffit.testing import randomize_weights

    from diffit_eval.assets.checkpoints import load_released

    model = create_model(plan.preset)
    kind, arg, given = plan.weights
    if kind == "random":
        randomize_weights(model, seed=int(arg))
    else:
        # A rank on another node may not see rank 0's cache; it then resolves the name itself.
        load_released(model, arg if Path(arg).is_file() else given)
    model = model.to(device).eval().requires_grad_(False)
    return PreparedModel(model, plan.precision, compile=plan.compile)


# ----------------------------------------------------------------------------
# Planning (rank 0): resolve the configuration, check assets, lock and check the folder.


def _resolve_weights(preset: str, has_release: str | None, ckpt: str | None) -> tuple[tuple, str, dict]:
    """(weights for build_model, the compared checkpoint identity, the manifest's checkpoint record)."""
    from diffit_eval.assets.checkpoints import resolve_checkpoint
    from diffit_eval.cache import sha256_file

    if ckpt is None:
        if has_release:
            ckpt = has_release
        elif preset in TEST_PRESETS:
            text = "random weights (test preset) seed 0"
            return ("random", 0, None), text, {"source": text, "sha256": None}
        else:
            raise UserError(f"model {preset} has no released checkpoint; pass --ckpt PATH "
                            "(or --ckpt random[:SEED] for random weights)")
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

    from diffit_eval.cache import sha256_file

    path = Path(source).expanduser()
    if path.is_dir():
        weights = sorted(path.glob("diffusion_pytorch_model.*"))
        digest = sha256_file(weights[0]) if weights else None
        return (f"sha256:{digest}" if digest else str(path.resolve())), {"source": str(path), "sha256": digest}
    return source, {"source": source, "repo": vae_repo(source)}


def _resolve_inception(weights: str | None) -> str:
    from diffit_eval.features import resolve_inception_weights

    hint = "or pass --no-features to sample without on-the-fly features"
    try:
        return str(resolve_inception_weights(weights))
    except MissingAssetError as e:
        raise MissingAssetError(f"{e}; {hint}") from None
    except UserError as e:
        raise UserError(f"{e}; {hint}") from None


def keep_features(resolution: int, asked: bool | None) -> bool:
    """Whether shards keep their Inception features: as asked, else (auto) only where the float32
    rows (20,316 bytes an image) cost less than the images they describe, i.e. from 83x83 up:
    10% of the images at 256x256, but 6.6x them at 32x32, where `metrics RUN` re-extracting from
    the shard images costs one Inception pass (well under 1% of sampling's network calls)."""
    from diffit_eval.extract import ROW_BYTES

    return asked if asked is not None else ROW_BYTES < resolution * resolution * 3


def default_run_dir(preset: str, sampler: str, steps: int, cfg_scale: float | None, seeds: list[int],
                    extras: list[str] = ()) -> Path:
    """runs/latent-256-ddpm250-cfg4.4-seeds0-49999 (plus any non-default precision, rule, VAE, weights)."""
    parts = [preset, f"{sampler}{steps}"]
    if cfg_scale is not None:
        parts.append(f"cfg{cfg_scale:g}")
    parts.append("seeds" + shards.format_seeds(seeds).replace(",", "_"))
    parts += list(extras)
    name = "-".join(parts)
    if len(name) > 120:  # a long comma list of seeds
        name = name[:100] + f"-{len(seeds)}seeds"
    return shards.RUNS_ROOT / name


def _command(config: SampleConfig, plan_seeds: str, run_dir: Path, steps: int, cfg: float | None) -> str:
    import shlex

    args = ["diffit-eval", "sample", "--model", config.model]
    if config.ckpt is not None:
        args += ["--ckpt", config.ckpt]
    if config.vae is not None:
        args += ["--vae", config.vae]
    args += ["--steps", str(steps)]
    if cfg is not None:
        args += ["--cfg-scale", str(cfg)]
    args += ["--seeds", plan_seeds, "--shard-size", str(config.shard_size), "--precision", config.precision]
    if config.quantize is not None:
        args += ["--quantize", config.quantize]
    args += ["--out", str(run_dir)]
    return shlex.join(args)


def plan_run(config: SampleConfig) -> tuple[RunPlan, object | None]:
    """Resolve `config` (no folder is touched): the plan, and the VAE loaded while checking it (or None)."""
    from diffit.images import UINT8_RULES
    from diffit.models import MODEL_PRESETS, resolve_preset

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

    if config.seeds is not None:
        seeds = shards.parse_seeds(config.seeds)
        if config.num_samples is not None and config.num_samples != len(seeds) and config.verbose:
            print(f"diffit-eval: --seeds gives {len(seeds)} samples; --num-samples {config.num_samples} is ignored",
                  file=sys.stderr)
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
        from diffit_eval.assets.vae import load_vae

        loaded_vae = load_vae(vae)  # offline and not cached: MissingAssetError with --vae PATH
        vae_id, vae_record = _vae_identity(vae)
    inception = _resolve_inception(config.inception_weights) if keep_features(p.resolution, config.features) else None

    guidance = None
    if p.guidance is not None:
        guidance = {"scale": cfg, "ramp": p.guidance.ramp, "power": p.guidance.power,
                    "channels": p.guidance.channels}
    extras = [x for x, default in ((config.precision, DEFAULT_PRECISION), (quantize, DEFAULT_QUANTIZE)) if x != default]
    if config.vae is not None and vae_id != ("tiny" if name == "latent-tiny" else "ema"):
        extras.append(f"vae-{Path(config.vae).name}")
    if config.ckpt is not None and weights[0] == "random":
        extras.append(config.ckpt.replace(":", ""))
    run_dir = Path(config.out) if config.out is not None else default_run_dir(name, p.sampler, steps, cfg, seeds, extras)

    seeds_text = shards.format_seeds(seeds)
    # Only what changes the images is compared on resume: batch size, world size, device,
    # --features and --compile are deliberately absent.
    image_config = {
        "model": name, "resolution": p.resolution, "num_classes": p.num_classes, "checkpoint": ckpt_id,
        "sampler": p.sampler, "steps": steps, "guidance": guidance, "seeds": seeds_text,
        "shard_size": config.shard_size, "quantize": quantize, "vae": vae_id, "precision": config.precision,
    }
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
    plan = RunPlan(preset=name, run_dir=run_dir, seeds=seeds, shard_size=config.shard_size, batch_size=batch,
                   steps=steps, cfg_scale=cfg, quantize=quantize, precision=config.precision,
                   compile=config.compile, weights=weights, vae=vae, inception_weights=inception,
                   inception_source=config.inception_weights, manifest=manifest)
    return plan, loaded_vae


def claim_run_dir(plan: RunPlan) -> shards.RunLock:
    """Lock the folder, then check or write its manifest; returns the held lock (rank 0 only).

    A refusal (a folder that is not a run, another configuration, an unwritable path) leaves
    nothing behind: no lock file, no folder this call created.
    """
    run_dir = plan.run_dir
    where = f"the run folder {run_dir}"
    try:
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(f"--out {run_dir} is a file; pass a folder for the run")
        manifest_path = run_dir / shards.MANIFEST
        if run_dir.is_dir() and not manifest_path.is_file() and any(p.name != shards.LOCK for p in run_dir.iterdir()):
            raise UserError(f"{run_dir} exists and is not a sample run folder (no {shards.MANIFEST}); pass another --out")
        created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # removed again on a refusal
        lock_existed = (run_dir / shards.LOCK).exists()
        lock = shards.RunLock(run_dir).acquire()
    except OSError as e:
        raise UserError(f"cannot write {where} ({e.strerror or e}: {e.filename or run_dir}); pass another --out") from None
    try:
        if manifest_path.is_file():
            old = shards.read_manifest(run_dir)
            diff = shards.config_differences(old["config"], plan.manifest["config"])
            if diff:
                raise UserError(f"{run_dir} holds a run with another configuration ({'; '.join(diff)}); "
                                "pass another --out, or delete the folder to start over")
            plan.manifest = {**old, "versions": plan.manifest["versions"], "command": plan.manifest["command"]}
        shards.remove_stale_temporaries(run_dir)
        shards.write_manifest(run_dir, plan.manifest)
        (run_dir / shards.SHARD_DIR).mkdir(exist_ok=True)
        plan.todo = shards.missing_shards(run_dir, plan.manifest)
    except BaseException as e:
        lock.release()
        if not lock_existed:
            (run_dir / shards.LOCK).unlink(missing_ok=True)
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        if isinstance(e, OSError):
            raise UserError(f"cannot write {where} ({e.strerror or e}: {e.filename or run_dir}); "
                            "pass another --out") from None
        raise
    return lock


# ----------------------------------------------------------------------------
# The run.


def _progress(description: str, total: int, num_shards: int, done: int, enabled: bool):
    """A rich bar on stderr (rank 0): images, img/s, ETA and shards done; a no-op elsewhere."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from diffit_eval.progress import RateColumn, stderr_console

    bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   RateColumn(), TimeRemainingColumn(), TextColumn("shards {task.fields[shards]}"),
                   console=stderr_console, transient=True, disable=not (enabled and sys.stderr.isatty()))
    task = bar.add_task(description, total=total, shards=f"{done}/{num_shards}")
    return bar, task


def _shard_features(net, images: np.ndarray, path: Path) -> None:
    """The shard's float32 feature rows (20,316 bytes an image; see diffit_eval.extract), atomically."""
    from diffit_eval.extract import batch_features, save_feature_rows

    parts: dict[str, list[np.ndarray]] = {"pool": [], "spatial": [], "logits": []}
    for start in range(0, len(images), FEATURE_BATCH):
        f = batch_features(net, images[start:start + FEATURE_BATCH])
        for key in parts:
            parts[key].append(getattr(f, key).float().cpu().numpy())
    save_feature_rows(path, {key: np.concatenate(v) for key, v in parts.items()})


def _count_done(plan: RunPlan) -> int:
    return sum(shards.shard_path(plan.run_dir, k).is_file() for k in range(plan.num_shards))


def run_shards(plan: RunPlan, d: distributed.Dist, device: str, vae=None, verbose: bool = True) -> tuple[int, float]:
    """This rank's share of the shards: sample, write, extract features. Returns (images generated, seconds
    spent generating them, model and VAE set-up excluded)."""
    from diffit.models import MODEL_PRESETS

    preset = MODEL_PRESETS[plan.preset]
    # The missing shards are shared out, not all shards, so a resumed run stays balanced.
    todo = distributed.my_share(plan.todo, d)
    net = None
    if plan.inception_weights is not None:
        from diffit_eval.features import load_feature_network

        weights = plan.inception_weights
        if not Path(weights).is_file():  # another node: its own copy (same sha256 or the features are named apart)
            weights = _resolve_inception(plan.inception_source)
        net = load_feature_network(weights, device=device, resize=RESIZE)
        # Shards finished by an earlier run without these features get them now.
        missing = set(plan.todo)
        finished = [k for k in range(plan.num_shards) if k not in missing]
        for k in distributed.my_share(finished, d):
            feats = shards.features_path(plan.run_dir, k, net.weights_sha256, net.resize)
            if not feats.is_file():
                shard = shards.read_shard(shards.shard_path(plan.run_dir, k), shards.shard_seeds(plan.seeds, k, plan.shard_size))
                _shard_features(net, shard["images"], feats)
    if not todo:
        return 0, 0.0

    model = build_model(plan, device)
    if preset.kind == "latent" and vae is None:
        from diffit_eval.assets.vae import load_vae

        vae = load_vae(plan.vae, device=device)
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
            for start in range(0, len(seeds), plan.batch_size):
                batch = seeds[start:start + plan.batch_size]
                x, y = sample_batch(model, preset, batch, steps=plan.steps, cfg_scale=plan.cfg_scale, vae=vae,
                                    quantize=plan.quantize, device=device)
                images[start:start + len(batch)] = x.cpu().numpy()
                if labels is not None:
                    labels[start:start + len(batch)] = y.cpu().numpy()
                generated += len(batch)
                bar.advance(task, len(batch))
            shards.write_shard(shards.shard_path(plan.run_dir, k), images, labels, seeds)
            if net is not None:
                _shard_features(net, images, shards.features_path(plan.run_dir, k, net.weights_sha256, net.resize))
            del images, labels
            bar.update(task, shards=f"{_count_done(plan)}/{plan.num_shards}")
    return generated, time.time() - t0


def finish_run(plan: RunPlan, elapsed: float, generated: int, world_size: int, device: str) -> Path:
    """Rank 0, after every rank is done: the npz (streamed from the shards), grid.png, the manifest."""
    from diffit_eval.provenance import device_description, now_iso

    missing = shards.missing_shards(plan.run_dir, plan.manifest)
    if missing:  # a rank died without raising; say so rather than write a short npz
        raise UserError(f"{len(missing)} of {plan.num_shards} shards are missing after sampling; "
                        f"re-run the same command to resume: {plan.manifest['command']}")
    npz_name = shards.npz_name(len(plan.seeds), *plan.manifest["resolution"])
    if not (plan.run_dir / npz_name).is_file():
        shards.assemble_npz(plan.run_dir, plan.manifest)
    grid_labels = shards.write_grid(plan.run_dir, plan.manifest)
    features = None
    if plan.inception_weights is not None:
        from diffit_eval.cache import sha256_file
        from diffit_eval.features import FEATURE_NETWORK

        features = {"network": FEATURE_NETWORK, "weights": plan.inception_weights,
                    "sha256": sha256_file(plan.inception_weights), "resize": RESIZE,
                    "files": "shards/shard_NNNNN.features-<sha256[:16]>-<resize>.npz"}
    sessions = list(plan.manifest.get("sessions", []))
    sessions.append({"finished": now_iso(), "elapsed_s": round(elapsed, 3), "generated": generated,
                     "world_size": world_size, "batch_size": plan.batch_size, "device": device_description(device),
                     "compile": plan.compile})
    plan.manifest.update({"complete": True, "npz": npz_name, "grid": shards.GRID, "grid_labels": grid_labels,
                          "features": features or plan.manifest.get("features"), "updated": now_iso(),
                          "sessions": sessions})
    shards.write_manifest(plan.run_dir, plan.manifest)
    return plan.run_dir / npz_name


def _broadcast_plan(plan: RunPlan | None, error: tuple[str, int] | None, d: distributed.Dist) -> RunPlan:
    plan, error = distributed.broadcast_object((plan, error), d)
    if error is not None:
        message, code = error
        raise (MissingAssetError if code == 2 else UserError)(message, code)
    return plan


def _interrupted_message(plan: RunPlan | None) -> str:
    """What Ctrl-C leaves: the finished shards (kept, every one complete) and the command that resumes."""
    if plan is None:
        return "before sampling started; nothing was written"
    done = _count_done(plan)
    npz = shards.npz_name(len(plan.seeds), *plan.manifest["resolution"])
    if done == plan.num_shards and not (plan.run_dir / npz).is_file():
        kept = f"all {done} shards are finished and kept in {plan.run_dir}, {npz} is not written yet"
    else:
        kept = (f"{done} of {plan.num_shards} shards are finished and kept in {plan.run_dir} "
                "(the shard being sampled is dropped)")
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
        error = None
        if d.is_main:
            try:
                plan, vae = plan_run(config)
                lock = claim_run_dir(plan)
            except UserError as e:
                error = (str(e), e.code)
                if d.world_size == 1:
                    raise
            except Exception as e:  # tell the other ranks before failing, so none waits forever
                distributed.broadcast_object((None, (f"rank 0 failed: {type(e).__name__}: {e}", 1)), d)
                raise
        plan = _broadcast_plan(plan, error, d)
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
                print(f"diffit-eval: sampled {generated} images in {elapsed:.1f} s ({rate:.2f} img/s while sampling, "
                      f"{d.world_size} process{'es' if d.world_size > 1 else ''})"
                      + (f", {resumed} from earlier runs" if resumed else "")
                      + f"; {len(plan.seeds)} samples in {npz}", file=sys.stderr)
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
