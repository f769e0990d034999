"""`diffit-eval table`: the published Table S.1 (and Tables 1, 2) with measured rows beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from diffit_eval.protocol import ALL_METRIC_KEYS

FORMATS = ("rich", "md", "csv", "latex")


def table(
    results: Optional[list[Path]] = typer.Argument(
        None,
        metavar="RESULTS",
        help="`metrics --json` files to add as measured rows (placed by their `dataset` and `resolution`, "
        "named by their `label`). Regression reports and golden files are skipped.",
    ),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        help="View: (default) s1 = Table S.1 (LDM-4-G, DiT-XL/2-G, DiffiT at ImageNet-256/512); "
        "imagenet = every row of the paper's Table 1; cifar10 or ffhq64 = Table 2 (FID only).",
    ),
    fmt: str = typer.Option(
        "rich",
        "--format",
        "-f",
        metavar="FORMAT",
        help=f"Output: {', '.join(FORMATS)}. csv keeps published values verbatim.",
    ),
    baseline: Optional[str] = typer.Option(
        None,
        "--baseline",
        help="Row the ΔFID column is relative to (default DiT-XL/2-G; EDM (VP) for cifar10/ffhq64). "
        "ΔFID = (FID − FID_baseline) / FID_baseline × 100% at the same resolution.",
    ),
    metrics: Optional[str] = typer.Option(
        None,
        "--metrics",
        metavar="LIST",
        help=f"Comma list of columns per resolution from {', '.join(ALL_METRIC_KEYS)} "
        "(default: the view's own, e.g. fid,is,precision,recall).",
    ),
    all_sources: bool = typer.Option(
        False,
        "--all-sources",
        help="Also show the view's dataset from every other source: the DiffiT README's unrounded run, "
        "ADM's published sample batches (TF evaluator and PyTorch port, incl. ImageNet-128), Table 1.",
    ),
    published: Optional[Path] = typer.Option(
        None, "--published", help="Use this CSV instead of results/published.csv."
    ),
) -> None:
    """Print Table S.1 (or Table 1/2) from results/published.csv, plus measured rows."""
    from diffit_eval.report.render import render
    from diffit_eval.report.table import make_table

    t = make_table(
        results or (),
        view=dataset,
        baseline=baseline,
        all_sources=all_sources,
        published=published,
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
    )
    for w in t.warnings:
        typer.echo(f"diffit-eval: warning: {w}", err=True)
    typer.echo(render(t, fmt), nl=False)


def register(app: typer.Typer) -> None:
    app.command("table", short_help="Table S.1 (or Table 1/2) of published values, plus measured rows.")(table)
