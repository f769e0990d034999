"""`diffit-eval ref list|show|fetch|build`: named reference statistics (see :mod:`diffit_eval.references.registry`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from diffit_eval.cli import options

CACHE_HELP = (
    "References are cached in $DIFFIT_EVAL_CACHE/refs (default ~/.cache/diffit-eval/refs): "
    "<name>.npz with <name>.json beside it (sha256, size, URL, when fetched). "
    "`metrics --ref NAME` finds them there."
)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"


def _console():
    """The console at the terminal's width (diffit_eval.console)."""
    from diffit_eval.console import console

    return console()


LIST_COLUMNS = (
    ("name", "left"),
    ("dataset", "left"),
    ("res", "right"),
    ("resize", "left"),
    ("metrics", "left"),
    ("cached", "left"),
    ("size", "right"),
)


def list_table(rows: list[dict], ruled: bool = True, stacked: bool = False):
    """`ref list` as a rich table: with column rules (`ruled`), without them (narrower), or
    `stacked`: one entry per row, its fields folded into one cell under the name."""
    from rich import box
    from rich.table import Table

    from diffit_eval.references.registry import refs_dir

    caption = f"cache: {refs_dir()}"
    cells = [
        (
            r["name"],
            str(r["dataset"] or "?"),
            str(r["resolution"] or "?"),
            str(r["resize"]),
            ",".join(r["holds"]),
            r["status"],
            _size(r["size"]),
        )
        for r in rows
    ]
    kw = dict(title="reference statistics", title_justify="left", caption=caption, caption_justify="left")
    if stacked:
        t = Table(**kw, box=box.SIMPLE_HEAD, pad_edge=False)
        t.add_column("name", no_wrap=True)
        t.add_column("dataset, res, resize; metrics; cached, size", overflow="fold")
        for name, dataset, res, resize, holds, status, size in cells:
            t.add_row(name, f"{dataset}, {res if res == '?' else res + 'px'}, {resize}\n{holds}\n{status}, {size}")
        return t
    unruled = dict(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    t = Table(**kw) if ruled else Table(**kw, **unruled)
    for col, justify in LIST_COLUMNS:
        t.add_column(col, justify=justify, no_wrap=True)
    for row in cells:
        t.add_row(*row)
    return t


def print_list(rows: list[dict]) -> None:
    """The widest layout of `list_table` that fits the terminal: ruled, unruled, stacked."""
    from diffit_eval.console import print_fitting

    print_fitting(
        list_table(rows, ruled=ruled, stacked=stacked)
        for ruled, stacked in ((True, False), (False, False), (False, True))
    )


def print_show(report: dict) -> None:
    from rich.table import Table

    console = _console()
    entry = report["entry"]
    if entry is not None:
        t = Table(title=f"reference {report['name']}", title_justify="left", show_header=False)
        t.add_column("field", style="bold", no_wrap=True)
        t.add_column("value", overflow="fold")
        for key in (
            "url",
            "dataset",
            "resolution",
            "resize",
            "holds",
            "pr_images",
            "content",
            "protocol",
            "source",
            "licence",
            "sha256",
            "size",
        ):
            if entry.get(key) is not None:
                t.add_row(key, ", ".join(entry[key]) if isinstance(entry[key], list) else str(entry[key]))
        rec = report["record"] or {}
        for key in ("sha256", "sha256_source", "fetched", "created"):
            if key in rec:
                t.add_row(f"cache {key}", str(rec[key]))
        console.print(t)
        if report["file"] is None:
            console.print(f"  not cached (would be {report['cached_path']}); `diffit-eval ref fetch {report['name']}`")
            return
    f = report["file"]
    console.print(f"{f['path']}  ({_size(f['size'])}, sha256 {f['sha256']})", soft_wrap=True)
    arrays = Table()
    for col in ("key", "shape", "dtype"):
        arrays.add_column(col, overflow="fold")
    for key, a in f["arrays"].items():
        arrays.add_row(key, str(a["shape"]), a["dtype"])
    console.print(arrays)
    console.print(
        f"  metrics it supports: {', '.join(f['holds']) or 'none'}; "
        f"P/R images: {f['pr_images'] if f['pr_images'] is not None else 'none'}; "
        f"statistics over: {f['statistics_count'] if f['statistics_count'] is not None else 'not recorded'} images"
    )
    if f["meta"]:
        meta = {k: v for k, v in f["meta"].items() if k != "versions"}
        console.print("  provenance: " + ", ".join(f"{k}={v}" for k, v in meta.items()), soft_wrap=True)
    for c in f["checks"]:
        mark = "[green]ok[/]" if c["ok"] else "[bold red]FAIL[/]"
        console.print(f"  {mark} {c['check']}" + (f" ({c['detail']})" if c["detail"] else ""))


def register(app: typer.Typer) -> None:
    ref = typer.Typer(
        help="Reference statistics: a registry of named references; list, show, fetch, build. " + CACHE_HELP,
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    app.add_typer(ref, name="ref", short_help="Named reference statistics: list, show, fetch, build.")

    @ref.command(
        "list",
        short_help="Registry entries and built references: cached or not.",
        help="Every registry entry and every reference built into the cache. " + CACHE_HELP,
    )
    def list_() -> None:
        from diffit_eval.references.inspect import list_references

        print_list(list_references())

    @ref.command(
        "show",
        short_help="Keys, shapes, provenance and sanity of a reference.",
        help="Keys, shapes, dtypes, image count, provenance and sanity checks of a reference "
        "(registry name or npz path). A cached file's sha256 is checked; nothing is downloaded. "
        "Exit 1 when a sanity check fails.",
    )
    def show(spec: str = typer.Argument(..., metavar="NAME|PATH")) -> None:
        from diffit_eval.errors import UserError
        from diffit_eval.references.inspect import show_reference

        report = show_reference(spec)
        print_show(report)
        if report["file"] is not None and not report["file"]["ok"]:
            raise UserError(f"{spec}: sanity checks failed (see above)")

    @ref.command(
        "fetch",
        short_help="Download (or verify) a registry reference in the cache.",
        help="Download a registry reference into the cache (resumable, verified, renamed into "
        "place only when complete), or verify it if already there. " + CACHE_HELP,
    )
    def fetch(
        name: str = typer.Argument(..., metavar="NAME", help="A name from `diffit-eval ref list`."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        from diffit_eval.references.registry import fetch_reference, read_record

        path, what = fetch_reference(name, progress=not quiet)
        typer.echo(f"{name}: {what}: {path} (sha256 {(read_record(name) or {}).get('sha256', '?')})")

    @ref.command(
        "build",
        short_help="Compute a reference from an image folder, zip or npz.",
        help="Compute a reference (mu, sigma, mu_s, sigma_s, arr_0 P/R images, meta; with --dinov2 "
        "also mu_dinov2, sigma_dinov2) from a dataset. Runs under torchrun to split the work; the file does not depend on the "
        "number of processes. " + CACHE_HELP,
    )
    def build(
        data: Path = typer.Argument(
            ...,
            metavar="DATA",
            help="Image folder (recursive; class subfolders fine), zip of images, or npz with arr_0.",
        ),
        name: str = typer.Option(..., "--name", help="Reference name; `--ref NAME` finds it in the cache."),
        resolution: int = typer.Option(..., "--resolution", help="Square size of the preprocessed images."),
        crop: str = typer.Option(
            "adm",
            "--crop",
            help="adm (ADM center_crop_arr), edm (EDM dataset_tool center-crop: "
            "largest centred square, LANCZOS) or none (images already RxR).",
        ),
        dataset: Optional[str] = typer.Option(
            None, "--dataset", help="Dataset name recorded in the metadata (default: --name)."
        ),
        resize: str = options.resize(),
        pr_images: int = typer.Option(
            10_000, "--pr-images", help="Images kept in arr_0 for precision/recall (0: none)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed choosing the P/R images."),
        out: Optional[Path] = typer.Option(
            None, "--out", help="Write here instead of the cache (then pass --ref PATH)."
        ),
        inception_weights: Optional[str] = options.inception_weights(),
        network: str = options.network(),
        dinov2: bool = typer.Option(
            False,
            "--dinov2",
            help="Also store DINOv2 ViT-L/14 statistics (mu_dinov2, sigma_dinov2) for `metrics --metrics "
            "fd_dinov2`; --dinov2-weights implies it.",
        ),
        dinov2_weights: Optional[str] = options.dinov2_weights(),
        device: Optional[str] = options.device(),
        batch_size: Optional[int] = options.feature_batch_size(),
        chunk_size: int = typer.Option(
            1000,
            "--chunk-size",
            min=1,
            help="Images per partial float64 sum; the file depends on it and on --batch-size, not on the process count.",
        ),
        workers: int = typer.Option(4, "--workers", min=0, help="Threads decoding and cropping images (0: none)."),
        no_download: bool = options.no_download(),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        from diffit_eval.cli import command_line
        from diffit_eval.errors import Interrupted
        from diffit_eval.references.build import build_reference

        try:
            path = build_reference(
                data,
                name=name,
                resolution=resolution,
                crop=crop,
                dataset=dataset,
                resize=resize,
                pr_images=pr_images,
                seed=seed,
                out=out,
                weights=inception_weights,
                dinov2=dinov2,
                dinov2_weights=dinov2_weights,
                network=network,
                device=device,
                batch_size=batch_size,
                chunk_size=chunk_size,
                workers=workers,
                allow_download=not no_download,
                progress=not quiet,
            )
        except Interrupted as e:
            raise Interrupted(f"{e}; run again: {command_line()}") from None
        except KeyboardInterrupt:  # while the weights or the images were being opened
            raise Interrupted(
                f"before any image went through the network; nothing was written; run again: {command_line()}"
            ) from None
        from diffit_eval.distributed import env_rank

        if env_rank() == 0:  # under torchrun every rank returns the path; say it once
            typer.echo(f"{name}: wrote {path}")
