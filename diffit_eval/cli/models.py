"""`diffit-eval models`: the model presets, their sizes, default samplers and checkpoint sources."""

from __future__ import annotations

import typer

# (trainable, frozen) parameters of each preset, as diffit.models.parameter_count gives them; kept
# here because counting builds the 560M-parameter networks (~6 s, 800 MB) to print a static list.
# tests/test_cli_errors.py checks every entry against parameter_count.
PARAMETER_COUNTS = {
    "latent-256": (561_035_232, 294_912),
    "latent-512": (562_382_816, 1_179_648),
    "cifar10": (15_935_395, 0),
    "ffhq64": (23_853_615, 0),
    "latent-tiny": (74_596, 512),
    "cifar10-tiny": (625_779, 0),
    "digits": (625_779, 0),
    "digits-cond": (625_905, 0),
}


def models_table():
    """A rich Table of every preset (parameter counts from PARAMETER_COUNTS; nothing is built)."""
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
        trainable, _ = PARAMETER_COUNTS[name] if name in PARAMETER_COUNTS else parameter_count(name)
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
        help="List the model presets: parameters, resolution, default sampler and steps, "
        "guidance, checkpoint source and licence.",
    )
    def models() -> None:
        from rich.console import Console

        console = Console()
        Console(width=console.width if console.is_terminal else max(console.width, 120)).print(models_table())
