"""`diffit-eval weights fetch NAME`: download a network's weights into the cache on purpose."""

from __future__ import annotations

import typer

from diffit_eval.errors import UserError


def register(app: typer.Typer) -> None:
    weights = typer.Typer(help="Fetch network weights into the cache (Inception, DiffiT checkpoints).", no_args_is_help=True)
    app.add_typer(weights, name="weights")

    @weights.command("fetch", help="Download `inception`, `diffit-256` or `diffit-512` into the cache.")
    def fetch(name: str = typer.Argument(..., help="inception | diffit-256 | diffit-512")) -> None:
        if name == "inception":
            from diffit_eval.features import resolve_inception_weights

            path = resolve_inception_weights(None)
        else:
            from diffit.checkpoint import CHECKPOINTS, fetch_checkpoint

            if name not in CHECKPOINTS:
                raise UserError(f"unknown weights {name!r}; choose inception, {', '.join(CHECKPOINTS)}")
            path = fetch_checkpoint(name)
        typer.echo(str(path))
