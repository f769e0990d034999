"""`diffit-eval sweep`: one sampling option over a list of values, scored point by point (diffit_eval.report.sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from diffit_eval.cli.metrics import METRICS_HELP, NETWORK_HELP
from diffit_eval.protocol import DEFAULT_NETWORK

HELP = """Sweep one sampling option (guidance scale, steps or training snapshot) and score every point against one reference.

Each value is an ordinary resumable run folder DIR/<option>-<value> (features kept) with its metrics.json; points already finished with the same settings are reused. Writes DIR/sweep.json (one row per value with every metric), DIR/sweep.md (the table) and DIR/sweep.png (FID, precision and recall against the value, best point marked). Runs under torchrun like `sample`.

Example: diffit-eval sweep --vary cfg-scale=1,1.5,2,3,4 --model digits-cond --num-samples 1000 --ref REF --out DIR
"""


def register(app: typer.Typer) -> None:
    @app.command("sweep", help=HELP)
    def sweep(
        vary: str = typer.Option(
            ...,
            "--vary",
            help="OPTION=V1,V2,...: cfg-scale=1,1.5,2 | steps=10,18,32 | ckpt=SNAP1,SNAP2 (training snapshots).",
        ),
        model: str = typer.Option(..., "--model", "-m", help="Preset (see `diffit-eval models`)."),
        ref: str = typer.Option(
            ..., "--ref", help="Reference for every point: registry name, statistics npz or images."
        ),
        out: Path = typer.Option(..., "--out", help="Sweep folder: one run folder per point, sweep.json, sweep.png."),
        ckpt: Optional[str] = typer.Option(None, "--ckpt", help="Checkpoint of every point (unless --vary ckpt)."),
        steps: Optional[int] = typer.Option(None, "--steps", help="Sampler steps (default: the preset's)."),
        cfg_scale: Optional[float] = typer.Option(None, "--cfg-scale", help="Guidance scale (default: the preset's)."),
        class_labels: Optional[str] = typer.Option(None, "--class-labels", help="Fixed classes, as for `sample`."),
        num_samples: Optional[int] = typer.Option(None, "--num-samples", help="Samples per point, seeds 0..N-1."),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="Seed list per point (overrides --num-samples)."),
        vae: Optional[str] = typer.Option(None, "--vae", help="Latent decoder, as for `sample`."),
        precision: str = typer.Option("tf32", "--precision", help="fp32, tf32 or bf16, as for `sample`."),
        metrics: Optional[str] = typer.Option(None, "--metrics", help=METRICS_HELP),
        network: str = typer.Option(DEFAULT_NETWORK, "--network", help=NETWORK_HELP),
        bootstrap: Optional[int] = typer.Option(
            None, "--bootstrap", help="Bootstrap replicates per point: 95% intervals in sweep.json."
        ),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per forward when sampling."),
        inception_weights: Optional[str] = typer.Option(
            None, "--inception-weights", help="Local InceptionV3 weights; env DIFFIT_EVAL_INCEPTION_WEIGHTS."
        ),
        device: Optional[str] = typer.Option(None, "--device", help="cuda, cpu ... (default: each rank's GPU)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or table."),
    ) -> None:
        from diffit_eval.generate.sample import SampleConfig
        from diffit_eval.report.sweep import SweepConfig, run_sweep

        base = SampleConfig(
            model=model,
            ckpt=ckpt,
            vae=vae,
            steps=steps,
            cfg_scale=cfg_scale,
            class_labels=class_labels,
            num_samples=num_samples,
            seeds=seeds,
            batch_size=batch_size,
            precision=precision,
            device=device,
        )
        folder = run_sweep(
            SweepConfig(
                vary=vary,
                base=base,
                ref=ref,
                out=out,
                metrics=metrics,
                network=network,
                bootstrap=bootstrap,
                inception_weights=inception_weights,
                verbose=not quiet,
            )
        )
        if folder is not None and not quiet:
            typer.echo((folder / "sweep.md").read_text())
            typer.echo(f"{folder / 'sweep.json'}\n{folder / 'sweep.png'}")
