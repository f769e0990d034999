"""`diffit-eval sweep`: one sampling option over a list of values, each point an ordinary run folder
scored against one reference; `sweep.json`, a Table-S.1-shaped table and `sweep.png` (docs/SWEEP.md).

What users of the field do by hand (DiT and EDM2 sweep the guidance scale, EDM2 plots FID against
training length) as one resumable command: point i is `sample` with the varied option set to
value i into `DIR/<option>-<value>` (features kept), then `metrics` of that folder into its
`metrics.json`. Every point is planned before any is sampled, so a value the sampler refuses
fails in one line before any work. A point whose run folder is complete and whose metrics.json
was made with the same reference and options is reused as it is; a half-finished one resumes.
Under torchrun every rank samples its share of each point; rank 0 scores it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diffit_eval import distributed
from diffit_eval.assets.cache import atomic_path, write_json_atomic
from diffit_eval.errors import UserError
from diffit_eval.generate.sample import SampleConfig
from diffit_eval.protocol import ALL_METRIC_KEYS, CI_SUFFIX, DEFAULT_NETWORK, DEFAULT_RESIZE

SWEEP_FORMAT = "diffit-eval-sweep/1"
SWEEP_JSON, SWEEP_TABLE, SWEEP_PNG, POINT_METRICS = "sweep.json", "sweep.md", "sweep.png", "metrics.json"


def _number(kind: type):
    def parse(text: str):
        value = kind(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value

    return parse


# --vary NAME -> (SampleConfig field, value parser, axis label). One entry per option a sweep may vary.
VARIABLES: dict[str, tuple[str, Any, str]] = {
    "cfg-scale": ("cfg_scale", _number(float), "guidance scale"),
    "steps": ("steps", _number(int), "sampler steps"),
    "ckpt": ("ckpt", str, "training kimg"),
}


def parse_vary(text: str) -> tuple[str, list]:
    """`cfg-scale=1,1.5,2` -> ("cfg-scale", [1.0, 1.5, 2.0]); one line naming what was typed otherwise."""
    name, eq, values = str(text).partition("=")
    name = name.strip()
    if not eq:
        raise UserError(f"--vary {text!r}: expected OPTION=V1,V2,... (options: {', '.join(VARIABLES)})")
    if name not in VARIABLES:
        raise UserError(f"--vary {text!r}: unknown option {name!r}; a sweep varies one of {', '.join(VARIABLES)}")
    parts = [v.strip() for v in values.split(",")]
    if not values.strip() or any(not v for v in parts):
        raise UserError(f"--vary {text!r}: empty value in the list; give values like {name}=1,2,3")
    _, parse, _ = VARIABLES[name]
    parsed = []
    for v in parts:
        try:
            parsed.append(parse(v))
        except ValueError:
            raise UserError(f"--vary {text!r}: {v!r} is not a valid {name} value") from None
    if len(set(parsed)) != len(parsed):
        raise UserError(f"--vary {text!r}: a value is repeated")
    return name, parsed


def point_name(option: str, value) -> str:
    """The point's folder under DIR: cfg-scale-1.5, steps-18, ckpt-network-snapshot-000064."""
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if option == "ckpt":
        shown = Path(shown).name.removesuffix(".safetensors").removesuffix(".pt")
    return f"{option}-{re.sub(r'[^A-Za-z0-9._-]+', '_', shown)}"


def axis_value(option: str, value, index: int) -> float:
    """The x of a point: the value itself; for a checkpoint its training kimg when the name says it
    (EDM's network-snapshot-KIMG), else its position in the list."""
    if option != "ckpt":
        return float(value)
    m = re.search(r"snapshot-(\d+)", Path(str(value)).name)
    return float(m.group(1)) if m else float(index)


@dataclass
class SweepConfig:
    """Everything `diffit-eval sweep` takes: the varied option, the sampling base and the scoring."""

    vary: str  # OPTION=V1,V2,...
    base: SampleConfig  # every other sampling option (its `out` is ignored: points live under `out`)
    ref: str  # reference for every point (name, statistics npz or images)
    out: str | Path  # the sweep folder
    metrics: str | None = None  # as `metrics --metrics`; None: the ADM set
    network: str = DEFAULT_NETWORK
    bootstrap: int | None = None
    resize: str = DEFAULT_RESIZE
    inception_weights: str | None = None
    verbose: bool = True


def _scoring(config: SweepConfig) -> dict:
    """What a point's metrics.json must have been made with to be reused."""
    return {
        "ref": config.ref,
        "metrics": config.metrics,
        "network": config.network,
        "bootstrap": config.bootstrap,
        "resize": config.resize,
    }


def plan_sweep(config: SweepConfig) -> tuple[str, list[tuple[Any, SampleConfig, Any]], str | None]:
    """(option, every point's value, SampleConfig and RunPlan, the Inception weights every point uses),
    checked before anything is sampled (rank 0's work)."""
    from diffit_eval.generate.plan import plan_run
    from diffit_eval.metrics.evaluate import parse_metrics

    option, values = parse_vary(config.vary)
    field_name = VARIABLES[option][0]
    parse_metrics(config.metrics)  # an unknown metric is one line now, not after sampling
    ref_path = Path(config.ref).expanduser()
    if not ref_path.exists():
        from diffit_eval.references import registry as refs

        if not refs.is_registry_name(config.ref):
            raise UserError(
                f"--ref {config.ref}: no such file or folder, nor a reference name (`diffit-eval ref list`)"
            )
    keep = config.network == "inception"  # the points' Inception rows are what `metrics` replays
    weights = config.inception_weights
    if keep:
        from diffit_eval.assets.inception import resolve_inception_weights

        # Resolved once (one fallback line, not one per point); every point and its scoring use this file.
        weights = str(resolve_inception_weights(weights))
    points = []
    for value in values:
        sc = replace(
            config.base,
            **{field_name: value},
            out=Path(config.out) / point_name(option, value),
            features=keep,
            inception_weights=weights if keep else None,
            verbose=False,
        )
        try:
            plan, _ = plan_run(sc)
        except UserError as e:
            raise UserError(f"--vary {option}={value}: {e}", e.code) from None
        points.append((value, sc, plan))
    return option, points, weights


def _reusable(plan, scoring: dict) -> dict | None:
    """The point's metrics record when its run is complete, unchanged and scored the same way."""
    from diffit_eval.generate import shards

    metrics_path = plan.run_dir / POINT_METRICS
    if not (metrics_path.is_file() and (plan.run_dir / shards.MANIFEST).is_file()):
        return None
    try:
        manifest = shards.read_manifest(plan.run_dir)
        record = json.loads(metrics_path.read_text())
    except (UserError, ValueError, OSError):
        return None
    same_images = manifest.get("complete") and manifest.get("config") == plan.manifest["config"]
    return record if same_images and record.get("sweep") == scoring else None


def _score(config: SweepConfig, plan, label: str, weights: str | None) -> dict:
    from diffit_eval.metrics.evaluate import parse_metrics, run_metrics

    record = run_metrics(
        str(plan.run_dir),
        config.ref,
        metrics=parse_metrics(config.metrics),
        weights=weights,
        device=config.base.device,
        batch_size=None,
        resize=config.resize,
        label=label,
        progress=config.verbose,
        bootstrap=config.bootstrap,
        network=config.network,
    )
    record["sweep"] = _scoring(config)
    write_json_atomic(plan.run_dir / POINT_METRICS, record)
    return record


def run_sweep(config: SweepConfig) -> Path | None:
    """Sample and score every point (reusing finished ones); rank 0 writes the sweep's files and returns the folder."""
    from diffit_eval.generate.execute import COLLECTIVE_TIMEOUT, generate

    d = distributed.init(config.base.device, timeout=COLLECTIVE_TIMEOUT)
    (option, points, weights), _ = distributed.main_then_broadcast(lambda: (plan_sweep(config), None), d)
    scoring = _scoring(config)
    rows = []
    for i, (value, sc, plan) in enumerate(points):
        label = f"{plan.preset} {option}={point_name(option, value)[len(option) + 1 :]}"
        reused = _reusable(plan, scoring) if d.is_main else None
        reused = distributed.broadcast_object(reused, d)
        if reused is None:
            if d.is_main and config.verbose:
                print(f"diffit-eval: sweep point {i + 1}/{len(points)}: {label}", file=sys.stderr)
            generate(replace(sc, verbose=config.verbose))
            record = _score(config, plan, label, weights) if d.is_main else None
            distributed.barrier(d)
        else:
            record = reused
            if d.is_main and config.verbose:
                print(f"diffit-eval: sweep point {i + 1}/{len(points)}: {label} (reused)", file=sys.stderr)
        if d.is_main:
            rows.append(_row(option, value, i, plan, record))
    if not d.is_main:
        return None
    return write_sweep(Path(config.out), option, rows, config)


def _row(option: str, value, index: int, plan, record: dict) -> dict:
    row = {"option": option, "value": value, "x": axis_value(option, value, index)}
    row["run"] = str(plan.run_dir)
    row["metrics_json"] = str(plan.run_dir / POINT_METRICS)
    for key in ALL_METRIC_KEYS:
        if key in record:
            row[key] = record[key]
        if key + CI_SUFFIX in record:
            row[key + CI_SUFFIX] = record[key + CI_SUFFIX]
    row["num_samples"] = record.get("num_samples")
    row["unavailable"] = record.get("unavailable", {})
    return row


def best_row(rows: list[dict]) -> dict | None:
    """The point with the lowest FID (the quantity a sweep is usually run to minimise)."""
    scored = [r for r in rows if r.get("fid") is not None]
    return min(scored, key=lambda r: r["fid"]) if scored else None


def write_sweep(out: Path, option: str, rows: list[dict], config: SweepConfig) -> Path:
    """sweep.json (rows and the best point), sweep.md (the table) and sweep.png."""
    from diffit_eval.report.render import render

    best = best_row(rows)
    doc = {
        "format": SWEEP_FORMAT,
        "option": option,
        "vary": config.vary,
        "reference": config.ref,
        "network": config.network,
        "best": None if best is None else {"value": best["value"], "fid": best["fid"]},
        "rows": rows,
    }
    write_json_atomic(out / SWEEP_JSON, doc)
    with atomic_path(out / SWEEP_TABLE) as tmp:
        tmp.write_text(render(sweep_table(rows, option), "md"))
    plot_sweep(rows, option, out / SWEEP_PNG)
    return out


def sweep_table(rows: list[dict], option: str):
    """The points as Table S.1 rows (one column group: the points' resolution), relative to the best point."""
    from dataclasses import replace as with_

    from diffit_eval.report.table import View, build_table, load_measured, load_published

    measured, _ = load_measured([r["metrics_json"] for r in rows])
    resolution = measured[0].resolution or 0
    measured = [with_(m, dataset="sweep", resolution=resolution) for m in measured]
    best = best_row(rows)
    baseline = measured[rows.index(best) if best is not None else 0].label
    metrics = tuple(m for m in ("fid", "sfid", "is", "precision", "recall") if any(r.get(m) is not None for r in rows))
    view = View(f"Sweep of {option}", "sweep", "sweep", baseline, metrics or ("fid",), (resolution,))
    return build_table(load_published(), measured, view=view)


def plot_sweep(rows: list[dict], option: str, png: Path) -> Path:
    """FID against the value (best point ringed) above precision and recall against the value."""
    from PIL import Image, ImageDraw

    from diffit_eval.plot import BLUE, GREEN, ORANGE, line_panel

    w, h, (left, top, right, bottom) = 720, 300, (64, 24, 24, 40)
    img = Image.new("RGB", (w, 2 * h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    xs = [r["x"] for r in rows]
    best = best_row(rows)
    x_label = VARIABLES[option][2]
    line_panel(
        draw,
        (left, top, w - right, h - bottom),
        xs,
        [("FID", [r.get("fid") for r in rows], BLUE)],
        f"FID against {option} (lower is better)",
        x_label=x_label,
        mark=None if best is None else best["x"],
    )
    line_panel(
        draw,
        (left, h + top, w - right, 2 * h - bottom),
        xs,
        [("precision", [r.get("precision") for r in rows], ORANGE), ("recall", [r.get("recall") for r in rows], GREEN)],
        f"precision and recall against {option}",
        x_label=x_label,
    )
    with atomic_path(png) as tmp:
        img.save(tmp, format="PNG")
    return png
