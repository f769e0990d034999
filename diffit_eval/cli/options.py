"""The options several commands take, defined once: one flag, one meaning, one help text.

A command writes `device: Optional[str] = options.device()`; each function returns a fresh
`typer.Option` (Typer reads it as the parameter's default). :data:`SHARED` maps every flag defined
here to its help text, so that `tests/test_console.py` can check that each command that takes the
flag says the same thing. An option that means something else in one command (`--quiet` of
`sweep` also hides the table, `--batch-size` of `sample` is a sampler batch) is written in that
command, under its own help.
"""

from __future__ import annotations

import typer

from diffit_eval.protocol import (
    DEFAULT_METRIC_GROUPS,
    DEFAULT_NETWORK,
    DEFAULT_RESIZE,
    METRIC_GROUPS,
    RESIZE_MODES,
)

# --- help texts (a comma list is written with spaces, so the help formatter can wrap it) ----------

DEVICE_HELP = "cuda, cuda:1, cpu ... (default: CUDA when present, else the CPU)."
INCEPTION_WEIGHTS_HELP = (
    "Local InceptionV3 weights (torch-fidelity's pt_inception-2015-12-05 file); env DIFFIT_EVAL_INCEPTION_WEIGHTS."
)
DINOV2_WEIGHTS_HELP = (
    "Local DINOv2 ViT-L/14 weights (Meta's dinov2_vitl14_pretrain.pth); env DIFFIT_EVAL_DINOV2_WEIGHTS."
)
FEATURE_BATCH_HELP = (
    "Images per feature-network forward (default 64 on CUDA, 8 on CPU, where InceptionV3 runs them 4 at a time, "
    "so features never depend on it); a built reference file depends on it (its float64 sums' order)."
)
NETWORK_HELP = (
    "Feature network: inception (the protocol's InceptionV3) or digits (the demo's digit classifier, "
    "docs/DEMO.md; not comparable with any paper)."
)
RESIZE_HELP = f"{' or '.join(RESIZE_MODES)}: legacy-tf is the published protocol, clean is clean-fid's PIL bicubic."
METRICS_HELP = (
    f"Comma list of {', '.join(METRIC_GROUPS)} "
    f"(default: {','.join(DEFAULT_METRIC_GROUPS)}, those the reference supports)."
)
NO_DOWNLOAD_HELP = "Never download; fail if a file it needs is not in the cache."
MODEL_HELP = (
    "Preset (see `diffit-eval models`): latent-256 (alias latent), latent-512, cifar10, ffhq64, digits, "
    "digits-cond; tests: latent-tiny, cifar10-tiny."
)
CKPT_HELP = (
    "Checkpoint name (diffit-256, diffit-512) or path; `random` or `random:SEED` for random weights. "
    "Default: the preset's released checkpoint (test presets: random weights, seed 0)."
)
VAE_HELP = "Latent decoder: ema, mse, tiny (test) or a local diffusers folder. Default: ema (latent-tiny: tiny)."
STEPS_HELP = "Sampler steps (default: the preset's, DDPM 250 / EDM 18 or 40)."
CFG_SCALE_HELP = (
    "Guidance scale s (default: the preset's, 4.4 ramped at 256, 1.49 at 512, 1 for digits-cond; 1 = unguided)."
)
CLASS_LABELS_HELP = (
    "Fixed classes instead of one drawn per seed, dealt to the seeds in turn: 3, 0-9 or 1,7 (conditional models)."
)
NUM_SAMPLES_HELP = "Number of samples, seeds 0..N-1 (default 50000)."
SEEDS_HELP = "Seed list, e.g. 0-49999 or 0-9,20-29 (overrides --num-samples)."
SAMPLE_PRECISION_HELP = (
    "fp32 (no TF32), tf32 (the release's: fp32 with TF32 matmuls) or bf16 (autocast of the model forward)."
)
SAMPLE_BATCH_HELP = (
    "Samples per sampler forward on each GPU (default 16 latent, 64 image); not part of the run's configuration."
)

# flag -> its one help text (tests/test_console.py holds every command to it)
SHARED = {
    "--device": DEVICE_HELP,
    "--inception-weights": INCEPTION_WEIGHTS_HELP,
    "--dinov2-weights": DINOV2_WEIGHTS_HELP,
    "--network": NETWORK_HELP,
    "--resize": RESIZE_HELP,
    "--metrics": METRICS_HELP,
    "--no-download": NO_DOWNLOAD_HELP,
    "--model": MODEL_HELP,
    "--vae": VAE_HELP,
    "--steps": STEPS_HELP,
    "--cfg-scale": CFG_SCALE_HELP,
    "--class-labels": CLASS_LABELS_HELP,
    "--seeds": SEEDS_HELP,
}


# --- the options ------------------------------------------------------------------------------


def device():
    return typer.Option(None, "--device", help=DEVICE_HELP)


def inception_weights():
    return typer.Option(None, "--inception-weights", metavar="PATH", help=INCEPTION_WEIGHTS_HELP)


def dinov2_weights():
    return typer.Option(None, "--dinov2-weights", metavar="PATH", help=DINOV2_WEIGHTS_HELP)


def feature_batch_size():
    """--batch-size of the commands that run a feature network (metrics, ref build)."""
    return typer.Option(None, "--batch-size", min=1, help=FEATURE_BATCH_HELP)


def sample_batch_size():
    """--batch-size of the commands that sample (sample, sweep)."""
    return typer.Option(None, "--batch-size", help=SAMPLE_BATCH_HELP)


def network():
    return typer.Option(DEFAULT_NETWORK, "--network", help=NETWORK_HELP)


def resize():
    return typer.Option(DEFAULT_RESIZE, "--resize", help=RESIZE_HELP)


def metrics():
    return typer.Option(None, "--metrics", metavar="LIST", help=METRICS_HELP)


def no_download():
    return typer.Option(False, "--no-download", help=NO_DOWNLOAD_HELP)


def model():
    return typer.Option(..., "--model", "-m", help=MODEL_HELP)


def ckpt():
    return typer.Option(None, "--ckpt", help=CKPT_HELP)


def vae():
    return typer.Option(None, "--vae", help=VAE_HELP)


def steps():
    return typer.Option(None, "--steps", help=STEPS_HELP)


def cfg_scale():
    return typer.Option(None, "--cfg-scale", help=CFG_SCALE_HELP)


def class_labels():
    return typer.Option(None, "--class-labels", help=CLASS_LABELS_HELP)


def num_samples():
    return typer.Option(None, "--num-samples", help=NUM_SAMPLES_HELP)


def seeds():
    return typer.Option(None, "--seeds", help=SEEDS_HELP)


def sample_precision():
    return typer.Option("tf32", "--precision", help=SAMPLE_PRECISION_HELP)
