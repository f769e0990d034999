"""`diffit-eval models`: the model presets, their sizes, default samplers and checkpoint sources."""

from __future__ import annotations

import typer


def models_table():
    """A rich Table of every preset; parameters are counted on the meta device, so nothing is allocated."""
    from rich.table import Table

    from diffit.checkpoint import CHECKPOINTS
    from diffit.models import MODEL_PRESETS, parameter_count

    table = Table(title="DiffiT model presets", title_justify="left")
    for column, justify in (("name", "left"), ("kind", "left"), ("parameters", "right"), ("resolution", "right"),
                            ("sampler", "left"), ("guidance", "left"), ("checkpoint", "left"), ("licence", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for name, p in MODEL_PRESETS.items():
        trainable, frozen = parameter_count(name)
        params = f"{trainable:,}" + (f"\n+ {frozen:,} frozen" if frozen else "")
        label = name + "".join(f"\n(alias: {a})" for a in p.aliases)
        if p.guidance is None:
            guidance = "-"
        elif p.guidance.ramp == "constant":
            guidance = f"s = {p.guidance.scale:g}, constant"
        else:
            guidance = f"s = {p.guidance.scale:g}, {p.guidance.ramp} ramp, power {p.guidance.power:g}"
        if p.checkpoint is None:
            source = "none"
        else:
            source = f"{p.checkpoint}\n{CHECKPOINTS[p.checkpoint].url}"
        resolution = f"{p.resolution}px" + (f"\n(latent {p.latent_size})" if p.latent_size else "")
        table.add_row(label, p.kind, params, resolution, f"{p.sampler} {p.steps} steps", guidance, source, p.licence)
    return table


def register(app: typer.Typer) -> None:
    @app.command("models", help="List the model presets: parameters, resolution, default sampler and steps, "
                                "guidance, checkpoint source and licence.")
    def models() -> None:
        from rich.console import Console

        Console().print(models_table())
