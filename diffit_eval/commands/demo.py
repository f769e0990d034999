"""`diffit-eval demo`: the whole data path offline, on tiny stand-ins, in about a minute on a CPU.

checkpoint -> sampler -> shards -> features -> statistics -> metrics -> table, with the
`cifar10-tiny` preset (seeded random weights), EDM's Heun sampler, per-sample seeds, shards with
features on the fly, and a stand-in InceptionV3 with seeded random weights (this machine may not
reach the real network's host). The reference is a second run of the same model on other seeds,
so the numbers measure the model against itself: they show that every step runs, not a FID.
"""

from __future__ import annotations

from pathlib import Path

import typer

from diffit_eval.errors import UserError

STANDIN_SEED = 0


def standin_weights_path() -> Path:
    """The demo's stand-in Inception weights, made once in the cache."""
    from diffit_eval.assets.cache import cache_dir
    from diffit_eval.testing import make_standin_weights

    path = cache_dir() / "weights" / f"standin-inception-seed{STANDIN_SEED}.pth"
    if not path.is_file():
        make_standin_weights(path, seed=STANDIN_SEED)
    return path


def run_demo(out: Path, num_samples: int, steps: int, verbose: bool = True) -> dict:
    from diffit_eval.evaluate import run_metrics
    from diffit_eval.generate.runner import generate
    from diffit_eval.generate.sample import SampleConfig

    weights = standin_weights_path()
    runs = {}
    for name, first in (("samples", 0), ("reference", num_samples)):
        runs[name] = generate(SampleConfig(
            model="cifar10-tiny", seeds=f"{first}-{first + num_samples - 1}", steps=steps, out=out / name,
            inception_weights=str(weights), features=True, shard_size=max(1, num_samples // 4), verbose=verbose,
        ))
    record = run_metrics(runs["samples"], str(runs["reference"]), weights=str(weights),
                         label="cifar10-tiny demo (random weights)", progress=verbose)
    record["dataset"] = "cifar10"
    return record


def register(app: typer.Typer) -> None:
    @app.command("demo", help="Run the whole path offline on tiny stand-ins (random-weight model and Inception); not a real FID.")
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the two runs and metrics.json."),
        num_samples: int = typer.Option(64, "--num-samples", min=8, help="Samples per run (seeds 0..N-1; the reference uses N..2N-1)."),
        steps: int = typer.Option(18, "--steps", min=2, help="EDM Heun steps (2N-1 network calls)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        from rich.console import Console

        from diffit_eval.assets.cache import check_writable, write_json_atomic
        from diffit_eval.commands.metrics import print_result
        from diffit_eval.report.table import make_table, render

        check_writable(out / "metrics.json", f"--out {out}")  # before a minute of sampling
        for name in ("samples", "reference"):
            if (out / name).exists() and not (out / name / "manifest.json").is_file():
                raise UserError(f"--out {out}: {out / name} exists and is not a demo run; pass another --out")
        console = Console()
        console.print("[bold]diffit-eval demo[/]: cifar10-tiny (random weights) -> EDM Heun "
                      f"{steps} steps -> shards -> [bold red]stand-in[/] Inception features -> metrics -> table")
        record = run_demo(out, num_samples, steps, verbose=not quiet)
        print_result(record)
        write_json_atomic(out / "metrics.json", record)
        console.print("\nThe measured row beside the paper's Table 2 (CIFAR-10); it is marked as a stand-in:")
        table = make_table([out / "metrics.json"], view="cifar10")
        typer.echo(render(table, "rich"), nl=False)
        weights = standin_weights_path()
        console.print(f"\n{out}/metrics.json; the two runs are {out}/samples/ and {out}/reference/, each with its "
                      "grid.png (the model has random weights, so the grids show noise: that is expected).")
        console.print(f"Stand-in Inception weights: {weights}. Offline, the same steps by hand:")
        console.print(f"  diffit-eval sample --model cifar10-tiny --seeds 0-{num_samples - 1} --steps {steps} "
                      f"--out {out}/mine --inception-weights {weights}", soft_wrap=True)
        console.print(f"  diffit-eval metrics {out}/mine --ref {out}/reference --inception-weights {weights}",
                      soft_wrap=True)
        console.print("Real numbers: see README, 'Reproducing Table S.1'.")
