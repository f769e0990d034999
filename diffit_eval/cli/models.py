"""`diffit-eval models`: the model presets, their sizes, default samplers and checkpoint sources."""

from __future__ import annotations

import typer


def models_table():
    """A rich Table of every preset (parameter counts by `parameter_count`, which builds each network
    on the meta device: no memory, no weights, under a second for all of them)."""
    from rich.table import Table

    from diffit.checkpoint import CHECKPOINTS
    from diffit.models import MODEL_PRESETS, parameter_count

    licences: dict[str, list[str]] = {}
    for name, p in MODEL_PRESETS.items():
        licences.setdefault(p.licence, []).append(name)
    notes = [f"  {name}:\n    {c.url}" for name, c in CHECKPOINTS.items()]
    table = Table(
        title="DiffiT model presets",
        title_justify="left",
        caption_justify="left",
        caption="\n".join(
            [
                "parameters: trainable (latent models also hold a frozen sin-cos position table).",
                "Checkpoints are downloaded on request into the cache, never shipped:",
                *notes,
                "Licences:",
                *(f"  {', '.join(names)}: {lic}" for lic, names in licences.items()),
            ]
        ),
    )
    table.add_column("name", no_wrap=True)
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("resolution", justify="right", no_wrap=True)
    table.add_column("sampler, guidance", min_width=14)
    table.add_column("checkpoint", no_wrap=True)
    for name, p in MODEL_PRESETS.items():
        trainable, _ = parameter_count(name)
        label = name + "".join(f"\n(alias {a})" for a in p.aliases)
        if p.guidance is None:
            guidance = ""
        elif p.guidance.ramp == "constant":
            guidance = f"\ncfg {p.guidance.scale:g} constant"
        else:
            guidance = f"\ncfg {p.guidance.scale:g} {p.guidance.ramp} ^{p.guidance.power:g}"
        resolution = f"{p.resolution}px" + (f"\nlatent {p.latent_size}" if p.latent_size else "")
        table.add_row(label, f"{trainable:,}", resolution, f"{p.sampler} {p.steps}{guidance}", p.checkpoint or "-")
    return table


def register(app: typer.Typer) -> None:
    @app.command(
        "models",
        short_help="List the model presets: sizes, samplers, checkpoints.",
        help="List the model presets: parameters, resolution, default sampler and steps, "
        "guidance, checkpoint source and licence.",
    )
    def models() -> None:
        from diffit_eval.console import console

        console().print(models_table())
