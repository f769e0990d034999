"""`diffit-eval models`: the model presets, their sizes, default samplers and checkpoint sources."""

from __future__ import annotations

import typer


def models_table():
    """A rich Table of every preset; parameters are counted on the meta device, so nothing is allocated."""
    from rich.table import Table

    from diffit.checkpoint import CHECKPOINTS
    from diffit.models import MODEL_PRESETS, parameter_count

    notes = "\n".join(f"{name}: {c.url}" for name, c in CHECKPOINTS.items())
    table = Table(title="DiffiT model presets", title_justify="left", caption_justify="left", caption=(
        "parameters: trainable (latent models also hold a frozen sin-cos position table).\n"
        "Checkpoints are downloaded on request into the cache, never shipped:\n" + notes))
    table.add_column("name", no_wrap=True)
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("resolution", justify="right")
    table.add_column("sampler")
    table.add_column("guidance")
    table.add_column("checkpoint")
    table.add_column("licence")
    for name, p in MODEL_PRESETS.items():
        trainable, _ = parameter_count(name)
        label = name + "".join(f"\n(alias {a})" for a in p.aliases)
        if p.guidance is None:
            guidance = "-"
        elif p.guidance.ramp == "constant":
            guidance = f"{p.guidance.scale:g} constant"
        else:
            guidance = f"{p.guidance.scale:g} {p.guidance.ramp} ^{p.guidance.power:g}"
        resolution = f"{p.resolution}px" + (f" (z {p.latent_size})" if p.latent_size else "")
        table.add_row(label, f"{trainable:,}", resolution, f"{p.sampler} {p.steps}", guidance,
                      p.checkpoint or "-", p.licence)
    return table


def register(app: typer.Typer) -> None:
    @app.command("models", help="List the model presets: parameters, resolution, default sampler and steps, "
                                "guidance, checkpoint source and licence.")
    def models() -> None:
        from rich.console import Console

        Console().print(models_table())
