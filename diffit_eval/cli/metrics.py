"""`diffit-eval metrics`: FID, sFID, IS, precision and recall (and on request KID, FD_DINOv2 and
bootstrap intervals) of a sample set against a reference."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from diffit_eval.cli import options

# Asked-for extras shown as table columns: (column, key, digits)
EXTRA_COLUMNS = (
    ("KID", "kid", 5),
    ("FD_DINOv2", "fd_dinov2", 3),
    ("Density", "density", 4),
    ("Coverage", "coverage", 4),
    ("FID_inf", "fid_inf", 4),
    ("IS_inf", "is_inf", 2),
)
WORST_CLASSES = 5  # classes listed under the table with --per-class


def fmt(value, digits: int) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    # identical sets: a FID of -1e-13 (rounding) reads 0.0000, not -0.0000
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def with_ci(record: dict, key: str, digits: int) -> str:
    """`1.7300 [1.7000, 1.7700]` when the record has `<key>_ci`, else the value alone."""
    text = fmt(record.get(key), digits)
    ci = record.get(key + "_ci")
    if ci and record.get(key) is not None:
        text += f" [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"
    return text


def with_se(record: dict, key: str, digits: int) -> str:
    """A value with its interval, and `± se` when the record has `<key>_se` (FID_inf, IS_inf)."""
    text = with_ci(record, key, digits)
    se = record.get(key + "_se")
    return text + (f" ± {se:.{digits}f}" if se is not None and record.get(key) is not None else "")


def print_worst_classes(console, record: dict) -> None:
    """The WORST_CLASSES classes of highest FID, one line each (all of them are in the JSON)."""
    from diffit_eval.metrics.per_class import worst_classes

    per_class = record["per_class"]
    worst = worst_classes(per_class, WORST_CLASSES)
    console.print(f"  per class ({len(per_class)} classes in the JSON); highest FID:")
    for c, e in worst:
        dc = f", density {fmt(e['density'], 3)}, coverage {fmt(e['coverage'], 3)}" if "density" in e else ""
        console.print(
            f"    class {c}: FID {fmt(e['fid'], 3)}, precision {fmt(e['precision'], 3)}, recall "
            f"{fmt(e['recall'], 3)}{dc} ({e['num_samples']} samples, {e['num_reference']} reference rows)"
        )


PR_ARITH_NOTE = {"adm-fp16": "ADM float16 distances (the protocol)", "exact": "exact float64 distances"}


def rank_deficiency_warning(record: dict) -> str | None:
    """One line when the samples are fewer than a Frechet distance's feature dimension, else None."""
    from diffit_eval.features.extract import POOL_DIM, SPATIAL_DIM

    n = record["num_samples"]
    pool_dim = (record.get("feature_network") or {}).get("pool_dim", POOL_DIM)  # the digits network: 64
    short = [
        f"{name} ({dim}-d)"
        for name, dim in (("FID", pool_dim), ("sFID", SPATIAL_DIM))
        if record.get(name.lower()) is not None and n < dim
    ]
    if not short:
        return None
    return (
        f"diffit-eval: warning: {n} samples is fewer than the feature dimension of {' and '.join(short)}: "
        "the statistics are rank-deficient and the values are not comparable with 50K-sample numbers"
    )


def result_table(record: dict, pr_arith: str = "adm-fp16", stacked: bool = False):
    """The record's values as one rich table row, or `stacked`: one value per line (column, value),
    which reads at any width."""
    from rich.table import Table

    net = record["feature_network"]
    title = f"diffit-eval metrics: {record['label']}"
    suffix = "" if pr_arith == "adm-fp16" else " (exact)"
    extra = [(col, key, d) for col, key, d in EXTRA_COLUMNS if key in record]
    heads = (
        "FID",
        "sFID",
        "IS",
        "Precision" + suffix,
        "Recall" + suffix,
        *(c for c, _, _ in extra),
        "N",
        "reference",
        "feature network",
        "resize",
    )
    is_text = with_ci(record, "is", 2) + ("" if record["is_std"] is None else f" ± {record['is_std']:.2f}")
    key = "" if pr_arith == "adm-fp16" else "_exact"
    values = (
        with_ci(record, "fid", 4),
        fmt(record["sfid"], 4),
        is_text,
        with_ci(record, "precision" + key, 4),
        with_ci(record, "recall" + key, 4),
        *(with_se(record, k, d) for _, k, d in extra),
        str(record["num_samples"]),
        record["reference"]["name"],
        "[bold red]STAND-IN[/]" if net["standin"] else net.get("label", net["name"]),
        record["resize"],
    )
    if stacked:
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column("metric", no_wrap=True)
        table.add_column("value", overflow="fold")  # fold, never cut: a path or a name may be long
        for head, value in zip(heads, values):
            table.add_row(head, value)
        return table
    table = Table(title=title, title_justify="left")
    for col in heads:
        # fold, never cut: a narrow terminal must not turn 3.94256 into "3.9…"
        table.add_column(
            col, justify="left" if col in ("reference", "feature network", "resize") else "right", overflow="fold"
        )
    table.add_row(*values)
    return table


def print_result(record: dict, pr_arith: str = "adm-fp16") -> None:
    """One rich table row (one value per line where the row does not fit the terminal); n/a
    reasons and a stand-in warning underneath.

    The table shows precision/recall in `pr_arith`; one line underneath gives the other variant.
    """
    from diffit_eval.console import console as make_console
    from diffit_eval.console import print_fitting

    net = record["feature_network"]
    console = make_console()
    print_fitting(
        (result_table(record, pr_arith, stacked=stacked) for stacked in (False, True)),
        console,
    )
    other = "_exact" if pr_arith == "adm-fp16" else ""
    if record.get("precision" + other) is not None:
        console.print(
            f"  precision/recall with {PR_ARITH_NOTE['exact' if other else 'adm-fp16']}: "
            f"{fmt(record['precision' + other], 4)} / {fmt(record['recall' + other], 4)}"
        )
    boot = record.get("bootstrap")
    if boot:
        console.print(
            f"  \\[lo, hi]: {int(100 * boot['confidence'])}% percentile intervals from {boot['replicates']} bootstrap "
            f"replicates of the samples (seed {boot['seed']}, reference fixed), centred on the value, clipped to "
            "the metric's range"
        )
    kid = record.get("kid_protocol")
    if kid:
        console.print(
            f"  KID: {kid['subsets']} subsets of {kid['subset_size']}, {kid['kernel']}"
            + (f" ({kid['note']})" if kid.get("note") else "")
        )
    dc = record.get("density_coverage_protocol")
    if dc:
        console.print(f"  density/coverage: k = {dc['k']} balls on the {dc['manifold']} (Naeem et al. 2020)")
    for key in ("fid_inf", "is_inf"):
        fit = record.get(key + "_fit")
        if fit:
            console.print(
                f"  {key}: intercept of a line in 1/N over {fit['points']} subsets of {fit['sizes'][0]} to "
                f"{fit['sizes'][-1]} (seed {fit['seed']}; Chong & Forsyth 2020), ± its standard error"
            )
    if record.get("per_class"):
        print_worst_classes(console, record)
    for metric, reason in record["unavailable"].items():
        console.print(f"  {metric}: n/a ({reason})")
    if record.get("resolution_mismatch"):
        console.print(
            f"[bold red]  {record['resolution_mismatch']}; these numbers do not compare images of one size.[/]"
        )
    dinov2 = record.get("dinov2_network")
    if dinov2 and dinov2["standin"]:
        console.print(
            "[bold red]  FD_DINOv2 comes from a STAND-IN DINOv2 network (random weights); it is not "
            "comparable with any paper.[/]"
        )
    if net["standin"]:
        console.print(
            "[bold red]  These numbers come from a stand-in feature network; they are not FID/IS values "
            "comparable with any paper.[/]"
        )


def register(app: typer.Typer) -> None:
    @app.command(
        "metrics",
        short_help="FID, sFID, IS, precision, recall of samples against a reference.",
        help="FID, sFID, IS, precision and recall of samples against a reference (ADM protocol).",
    )
    def metrics(
        samples: Optional[str] = typer.Argument(
            None,
            metavar="SAMPLES",
            help="ADM npz (arr_0 uint8 [N,H,W,3]), image folder or run folder; default: the most recent run.",
        ),
        ref: str = typer.Option(
            ...,
            "--ref",
            help="Reference: ADM reference batch, mu/sigma npz, another sample source, or a registry name.",
        ),
        metrics_: Optional[str] = options.metrics(),
        num_samples: Optional[int] = typer.Option(None, "--num-samples", help="Use only the first N samples."),
        json_path: Optional[Path] = typer.Option(
            None, "--json", help="Also write the values and provenance to this JSON file."
        ),
        inception_weights: Optional[str] = options.inception_weights(),
        network: str = options.network(),
        device: Optional[str] = options.device(),
        batch_size: Optional[int] = options.feature_batch_size(),
        resize: str = options.resize(),
        label: Optional[str] = typer.Option(
            None, "--label", help="Row name in tables (default: run model or file name)."
        ),
        no_download: bool = options.no_download(),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        pr_arith: str = typer.Option(
            "adm-fp16",
            "--pr-arith",
            help="Precision/recall the table shows: adm-fp16 "
            "(ADM's float16 distances, the protocol) or exact (float64); the JSON has both.",
        ),
        fid_method: str = typer.Option(
            "eigh",
            "--fid-method",
            help="eigh (symmetric eigenvalues) or adm-sqrtm "
            "(ADM's scipy sqrtm routine, for its digits on fewer samples than dimensions).",
        ),
        dinov2_weights: Optional[str] = options.dinov2_weights(),
        bootstrap: Optional[int] = typer.Option(
            None,
            "--bootstrap",
            metavar="B",
            help="B replicates (e.g. 200): 95% percentile intervals for FID, FD_DINOv2, KID, IS, precision and "
            "recall from B resamplings of the samples (reference fixed), centred on the reported value and clipped "
            "to the metric's range; for "
            "FID_inf and IS_inf from B refits on fresh subsets.",
        ),
        bootstrap_seed: int = typer.Option(0, "--bootstrap-seed", help="Seed of the bootstrap draws."),
        per_class: bool = typer.Option(
            False,
            "--per-class",
            help="Also FID, precision, recall (and density/coverage when asked) per class: needs labelled "
            "samples (arr_1, a run folder) and a reference with labelled rows (docs/METRICS.md).",
        ),
        allow_resolution_mismatch: bool = typer.Option(
            False,
            "--allow-resolution-mismatch",
            help="Compute even when samples and reference differ in size (every output then says so).",
        ),
    ) -> None:
        from diffit_eval.assets.cache import check_writable, write_json_atomic
        from diffit_eval.errors import UserError
        from diffit_eval.metrics.evaluate import parse_metrics
        from diffit_eval.metrics.fid import FID_METHODS
        from diffit_eval.metrics.prc import ARITHS

        if pr_arith not in ARITHS:
            raise UserError(f"unknown --pr-arith {pr_arith!r}; choose one of {', '.join(ARITHS)}")
        if fid_method not in FID_METHODS:
            raise UserError(f"unknown --fid-method {fid_method!r}; choose one of {', '.join(FID_METHODS)}")
        wanted = parse_metrics(metrics_)
        if bootstrap is not None and bootstrap < 1:
            raise UserError(f"--bootstrap {bootstrap}: the number of replicates must be at least 1 (e.g. 200)")
        if json_path is not None:  # before computing anything: at 50K images a late failure loses the run
            check_writable(json_path, f"--json {json_path}")
        if samples is None:
            from diffit_eval.run_folder import latest_run

            samples = str(latest_run())
            print(f"diffit-eval: using the most recent run: {samples}", file=sys.stderr)
        try:
            from diffit_eval.metrics.evaluate import run_metrics

            record = run_metrics(
                samples,
                ref,
                metrics=wanted,
                num_samples=num_samples,
                weights=inception_weights,
                device=device,
                batch_size=batch_size,
                resize=resize,
                allow_download=not no_download,
                label=label,
                progress=not quiet,
                allow_resolution_mismatch=allow_resolution_mismatch,
                fid_method=fid_method,
                dinov2_weights=dinov2_weights,
                bootstrap=bootstrap,
                bootstrap_seed=bootstrap_seed,
                network=network,
                per_class=per_class,
            )
        except KeyboardInterrupt:
            from diffit_eval.cli import command_line
            from diffit_eval.errors import Interrupted

            raise Interrupted(
                "no metric was computed and nothing was written (downloaded weights and cached "
                f"reference features are kept); run again: {command_line()}"
            ) from None
        print_result(record, pr_arith)
        warning = rank_deficiency_warning(record)
        if warning:
            print(warning, file=sys.stderr)
        if json_path is not None:
            write_json_atomic(json_path, record)
