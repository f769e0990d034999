"""`diffit-eval sample`: the sharded, resumable 50K-sample generator (a thin layer over diffit_eval.generate.sample)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

# One line per paragraph: the help formatter wraps to the terminal, hard breaks would stay.
HELP = """Generate samples with a model preset under the paper's protocol, into a resumable run folder.

Defaults follow the preset: 50,000 samples with seeds 0-49999, the preset's sampler, steps and guidance, the released checkpoint and sd-vae-ft-ema for latent models, the release's truncating uint8 rule. Shards are written atomically; running the same command again resumes. Under torchrun or srun every rank takes its share of the shards. The run folder ends with samples_NxHxWx3.npz (ADM layout), grid.png and, from 83x83 up, per-shard Inception features for `diffit-eval metrics RUN`.
"""


def register(app: typer.Typer) -> None:
    @app.command("sample", help=HELP)
    def sample(
        model: str = typer.Option(
            ...,
            "--model",
            "-m",
            help="Preset (see `diffit-eval models`): latent-256 (alias latent), latent-512, cifar10, ffhq64, digits, digits-cond; tests: latent-tiny, cifar10-tiny.",
        ),
        ckpt: Optional[str] = typer.Option(
            None,
            "--ckpt",
            help="Checkpoint name (diffit-256, diffit-512) or path; `random` or `random:SEED` for random weights. Default: the preset's released checkpoint (test presets: random weights, seed 0).",
        ),
        vae: Optional[str] = typer.Option(
            None,
            "--vae",
            help="Latent decoder: ema, mse, tiny (test) or a local diffusers folder. Default: ema (latent-tiny: tiny).",
        ),
        steps: Optional[int] = typer.Option(
            None, "--steps", help="Sampler steps (default: the preset's, DDPM 250 / EDM 18 or 40)."
        ),
        cfg_scale: Optional[float] = typer.Option(
            None,
            "--cfg-scale",
            help="Guidance scale s (default: the preset's, 4.4 ramped at 256, 1.49 at 512, 1 for digits-cond; 1 = unguided).",
        ),
        class_labels: Optional[str] = typer.Option(
            None,
            "--class-labels",
            help="Fixed classes instead of one drawn per seed, dealt to the seeds in turn: 3, 0-9 or 1,7 (conditional models).",
        ),
        num_samples: Optional[int] = typer.Option(
            None, "--num-samples", help="Number of samples, seeds 0..N-1 (default 50000)."
        ),
        seeds: Optional[str] = typer.Option(
            None, "--seeds", help="Seed list, e.g. 0-49999 or 0-9,20-29 (overrides --num-samples)."
        ),
        batch_size: Optional[int] = typer.Option(
            None,
            "--batch-size",
            help="Samples per forward on each GPU (default 16 latent, 64 image); not part of the run's configuration.",
        ),
        shard_size: int = typer.Option(1000, "--shard-size", help="Samples per shard file."),
        out: Optional[Path] = typer.Option(
            None, "--out", help="Run folder (default: runs/<model>-<sampler><steps>-cfg<s>-seeds<a-b>)."
        ),
        precision: str = typer.Option(
            "tf32",
            "--precision",
            help="fp32 (no TF32), tf32 (the release's: fp32 with TF32 matmuls) or bf16 (autocast of the model forward).",
        ),
        quantize: Optional[str] = typer.Option(
            None, "--quantize", help="uint8 rule: truncate (the DiffiT release, default) or round (DiT)."
        ),
        compile_: bool = typer.Option(
            False, "--compile", help="torch.compile the model (does not change the configuration)."
        ),
        features: Optional[str] = typer.Option(
            None,
            "--features",
            help="Feature rows kept per shard for `diffit-eval metrics RUN`: auto (default: Inception from 83x83 up, where its float32 rows, 20 KB an image, cost less than the images), none, or a comma list of inception, dinov2 (FD_DINOv2's 1024-d rows).",
        ),
        no_features: bool = typer.Option(
            False, "--no-features", help="Keep no feature rows (same as --features none)."
        ),
        dinov2_weights: Optional[str] = typer.Option(
            None,
            "--dinov2-weights",
            help="Local DINOv2 ViT-L/14 weights for --features dinov2; env DIFFIT_EVAL_DINOV2_WEIGHTS.",
        ),
        inception_weights: Optional[str] = typer.Option(
            None,
            "--inception-weights",
            help="Local InceptionV3 weights for the features; env DIFFIT_EVAL_INCEPTION_WEIGHTS.",
        ),
        device: Optional[str] = typer.Option(
            None, "--device", help="cuda, cpu ... (default: each rank's GPU, else the CPU)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    ) -> None:
        from diffit_eval.generate.execute import generate
        from diffit_eval.generate.sample import SampleConfig, parse_features

        keep_inception, keep_dinov2 = parse_features(features, no_features)
        generate(
            SampleConfig(
                model=model,
                ckpt=ckpt,
                vae=vae,
                steps=steps,
                cfg_scale=cfg_scale,
                class_labels=class_labels,
                num_samples=num_samples,
                seeds=seeds,
                batch_size=batch_size,
                shard_size=shard_size,
                out=out,
                precision=precision,
                quantize=quantize,
                compile=compile_,
                features=keep_inception,
                inception_weights=inception_weights,
                dinov2_features=keep_dinov2,
                dinov2_weights=dinov2_weights,
                device=device,
                verbose=not quiet,
            )
        )
