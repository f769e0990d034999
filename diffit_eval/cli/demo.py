"""`diffit-eval demo`: the shipped `digits` DiffiT against real digits, offline, in about a minute on a CPU.

The work is :mod:`diffit_eval.demo`; this module parses options and prints (docs/DEMO.md).
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffit_eval.errors import UserError


def _ordering(console, network: str, fid: dict) -> None:
    """One line: where the trained model sits between the floor and the ceiling, or a warning."""
    from diffit_eval.demo import LABELS

    if fid["heldout"] < fid["trained"] < fid["untrained"]:
        where = (fid["trained"] - fid["heldout"]) / (fid["untrained"] - fid["heldout"])
        console.print(
            f"{network}: FID {LABELS['heldout']} {fid['heldout']:.2f} < trained {fid['trained']:.2f} < untrained "
            f"{fid['untrained']:.2f}: the trained model sits {where:.1%} of the way from the floor to the ceiling."
        )
    else:
        console.print(
            f"[bold red]warning[/]: on the {network}, the expected ordering FID held-out < trained < untrained "
            f"does not hold ({fid}); the shipped weights or the sampler may be broken."
        )


def register(app: typer.Typer) -> None:
    @app.command(
        "demo",
        short_help="The shipped digits DiffiT against real digits, offline, on a CPU.",
        help="Sample the shipped digits DiffiT (EDM Heun) and score it against the training digits "
        "beside held-out real digits (floor) and the untrained model (ceiling); writes grid.png.",
    )
    def demo(
        out: Path = typer.Option(
            Path("runs/demo"), "--out", help="Folder for the two sample runs, the metrics JSONs and grid.png."
        ),
        num_samples: int = typer.Option(
            256,
            "--num-samples",
            min=16,
            max=297,
            help="Images per row (seeds 0..N-1; at most the 297 held-out digits).",
        ),
        steps: int = typer.Option(18, "--steps", min=2, help="EDM Heun steps (2N-1 network calls)."),
        inception_images: int = typer.Option(
            500,
            "--inception-images",
            min=0,
            max=1500,
            help="Training digits in the InceptionV3 block's reference (seeded subset; each costs a 299x299 "
            "forward); 0 skips that block.",
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        from diffit_eval.assets.cache import check_writable
        from diffit_eval.console import console as make_console
        from diffit_eval.demo import (
            demo_inception_table,
            demo_table,
            run_demo,
            write_conditional_grid,
            write_demo_grid,
            write_summary,
        )
        from diffit_eval.report.render import render

        check_writable(out / "metrics.json", f"--out {out}")  # before a minute of sampling
        for name in ("trained", "untrained"):
            if (out / name).exists() and not (out / name / "manifest.json").is_file():
                raise UserError(f"--out {out}: {out / name} exists and is not a demo run; pass another --out")
        console = make_console()
        console.print(
            f"[bold]diffit-eval demo[/]: the shipped digits DiffiT -> EDM Heun {steps} steps -> "
            f"{num_samples} samples -> FID / IS / precision / recall against the 1,500 training digits"
        )
        result = run_demo(out, num_samples, steps=steps, verbose=not quiet, inception_reference_images=inception_images)
        write_summary(out, result)
        grid = write_demo_grid(out / "grid.png", result)
        cond_grid = write_conditional_grid(out / "grid-cond.png", result) if result.conditional else None
        if result.inception_rows:
            typer.echo(render(demo_inception_table(out, result), "rich"), nl=False)
            inet = result.inception_rows["trained"]["feature_network"]
            unavailable = result.inception_rows["trained"]["unavailable"]
            console.print(
                f"Features: {inet['label']} ({inet['weights']}); "
                + (f"IS: n/a ({unavailable['is']})." if "is" in unavailable else "IS in the JSONs."),
                soft_wrap=True,
            )
            _ordering(console, "InceptionV3", {k: r["fid"] for k, r in result.inception_rows.items()})
        typer.echo(render(demo_table(out, result), "rich"), nl=False)
        net = result.network
        console.print(
            f"\nFeatures: `--network digits`, a digit classifier (MLP, 64 hidden units) fitted on the training "
            f"split and shipped with the package (accuracy {net['train_accuracy']:.3f} train, "
            f"{net['heldout_accuracy']:.3f} held out); FID and precision/recall on its hidden layer, IS on its "
            "logits. Not InceptionV3: these numbers are comparable with each other, not with any paper (docs/DEMO.md).",
            soft_wrap=True,
        )
        _ordering(console, "digits network", {k: r["fid"] for k, r in result.rows.items()})
        console.print(
            f"{grid}: trained samples | untrained samples | real training digits. "
            f"Per-row JSONs and metrics.json in {out}/; took {result.seconds:.0f} s.",
            soft_wrap=True,
        )
        if cond_grid is not None:
            c = result.conditional
            console.print(
                f"{cond_grid}: the class-conditional digits-cond (guidance s = {c['scale']:g}), one row per class, "
                f"beside real digits of the class; a classifier fitted on the training digits agrees with the "
                f"requested class on {c['agreement']:.0%} of the {len(c['labels'])} samples.",
                soft_wrap=True,
            )
        console.print(
            "The same by hand:\n"
            f"  diffit-eval ref build {out}/digits-train.npz --name digits-train --resolution 16 --crop none "
            f"--network digits --pr-images 1500 --out {out}/digits-train-ref.npz\n"
            f"  diffit-eval sample --model digits --seeds 0-{num_samples - 1} --steps {steps} --out {out}/trained\n"
            f"  diffit-eval metrics {out}/trained --ref {out}/digits-train-ref.npz --network digits --metrics fid,is,pr",
            soft_wrap=True,
        )
