"""`diffit-eval weights fetch NAME` / `weights list`: network weights in the cache, on purpose."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    weights = typer.Typer(
        help="Fetch network weights into the cache (Inception, DiffiT checkpoints, VAEs).", no_args_is_help=True
    )
    app.add_typer(weights, name="weights")

    @weights.command("list", help="The names `weights fetch` takes, with their URLs.")
    def list_() -> None:
        from diffit_eval.assets.weights import registry

        for name, w in registry().items():
            typer.echo(f"{name:16s} {w.what}\n{'':16s} {w.url}  (offline: {w.alternative})")

    @weights.command("fetch", help="Download NAME into the cache (see `weights list`); prints its local path.")
    def fetch(
        name: str = typer.Argument(..., help="inception | diffit-256 | diffit-512 | sd-vae-ft-ema | sd-vae-ft-mse"),
    ) -> None:
        from diffit_eval.assets.weights import fetch as fetch_weights

        typer.echo(str(fetch_weights(name)))
