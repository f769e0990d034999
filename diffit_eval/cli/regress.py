"""`diffit-eval regress`: check a published protocol (or CI's golden run) against expected values."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from diffit_eval.cli import options

EPILOG = (
    "Exit codes: 0 pass, 1 regression (table of metric, measured, expected, tolerance, verdict), "
    "2 could not run (missing assets are listed with the command that fetches each). "
    "Suites: results/suites.toml (`--list`)."
)


def _print_checks(report) -> None:
    from rich.table import Table

    from diffit_eval.console import console
    from diffit_eval.report.regress import FAIL, MISSING_VALUE, PASS

    style = {PASS: "green", FAIL: "bold red", MISSING_VALUE: "bold red"}
    t = Table(title=f"regress {report.suite} ({report.kind}): {report.verdict}")
    for name, justify in (
        ("metric", "left"),
        ("measured", "right"),
        ("expected", "right"),
        ("tolerance", "right"),
        ("|diff|", "right"),
        ("verdict", "left"),
    ):
        # numbers never wrap; the verdict (with its reason) wraps at the terminal's width
        t.add_column(name, justify=justify, no_wrap=name != "verdict", overflow="fold", min_width=4)
    for c in report.checks:
        verdict = c.verdict + (f" ({c.reason})" if c.reason and c.verdict != "pass" else "")
        t.add_row(
            c.metric,
            "null" if c.measured is None else f"{c.measured:.6g}",
            f"{c.expected:g}",
            c.tolerance,
            "" if c.abs_diff is None else f"{c.abs_diff:.3g}",
            verdict,
            style=style.get(c.verdict),
        )
    console().print(t)


def _print_missing(report) -> None:
    from rich.table import Table

    from diffit_eval.console import console

    t = Table(title=f"regress {report.suite}: missing assets (nothing was run)")
    for name in ("asset", "expected at", "fetch with"):
        t.add_column(name, overflow="fold")
    for a in report.missing_assets:
        how = a.fetch + (f"\nor download {a.url} to that path" if a.url else "")
        t.add_row(a.what, str(a.path or "-"), how)
    console().print(t)


def _list_suites(suites_path: Optional[Path]) -> None:
    """One row a suite: its name and kind, its description above its expected values (a paragraph
    that wraps at the terminal's width: the golden suite's list is long)."""
    from rich import box
    from rich.table import Table

    from diffit_eval.console import console
    from diffit_eval.report.suites import load_suites

    t = Table(title="regression suites", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("suite (kind)", no_wrap=True)
    t.add_column("description; expected values", overflow="fold")
    for s in load_suites(suites_path).values():
        exp = ", ".join(f"{m} {e.value:g}" for m, e in s.expected.items()) or "(not recorded)"
        t.add_row(f"{s.name}\n({s.kind})", f"{s.description}\nexpected: {exp}")
    console().print(t)


def regress(
    suite: Optional[str] = typer.Option(None, "--suite", "-s", help="Suite name from results/suites.toml."),
    list_: bool = typer.Option(False, "--list", help="List the suites and their expected values."),
    measured: Optional[Path] = typer.Option(
        None,
        "--measured",
        help="Compare this `metrics --json` file (or an earlier `regress --json` report) instead of running anything.",
    ),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Write the report (checks, verdict, measured JSON) here."
    ),
    update_golden: bool = typer.Option(
        False,
        "--update-golden",
        help="Golden suites: run the suite and re-record its expected values, atomically (not with --measured).",
    ),
    fetch: bool = typer.Option(False, "--fetch", help="Download the suite's missing sample batch and reference first."),
    fetch_only: bool = typer.Option(
        False,
        "--fetch-only",
        help="Download the suite's missing sample batch and reference, then exit "
        "(e.g. on a login node before an offline GPU job).",
    ),
    samples: Optional[Path] = typer.Option(
        None,
        "--samples",
        help="Sample file or run folder to measure instead of the suite's sample batch, or instead of sampling.",
    ),
    ref: Optional[str] = typer.Option(None, "--ref", help="Reference path or registry name instead of the suite's."),
    ckpt: Optional[str] = typer.Option(None, "--ckpt", help="Checkpoint for sampling (required by cifar10/ffhq64)."),
    inception_weights: Optional[Path] = options.inception_weights(),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Passed to the suite's `sample`, `metrics` and `ref build`."
    ),
    workdir: Optional[Path] = typer.Option(
        None, "--workdir", help="Where runs go (default runs/regress/SUITE; golden: a temporary folder)."
    ),
    launcher: Optional[str] = typer.Option(
        None, "--launcher", help='Prefix for the sampling command, e.g. "torchrun --standalone --nproc_per_node 8".'
    ),
    suites_path: Optional[Path] = typer.Option(None, "--suites", help="Suites file instead of results/suites.toml."),
) -> None:
    """Run a regression suite and compare its metrics with the expected values."""
    from diffit_eval.assets.cache import write_json_atomic
    from diffit_eval.errors import UserError
    from diffit_eval.report.regress import regress as run_regress
    from diffit_eval.report.regress import update_golden as record
    from diffit_eval.report.runners import RunOptions

    if list_:
        _list_suites(suites_path)
        return
    if not suite:
        raise UserError("pass --suite NAME (see `diffit-eval regress --list`)", code=2)
    opts = RunOptions(
        workdir=workdir,
        samples=samples,
        ref=ref,
        ckpt=ckpt,
        inception_weights=inception_weights,
        batch_size=batch_size,
        launcher=shlex.split(launcher) if launcher else None,
    )
    if fetch_only:
        from diffit_eval.report.runners import fetch_assets
        from diffit_eval.report.suites import CouldNotRun, get_suite

        left = fetch_assets(get_suite(suite, suites_path), opts)
        if left:
            raise CouldNotRun("still missing: " + "; ".join(f"{a.what}: {a.fetch}" for a in left))
        typer.echo(f"all assets of suite {suite} are present")
        return
    if update_golden:
        if measured is not None:
            raise UserError("--update-golden runs the golden suite itself; drop --measured", code=2)
        path, values = record(suite, suites_path=suites_path, opts=opts)
        typer.echo(f"recorded {len(values)} golden values for {suite} in {path}")
        return

    report = run_regress(suite, suites_path=suites_path, measured=measured, opts=opts, fetch=fetch)
    if json_out is not None:
        write_json_atomic(json_out, report.to_json())
    if report.checks:
        _print_checks(report)
    if report.missing_assets:
        _print_missing(report)
    if report.exit_code != 0:
        raise UserError(report.summary(), code=report.exit_code)


def register(app: typer.Typer) -> None:
    app.command("regress", short_help="Run a regression suite against its expected values.", epilog=EPILOG)(regress)
