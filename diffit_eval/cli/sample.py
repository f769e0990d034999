"""`diffit-eval sample`: the sharded, resumable 50K-sample generator (a thin layer over diffit_eval.generate.sample)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from diffit_eval.cli import options

# One line per paragraph: the help formatter wraps to the terminal, hard breaks would stay.
HELP = """Generate samples with a model preset under the paper's protocol, into a resumable run folder.

Defaults follow the preset: 50,000 samples with seeds 0-49999, the preset's sampler, steps and guidance, the released checkpoint and sd-vae-ft-ema for latent models, the release's truncating uint8 rule. Shards are written atomically; running the same command again resumes. Under torchrun or srun every rank takes its share of the shards. The run folder ends with samples_NxHxWx3.npz (ADM layout), grid.png and, from 83x83 up, per-shard Inception features for `diffit-eval metrics RUN`.
"""


def register(app: typer.Typer) -> None:
    @app.command("sample", short_help="Generate samples of a preset into a resumable run folder.", help=HELP)
    def sample(
        model: str = options.model(),
        ckpt: Optional[str] = options.ckpt(),
        vae: Optional[str] = options.vae(),
        steps: Optional[int] = options.steps(),
        cfg_scale: Optional[float] = options.cfg_scale(),
        class_labels: Optional[str] = options.class_labels(),
        num_samples: Optional[int] = options.num_samples(),
        seeds: Optional[str] = options.seeds(),
        batch_size: Optional[int] = options.sample_batch_size(),
        shard_size: int = typer.Option(1000, "--shard-size", help="Samples per shard file."),
        out: Optional[Path] = typer.Option(
            None, "--out", help="Run folder (default: runs/<model>-<sampler><steps>-cfg<s>-seeds<a-b>)."
        ),
        precision: str = options.sample_precision(),
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
        dinov2_weights: Optional[str] = options.dinov2_weights(),
        inception_weights: Optional[str] = options.inception_weights(),
        device: Optional[str] = options.device(),
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
