"""`diffit-eval sweep`: one sampling option over a list of values, scored point by point (diffit_eval.report.sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from diffit_eval.cli import options

HELP = """Sweep one sampling option (guidance scale, steps or training snapshot) and score every point against one reference.

Each value is an ordinary resumable run folder DIR/<option>-<value> (features kept) with its metrics.json; points already finished with the same settings are reused. Every sampling option not varied is as for `sample`, the same at every point. Writes DIR/sweep.json (one row per value with every metric), DIR/sweep.md (the table) and DIR/sweep.png (FID, precision and recall against the value, best point marked). Runs under torchrun like `sample`.

Example: diffit-eval sweep --vary cfg-scale=1,1.5,2,3,4 --model digits-cond --num-samples 1000 --ref REF --out DIR
"""


def register(app: typer.Typer) -> None:
    @app.command("sweep", short_help="Sweep one sampling option and score every point.", help=HELP)
    def sweep(
        vary: str = typer.Option(
            ...,
            "--vary",
            help="OPTION=V1,V2,...: cfg-scale=1,1.5,2 | steps=10,18,32 | ckpt=SNAP1,SNAP2 (training snapshots).",
        ),
        model: str = options.model(),
        ref: str = typer.Option(
            ..., "--ref", help="Reference for every point: registry name, statistics npz or images."
        ),
        out: Path = typer.Option(..., "--out", help="Sweep folder: one run folder per point, sweep.json, sweep.png."),
        ckpt: Optional[str] = options.ckpt(),
        steps: Optional[int] = options.steps(),
        cfg_scale: Optional[float] = options.cfg_scale(),
        class_labels: Optional[str] = options.class_labels(),
        num_samples: Optional[int] = options.num_samples(),
        seeds: Optional[str] = options.seeds(),
        vae: Optional[str] = options.vae(),
        precision: str = options.sample_precision(),
        metrics: Optional[str] = options.metrics(),
        network: str = options.network(),
        bootstrap: Optional[int] = typer.Option(
            None,
            "--bootstrap",
            metavar="B",
            help="Bootstrap replicates per point: 95% percentile intervals, centred on the value and clipped to the metric's range, in sweep.json.",
        ),
        batch_size: Optional[int] = options.sample_batch_size(),
        inception_weights: Optional[str] = options.inception_weights(),
        device: Optional[str] = options.device(),
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
