"""stats.jsonl (one JSON line per tick) and loss.png (loss, and FID when measured, against kimg,
drawn by :func:`diffit_eval.plot.line_panel`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from diffit_eval.assets.cache import atomic_path
from diffit_eval.plot import BLUE, line_panel

PLOT_SIZE = (720, 360)  # width, height of each panel in pixels
MARGIN = (64, 24, 24, 40)  # left, top, right, bottom


def append(path: Path, entry: dict) -> None:
    """Append one line and flush it to disk, so a killed run keeps every finished tick."""
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line cut short by a kill
            continue
    return out


def truncate_after(path: Path, nimg: int) -> None:
    """Drop the lines of ticks after `nimg` (written by a run killed after its last training state)."""
    if not Path(path).is_file():
        return
    kept = [e for e in read(path) if e.get("nimg", 0) <= nimg]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(e) + "\n" for e in kept))


def plot(stats_path: Path, png_path: Path) -> Path:
    """loss.png: the training loss (log scale) against kimg, and below it the FID when any was measured."""
    from PIL import Image, ImageDraw

    entries = read(stats_path)
    fid = [(e["kimg"], e["fid"]) for e in entries if e.get("fid") is not None]
    panels = 2 if fid else 1
    w, h = PLOT_SIZE
    img = Image.new("RGB", (w, h * panels), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = MARGIN
    line_panel(
        draw,
        (left, top, w - right, h - bottom),
        [e["kimg"] for e in entries],
        [("loss", [e.get("loss") for e in entries], BLUE)],
        "training loss (EDM-weighted, mean per element)",
        log_y=True,
    )
    if fid:
        line_panel(
            draw,
            (left, h + top, w - right, 2 * h - bottom),
            [k for k, _ in fid],
            [("FID", [v for _, v in fid], BLUE)],
            "FID of EMA samples",
        )
    with atomic_path(png_path) as tmp:
        img.save(tmp, format="PNG")
    return png_path
