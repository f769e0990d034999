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
:mod:`diffit_eval.generate.shards` for the folder layout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch

from diffit_eval.errors import UserError
from diffit_eval.generate import shards
from diffit_eval.protocol import DEFAULT_RESIZE

TEST_PRESETS = ("latent-tiny", "cifar10-tiny")  # no checkpoint: seeded random weights by default
PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "tf32"  # the release: fp32 weights, TF32 matmuls (DiT's sample_ddp.py)
DEFAULT_BATCH = {"latent": 16, "image": 64}  # per GPU
DEFAULT_NUM_SAMPLES = 50_000
DEFAULT_SHARD_SIZE = 1_000
DEFAULT_QUANTIZE = "truncate"  # the DiffiT release's uint8 rule (docs/PROTOCOL.md, "Pixels")
FEATURE_BATCH = 64  # images per Inception forward for the on-the-fly features
RESIZE = DEFAULT_RESIZE  # the published protocol's resize (docs/PROTOCOL.md)
LATENT_CHANNELS = 4  # SD VAE latents
# How long a rank may wait for the others (rank 0 downloading the checkpoint, a rank finishing one
# more shard than the rest, rank 0 writing the npz); torch's NCCL default of 10 minutes is too short.
COLLECTIVE_TIMEOUT = timedelta(hours=12)


@dataclass
class SampleConfig:
    """Everything `diffit-eval sample` takes; None means the preset's (the paper's) choice."""

    model: str  # Preset name or alias (diffit.models.MODEL_PRESETS).
    ckpt: str | None = None  # Checkpoint name or path, "random" or "random:SEED".
    vae: str | None = None  # ema | mse | tiny | PATH (latent models only).
    steps: int | None = None  # Sampler steps (DDPM respaced steps, EDM N).
    cfg_scale: float | None = None  # Guidance scale s (guided presets only); 1 = unguided.
    class_labels: str | None = None  # Fixed classes, e.g. "3" or "0-9", dealt to the seeds in turn; None = drawn.
    num_samples: int | None = None  # Samples with seeds 0..N-1 (default 50,000).
    seeds: str | None = None  # "0-49999", "0-9,20-29"; overrides num_samples.
    batch_size: int | None = None  # Samples per forward on each device.
    shard_size: int = DEFAULT_SHARD_SIZE  # Samples per shard file.
    out: str | Path | None = None  # Run folder (default runs/<model>-<sampler><steps>-...).
    precision: str = DEFAULT_PRECISION  # fp32 | tf32 | bf16 (autocast of the model forward).
    quantize: str | None = None  # uint8 rule: truncate | round.
    compile: bool = False  # torch.compile the model.
    features: bool | None = None  # Inception features per shard, for `metrics`; None: auto.
    inception_weights: str | None = None  # Local Inception weights for the features.
    dinov2_features: bool = False  # DINOv2 rows per shard too, for `metrics --metrics fd_dinov2`.
    dinov2_weights: str | None = None  # Local DINOv2 weights for them.
    device: str | None = None  # Default: this rank's GPU, else the CPU.
    verbose: bool = True  # Progress bar and summary line on rank 0 (stderr).

    def cli_args(self) -> list[str]:
        """The `diffit-eval sample` arguments that ask for this configuration's images (built here
        once, for the manifest's resume command and for `regress`). Fields left None keep the
        preset's choice; how the images are computed (batch, device, compile, features) is not
        part of what they are, so it is not repeated."""
        flags = [
            ("--model", self.model),
            ("--ckpt", self.ckpt),
            ("--vae", self.vae),
            ("--steps", self.steps),
            ("--cfg-scale", self.cfg_scale),
            ("--class-labels", self.class_labels),
            ("--num-samples", self.num_samples),
            ("--seeds", self.seeds),
            ("--shard-size", self.shard_size),
            ("--precision", self.precision),
            ("--quantize", self.quantize),
            ("--out", self.out),
        ]
        return ["sample", *(a for flag, value in flags if value is not None for a in (flag, str(value)))]


SHARD_FEATURE_NETWORKS = ("inception", "dinov2")  # what `sample --features` may keep per shard


def parse_features(text: str | None, none: bool = False) -> tuple[bool | None, bool]:
    """`--features LIST` / `--no-features` -> (Inception rows: True/False/None = auto, DINOv2 rows).

    LIST is `auto` (Inception rows from 83x83 up, no DINOv2), `none`, or a comma list of
    SHARD_FEATURE_NETWORKS: `inception`, `dinov2`, `inception,dinov2`.
    """
    if none:
        if text is not None:
            raise UserError(f"--features {text} and --no-features contradict each other; pass one")
        return False, False
    if text is None or text.strip() == "auto":
        return None, False
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return False, False
    unknown = [n for n in names if n not in SHARD_FEATURE_NETWORKS]
    if unknown or not names:
        raise UserError(
            f"--features {text!r}: choose auto, none or a comma list of {', '.join(SHARD_FEATURE_NETWORKS)}"
        )
    return "inception" in names, "dinov2" in names


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
    weights: tuple[str, object, str | None]  # ("random", seed, None) or ("file", path, name or path given)
    vae: str | None
    inception_weights: str | None  # path resolved on rank 0; None = no features
    inception_source: str | None = None  # what was given (None: env / cache), for ranks on other nodes
    dinov2_weights: str | None = None  # DINOv2 weights resolved on rank 0; None = no DINOv2 rows
    dinov2_source: str | None = None
    class_labels: list[int] | None = None  # fixed classes dealt to seed positions in turn; None = drawn
    manifest: dict = field(default_factory=dict)
    todo: list[int] = field(default_factory=list)  # shards missing when the run started (set by claim_run_dir)

    @property
    def num_shards(self) -> int:
        return shards.num_shards(len(self.seeds), self.shard_size)

    def labels_at(self, positions: range) -> list[int] | None:
        """The fixed classes of the samples at these positions of the seed list (None: drawn per seed)."""
        if self.class_labels is None:
            return None
        return [self.class_labels[i % len(self.class_labels)] for i in positions]


def parse_class_labels(text: str, num_classes: int, model: str) -> list[int]:
    """`--class-labels 3` or `0-9` or `1,7`: classes dealt to the seeds in turn (seed list order)."""
    if not num_classes:
        raise UserError(f"--class-labels does not apply: model {model} is unconditional")
    labels = []
    for part in str(text).replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise UserError(f"bad --class-labels {text!r}: expected classes like 3, 0-9 or 1,7") from None
        if not 0 <= a <= b < num_classes:
            raise UserError(f"bad --class-labels {text!r}: classes of model {model} are 0 to {num_classes - 1}")
        labels += range(a, b + 1)
    return labels


# ----------------------------------------------------------------------------
# One batch: the sampler registry.


def _sample_ddpm(model, noise, labels, steps, cfg_scale, randn_like):
    """Latent models: ADM's ancestral DDPM on the respaced schedule, with the preset's guidance."""
    from diffit.guidance import guided_ddpm_sample

    return guided_ddpm_sample(model, noise, labels, cfg_scale, num_steps=steps, randn_like=randn_like)


def _sample_edm(model, noise, labels, steps, cfg_scale, randn_like):
    """Image-space models: EDM's deterministic Heun sampler (x_0 = noise * sigma_0 happens inside)."""
    from diffit.edm import EDMPrecond, edm_sampler
    from diffit.guidance import GuidedDenoiser, one_hot

    denoiser = EDMPrecond(model)
    if labels is not None:
        labels = one_hot(labels, model.label_dim).to(noise.device)  # EDM's class_labels: one-hot rows
        if cfg_scale is not None:
            denoiser = GuidedDenoiser(denoiser, cfg_scale)  # s = 1: the plain conditional denoiser
    return edm_sampler(denoiser, noise, class_labels=labels, randn_like=randn_like, num_steps=steps)


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
    return (p.image_channels, p.img_resolution, p.img_resolution)


@torch.no_grad()
def sample_batch(
    model: torch.nn.Module,
    preset,
    seeds: list[int],
    *,
    steps: int | None = None,
    cfg_scale: float | None = None,
    vae=None,
    quantize: str = DEFAULT_QUANTIZE,
    device: torch.device | str | None = None,
    class_labels: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images for `seeds`, one per seed: (uint8 NHWC tensor, int64 labels or None if unconditional).

    `model` is the preset's network in eval mode (latent: with `forward_with_cfg`); `preset` a
    name or a ModelPreset; `vae` decodes latent presets. Sample i draws from generator seeds[i]
    only: its class first, then its initial noise, then the sampler's per-step noise. Fixed
    `class_labels` (one per seed) replace the drawn classes; the draw is still made, so a seed's
    noise is the same whichever class it is asked for.
    """
    from diffit.quantize import to_uint8
    from diffit.random import StackedRandomGenerator

    p = _preset(preset)
    if device is None:
        device = next(model.parameters()).device
    if cfg_scale is None and p.guidance is not None:
        cfg_scale = p.guidance.scale
    rnd = StackedRandomGenerator(device, seeds)
    n = len(seeds)
    labels = rnd.randint(p.num_classes, size=[n], device=device) if p.num_classes else None
    if class_labels is not None:
        labels = torch.as_tensor(class_labels, dtype=torch.int64, device=device)
    noise = rnd.randn([n, *state_shape(p)], device=device)
    x = SAMPLERS[p.sampler](model, noise, labels, steps or p.steps, cfg_scale, rnd.randn_like)
    if p.kind == "latent":
        from diffit.vae import decode_latents

        if vae is None:
            raise ValueError("a latent preset needs a VAE to decode its samples")
        x = decode_latents(vae, x)
    elif x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # a grey model's images, shown as its data was: grey copied into RGB
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
        self.label_dim = getattr(net, "label_dim", 0)

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

    from diffit_eval.assets.checkpoints import load_released
    from diffit_eval.standins import randomize_weights

    model = create_model(plan.preset)
    kind, arg, given = plan.weights
    if kind == "random":
        randomize_weights(model, seed=int(arg))
    else:
        # A rank on another node may not see rank 0's cache; it then resolves the name itself.
        load_released(model, arg if Path(arg).is_file() else given)
    model = model.to(device).eval().requires_grad_(False)
    return PreparedModel(model, plan.precision, compile=plan.compile)
