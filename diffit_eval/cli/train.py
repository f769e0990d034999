"""`diffit-eval train`: EDM's training recipe for the image-space DiffiT (a thin layer over diffit_eval.train)."""

from __future__ import annotations

from typing import Optional

import typer

from diffit_eval.cli import options

HELP = """Train an image-space DiffiT with EDM's recipe (DiffiT appendix I.1) into a resumable run folder.

Defaults follow the preset: cifar10 batch 512, lr 1e-3, dropout 0.13, augment 0.12; ffhq64 batch
256, lr 2e-4, dropout 0.05, augment 0.15; 200,000 iterations; EDM loss, Adam, lr ramp-up 10 Mimg,
EMA half-life 0.5 Mimg. --data takes EDM's dataset zip or folder of PNGs (optional dataset.json),
an ADM npz, or a built-in dataset (sklearn-digits). Under torchrun or srun every process takes its
share of each batch. --resume RUN continues from the newest training-state-KIMG.pt; --dry-run prints
the resolved configuration. network-snapshot-latest.safetensors is an ordinary `sample --ckpt`.
"""


def _ints(text: Optional[str], flag: str) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=flag) from None


def _floats(text: Optional[str], flag: str) -> Optional[tuple[float, ...]]:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 2:
        raise typer.BadParameter(f"expected two comma-separated numbers, got {text!r}", param_hint=flag)
    return values


def register(app: typer.Typer) -> None:
    @app.command("train", short_help="Train an image-space DiffiT with EDM's recipe.", help=HELP)
    def train(
        preset: Optional[str] = typer.Option(
            None, "--preset", "-m", help="Image-space preset: cifar10, ffhq64; tests: cifar10-tiny."
        ),
        data: Optional[str] = typer.Option(
            None, "--data", help="EDM dataset zip/folder, ADM npz, or a built-in dataset (sklearn-digits)."
        ),
        out: Optional[str] = typer.Option(None, "--out", help="Run folder (default runs/train-<preset>)."),
        resume: Optional[str] = typer.Option(
            None,
            "--resume",
            help="Continue the run in this folder from its newest training state; options not given are the run's.",
        ),
        batch: Optional[int] = typer.Option(
            None, "--batch", help="Total batch per iteration (cifar10 512, ffhq64 256)."
        ),
        batch_gpu: Optional[int] = typer.Option(
            None, "--batch-gpu", help="Images per forward on each process; the rest is gradient accumulation."
        ),
        lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (cifar10 1e-3, ffhq64 2e-4)."),
        iterations: Optional[int] = typer.Option(None, "--iterations", help="Optimizer steps (default 200000)."),
        lr_rampup_kimg: Optional[float] = typer.Option(
            None, "--lr-rampup-kimg", help="Learning-rate ramp-up in kimg (default 10000)."
        ),
        ema_halflife_kimg: Optional[float] = typer.Option(
            None, "--ema-halflife-kimg", help="EMA half-life in kimg (default 500)."
        ),
        ema_rampup_ratio: Optional[float] = typer.Option(
            None, "--ema-rampup-ratio", help="EMA ramp-up ratio (default 0.05)."
        ),
        dropout: Optional[float] = typer.Option(
            None, "--dropout", help="Dropout probability (cifar10 0.13, ffhq64 0.05)."
        ),
        label_dropout: Optional[float] = typer.Option(
            None,
            "--label-dropout",
            help="Class-conditional presets: probability of a zeroed label (classifier-free guidance; digits-cond 0.1).",
        ),
        transfer: Optional[str] = typer.Option(
            None, "--transfer", help="Initial weights from a snapshot (a path or shipped name), as EDM's --transfer."
        ),
        augment: Optional[float] = typer.Option(
            None, "--augment", help="Augmentation probability p (cifar10 0.12, ffhq64 0.15; 0 = off)."
        ),
        P_mean: Optional[float] = typer.Option(None, "--P-mean", help="Mean of ln(sigma) (default -1.2)."),
        P_std: Optional[float] = typer.Option(None, "--P-std", help="Standard deviation of ln(sigma) (default 1.2)."),
        sigma_data: Optional[float] = typer.Option(None, "--sigma-data", help="Data standard deviation (default 0.5)."),
        adam_betas: Optional[str] = typer.Option(None, "--adam-betas", help="Adam betas, e.g. 0.9,0.999."),
        adam_eps: Optional[float] = typer.Option(None, "--adam-eps", help="Adam eps (default 1e-8)."),
        loss_scaling: Optional[float] = typer.Option(None, "--loss-scaling", help="EDM's loss scaling (default 1)."),
        seed: Optional[int] = typer.Option(
            None, "--seed", help="Seed of the initial weights, data order and every random draw (default 0)."
        ),
        precision: Optional[str] = typer.Option(
            None, "--precision", help="fp32 (EDM, default), tf32, or bf16 (autocast of the forward)."
        ),
        channels: Optional[str] = typer.Option(
            None,
            "--channels",
            help="Override the channels per stage, e.g. 16,32,32 (snapshots then need the same architecture).",
        ),
        blocks: Optional[str] = typer.Option(None, "--blocks", help="Override the ResBlocks per stage, e.g. 1,1,1."),
        tick_kimg: Optional[float] = typer.Option(
            None, "--tick-kimg", help="Progress line and stats.jsonl entry every this many kimg (default 50)."
        ),
        snapshot_ticks: Optional[int] = typer.Option(
            None, "--snap", help="Network snapshot every this many ticks (default 50)."
        ),
        state_ticks: Optional[int] = typer.Option(
            None, "--dump", help="Training state every this many ticks (default 100)."
        ),
        compile_: bool = typer.Option(False, "--compile", help="torch.compile the network."),
        metrics_kimg: Optional[float] = typer.Option(
            None, "--metrics-kimg", help="Measure FID of EMA samples every this many kimg."
        ),
        metrics_num: int = typer.Option(1000, "--metrics-num", help="Samples per FID measurement."),
        ref: Optional[str] = typer.Option(
            None, "--ref", help="Reference for the FID: registry name, statistics npz or images."
        ),
        inception_weights: Optional[str] = options.inception_weights(),
        device: Optional[str] = options.device(),
        dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Print the resolved configuration and exit."),
        plot: bool = typer.Option(
            False, "--plot", help="Only redraw loss.png of the run folder (--out or --resume) and exit."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or status lines."),
    ) -> None:
        from diffit_eval.errors import UserError
        from diffit_eval.train import TrainConfig
        from diffit_eval.train.loop import plot_run
        from diffit_eval.train.loop import train as run

        if plot:
            folder = resume or out
            if folder is None:
                raise UserError("--plot needs the run folder: --out RUN or --resume RUN")
            typer.echo(str(plot_run(folder)))
            return
        run(
            TrainConfig(
                preset=preset,
                data=data,
                out=out,
                resume=resume,
                batch=batch,
                batch_gpu=batch_gpu,
                lr=lr,
                iterations=iterations,
                lr_rampup_kimg=lr_rampup_kimg,
                ema_halflife_kimg=ema_halflife_kimg,
                ema_rampup_ratio=ema_rampup_ratio,
                dropout=dropout,
                label_dropout=label_dropout,
                transfer=transfer,
                augment=augment,
                P_mean=P_mean,
                P_std=P_std,
                sigma_data=sigma_data,
                adam_betas=_floats(adam_betas, "--adam-betas"),
                adam_eps=adam_eps,
                loss_scaling=loss_scaling,
                seed=seed,
                precision=precision,
                channels=_ints(channels, "--channels"),
                blocks=_ints(blocks, "--blocks"),
                tick_kimg=tick_kimg,
                snapshot_ticks=snapshot_ticks,
                state_ticks=state_ticks,
                compile=compile_,
                metrics_kimg=metrics_kimg,
                metrics_num=metrics_num,
                ref=ref,
                inception_weights=inception_weights,
                device=device,
                dry_run=dry_run,
                verbose=not quiet,
            )
        )
