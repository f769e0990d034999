"""Training options: EDM's defaults, the appendix's per-preset values, and their resolution.

DiffiT's appendix I.1: the image-space models "strictly followed the training configurations and
data augmentation strategies of EDM", unconditional, 200,000 iterations, Adam, batch 512 / 256 and
learning rate 1e-3 / 2e-4 (CIFAR-10 / FFHQ-64). What the appendix does not say comes from EDM's
`train.py` for the matching dataset (Karras et al. 2022, Table 7 / appendix F.1): EDM loss,
ln sigma ~ N(-1.2, 1.2^2), sigma_data 0.5, Adam betas (0.9, 0.999) and eps 1e-8, learning-rate
ramp-up over 10 Mimg, EMA half-life 0.5 Mimg with ramp-up ratio 0.05, dropout 0.13 / 0.05 and
augmentation probability 0.12 / 0.15. `resolve` turns a :class:`TrainConfig` into the plain
dictionary that a run folder records and compares; every value can be overridden.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from diffit_eval.errors import UserError

FORMAT = "diffit-eval-train/1"

# EDM train.py's defaults, used for any image preset without its own entry below.
EDM_DEFAULTS: dict = dict(
    batch=512,  # Total batch size per iteration (all processes, all accumulation rounds).
    lr=1e-3,  # Adam learning rate after the ramp-up.
    iterations=200_000,  # Training length in optimizer steps (the appendix's 200K).
    lr_rampup_kimg=10_000,  # Linear learning-rate ramp-up over this many thousand images.
    ema_halflife_kimg=500,  # EMA half-life in thousand images.
    ema_rampup_ratio=0.05,  # The half-life is at most this ratio of the images seen so far; None = off.
    dropout=0.13,  # Dropout probability in the network's ResBlocks.
    label_dropout=0.0,  # Class-conditional presets: probability of training a sample unconditionally (CFG).
    augment=0.12,  # Augmentation probability p of EDM's AugmentPipe; 0 = no pipe.
    P_mean=-1.2,  # Mean of ln(sigma) in the loss.
    P_std=1.2,  # Standard deviation of ln(sigma) in the loss.
    sigma_data=0.5,  # Expected standard deviation of the training data.
    adam_betas=(0.9, 0.999),
    adam_eps=1e-8,
    loss_scaling=1.0,  # EDM's loss scaling factor.
    seed=0,
    precision="fp32",  # fp32 (EDM: TF32 off), tf32, or bf16 autocast of the forward.
    tick_kimg=50.0,  # Progress line and stats.jsonl entry every this many thousand images.
    snapshot_ticks=50,  # network-snapshot-KIMG.safetensors every this many ticks.
    state_ticks=100,  # training-state-KIMG.pt every this many ticks (EDM: 500; more often for resume).
)

# Appendix I.1 plus EDM's settings for the same dataset.
TRAIN_PRESETS: dict[str, dict] = {
    "cifar10": dict(batch=512, lr=1e-3, dropout=0.13, augment=0.12),
    "ffhq64": dict(batch=256, lr=2e-4, dropout=0.05, augment=0.15),
    # Tests and demos: the same recipe, sized for a CPU.
    "cifar10-tiny": dict(
        batch=64,
        lr=1e-3,
        iterations=2_000,
        lr_rampup_kimg=10,
        ema_halflife_kimg=5,
        dropout=0.0,
        tick_kimg=1.0,
        snapshot_ticks=10,
        state_ticks=10,
    ),
    # The shipped demo model (docs/DEMO.md): a CPU-sized run on sklearn-digits. No augmentation (EDM's pipe
    # mirrors and rotates, which turns digits into other digits), short ramp-up and EMA for a short run.
    "digits": dict(
        batch=64,
        lr=2e-3,
        iterations=1_000,
        lr_rampup_kimg=2,
        ema_halflife_kimg=4,
        dropout=0.0,
        augment=0.0,
        tick_kimg=2.0,
        snapshot_ticks=2,
        state_ticks=5,
    ),
}
# The class-conditional demo model (docs/DEMO.md, "The conditional model"): the digits recipe plus DiT's
# label dropout of 0.1 (one network is both models guidance needs), 4x the iterations, a 10-kimg EMA.
TRAIN_PRESETS["digits-cond"] = {
    **TRAIN_PRESETS["digits"],
    **dict(iterations=4_000, ema_halflife_kimg=10, label_dropout=0.1, snapshot_ticks=8, state_ticks=8),
}

PRECISIONS = ("fp32", "tf32", "bf16")

# Values that change the weights a run produces: a folder holding a run with other values is refused.
# Length (iterations), intervals, batch_gpu, compile, device and metrics options may change on resume.
COMPARED = (
    "preset",
    "data",
    "num_images",
    "resolution",
    "batch",
    "lr",
    "lr_rampup_kimg",
    "ema_halflife_kimg",
    "ema_rampup_ratio",
    "dropout",
    "label_dropout",
    "augment",
    "transfer",
    "P_mean",
    "P_std",
    "sigma_data",
    "adam_betas",
    "adam_eps",
    "loss_scaling",
    "seed",
    "precision",
    "model",
)


@dataclass
class TrainConfig:
    """Everything `diffit-eval train` takes; None means the preset's (the paper's / EDM's) value."""

    preset: str | None = None  # Image-space model preset (diffit.models.MODEL_PRESETS).
    data: str | None = None  # Dataset: EDM zip/folder, ADM npz, or a built-in name.
    out: str | None = None  # Run folder (default runs/train-<preset>).
    resume: str | None = None  # Run folder to continue from its latest training state.
    batch: int | None = None
    batch_gpu: int | None = None  # Images per forward on each process (gradient accumulation).
    lr: float | None = None
    iterations: int | None = None
    lr_rampup_kimg: float | None = None
    ema_halflife_kimg: float | None = None
    ema_rampup_ratio: float | None = None
    dropout: float | None = None
    label_dropout: float | None = None
    augment: float | None = None
    P_mean: float | None = None
    P_std: float | None = None
    sigma_data: float | None = None
    adam_betas: tuple[float, float] | None = None
    adam_eps: float | None = None
    loss_scaling: float | None = None
    seed: int | None = None
    precision: str | None = None
    channels: tuple[int, ...] | None = None  # Architecture override (EDM's --cres): channels per stage.
    blocks: tuple[int, ...] | None = None  # Architecture override: ResBlocks per stage.
    tick_kimg: float | None = None
    snapshot_ticks: int | None = None
    state_ticks: int | None = None
    transfer: str | None = None  # Initial weights from a snapshot (EDM's --transfer): a path or shipped name.
    compile: bool = False
    metrics_kimg: float | None = None  # FID every this many thousand images (None = never).
    metrics_num: int = 1_000  # Samples per FID measurement.
    ref: str | None = None  # Reference for the FID (name, statistics npz or images).
    inception_weights: str | None = None  # Local InceptionV3 (or stand-in) weights for the FID.
    device: str | None = None
    dry_run: bool = False
    verbose: bool = True

    def given(self) -> dict:
        """The options set by the user (not None), as recorded in the manifest for --resume."""
        skip = {"resume", "dry_run", "verbose", "out"}
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) not in (None, False)
        }


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(message)


def resolve(config: TrainConfig) -> dict:
    """The complete training configuration: the preset's defaults overridden by the given options.

    Raises UserError (one line naming the option) for a bad preset or value; touches no file.
    """
    from diffit.models import MODEL_PRESETS, resolve_preset

    _check(config.preset is not None, "--preset is required (e.g. cifar10, ffhq64, cifar10-tiny)")
    try:
        name = resolve_preset(config.preset)
    except ValueError as e:
        raise UserError(str(e)) from None
    p = MODEL_PRESETS[name]
    _check(
        p.kind == "image",
        f"--preset {name} is a latent model; `train` trains the image-space presets "
        f"({', '.join(n for n, q in MODEL_PRESETS.items() if q.kind == 'image')})",
    )

    c = {**EDM_DEFAULTS, **TRAIN_PRESETS.get(name, {})}
    for key in EDM_DEFAULTS:
        value = getattr(config, key)
        if value is not None:
            c[key] = value
    c["adam_betas"] = tuple(float(b) for b in c["adam_betas"])

    positive_ints = ("batch", "iterations", "snapshot_ticks", "state_ticks")
    for key in positive_ints:
        _check(
            isinstance(c[key], int) and c[key] >= 1,
            f"--{key.replace('_', '-')} must be a positive integer, got {c[key]!r}",
        )
    for key in ("lr", "tick_kimg", "sigma_data", "P_std", "adam_eps", "loss_scaling"):
        _check(math.isfinite(c[key]) and c[key] > 0, f"--{key.replace('_', '-')} must be positive, got {c[key]!r}")
    for key in ("lr_rampup_kimg", "ema_halflife_kimg"):
        _check(math.isfinite(c[key]) and c[key] >= 0, f"--{key.replace('_', '-')} must be >= 0, got {c[key]!r}")
    _check(
        c["ema_rampup_ratio"] is None or (math.isfinite(c["ema_rampup_ratio"]) and c["ema_rampup_ratio"] > 0),
        f"--ema-rampup-ratio must be positive, got {c['ema_rampup_ratio']!r}",
    )
    _check(0 <= c["dropout"] < 1, f"--dropout must be in [0, 1), got {c['dropout']!r}")
    _check(0 <= c["label_dropout"] < 1, f"--label-dropout must be in [0, 1), got {c['label_dropout']!r}")
    _check(
        c["label_dropout"] == 0 or p.num_classes > 0,
        f"--label-dropout applies to class-conditional presets; {name} is unconditional",
    )
    _check(0 <= c["augment"] <= 1, f"--augment must be in [0, 1], got {c['augment']!r}")
    _check(math.isfinite(c["P_mean"]), f"--P-mean must be finite, got {c['P_mean']!r}")
    _check(all(0 <= b < 1 for b in c["adam_betas"]), f"Adam betas must be in [0, 1), got {c['adam_betas']}")
    _check(c["precision"] in PRECISIONS, f"unknown --precision {c['precision']!r}; choose from {', '.join(PRECISIONS)}")
    _check(isinstance(c["seed"], int) and c["seed"] >= 0, f"--seed must be a non-negative integer, got {c['seed']!r}")
    if config.batch_gpu is not None:
        _check(config.batch_gpu >= 1, f"--batch-gpu must be a positive integer, got {config.batch_gpu}")
    if config.metrics_kimg is not None:
        _check(
            math.isfinite(config.metrics_kimg) and config.metrics_kimg > 0,
            f"--metrics-kimg must be positive, got {config.metrics_kimg}",
        )
        _check(config.ref is not None, "--metrics-kimg needs --ref (a reference name, statistics npz or images)")
        _check(config.metrics_num >= 2, f"--metrics-num must be at least 2, got {config.metrics_num}")
    model = {}
    for key in ("channels", "blocks"):
        value = getattr(config, key)
        if value is not None:
            value = tuple(int(v) for v in value)
            _check(len(value) > 0 and all(v >= 1 for v in value), f"--{key} must be positive integers, got {value}")
            model[key] = list(value)
    if model:
        import torch

        from diffit.models import create_model

        try:
            with torch.device("meta"):
                create_model(name, **{k: tuple(v) for k, v in model.items()})
        except ValueError as e:
            raise UserError(f"--channels/--blocks: {e}") from None
    c["model"] = model  # empty: the preset's architecture, which `diffit-eval sample --model` builds
    c["preset"] = name
    c["num_classes"] = p.num_classes
    c["transfer"] = _transfer_source(config.transfer)
    c["resolution"] = p.img_resolution
    c["sampler"], c["steps"] = p.sampler, p.steps
    c["augment_dim"] = 9 if c["augment"] > 0 else 0
    c["total_kimg"] = c["iterations"] * c["batch"] / 1000
    return c


def _transfer_source(transfer: str | None) -> dict | None:
    """`--transfer`: the snapshot file and its sha256 (both recorded: they decide the weights)."""
    if transfer is None:
        return None
    from diffit.checkpoint import local_checkpoint
    from diffit.errors import CheckpointNotFoundError

    from diffit_eval.assets.cache import sha256_file

    try:
        path = local_checkpoint(transfer)
    except CheckpointNotFoundError as e:
        raise UserError(f"--transfer {transfer}: {e}") from None
    return {"name": transfer, "path": str(path.resolve()), "sha256": sha256_file(path)}


def split_batch(batch: int, batch_gpu: int | None, world_size: int) -> tuple[int, int, int]:
    """(images per process per step, images per forward, accumulation rounds), as EDM's training loop."""
    _check(batch % world_size == 0, f"--batch {batch} is not divisible by the {world_size} processes")
    batch_gpu_total = batch // world_size
    if batch_gpu is None or batch_gpu > batch_gpu_total:
        batch_gpu = batch_gpu_total
    _check(
        batch_gpu_total % batch_gpu == 0,
        f"--batch-gpu {batch_gpu} does not divide the {batch_gpu_total} "
        f"images per process (--batch {batch} over {world_size} processes)",
    )
    return batch_gpu_total, batch_gpu, batch_gpu_total // batch_gpu


def as_dict(config: TrainConfig) -> dict:
    return asdict(config)
