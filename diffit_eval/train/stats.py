"""stats.jsonl (one JSON line per tick) and loss.png (loss, and FID when measured, against kimg).

The plot is drawn with PIL, already a dependency, so training needs no plotting library.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from diffit_eval.assets.cache import atomic_path

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


def _panel(draw, box, xs, ys, title: str, log_y: bool) -> None:
    from PIL import ImageFont

    font = ImageFont.load_default()
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, y0 - 16), title, fill=(0, 0, 0), font=font)
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and (y > 0 or not log_y)]
    if not pts:
        draw.text((x0 + 8, y0 + 8), "no data yet", fill=(120, 120, 120), font=font)
        return
    fy = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xmin, xmax = min(p[0] for p in pts), max(p[0] for p in pts)
    ymin, ymax = min(fy(p[1]) for p in pts), max(fy(p[1]) for p in pts)
    xmax, ymax = (xmax if xmax > xmin else xmin + 1), (ymax if ymax > ymin else ymin + 1e-6)

    def at(x, y):
        return (x0 + (x - xmin) / (xmax - xmin) * (x1 - x0), y1 - (fy(y) - ymin) / (ymax - ymin) * (y1 - y0))

    for frac in (0, 0.5, 1):  # axis labels: min, middle, max
        yv = ymin + frac * (ymax - ymin)
        label = f"{10**yv:.4g}" if log_y else f"{yv:.4g}"
        draw.text((4, y1 - frac * (y1 - y0) - 6), label, fill=(0, 0, 0), font=font)
        xv = xmin + frac * (xmax - xmin)
        draw.text((x0 + frac * (x1 - x0) - 12, y1 + 6), f"{xv:.4g}", fill=(0, 0, 0), font=font)
    draw.text(((x0 + x1) / 2 - 12, y1 + 20), "kimg", fill=(0, 0, 0), font=font)
    line = [at(x, y) for x, y in pts]
    if len(line) > 1:
        draw.line(line, fill=(31, 119, 180), width=2)
    for p in line:
        draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=(31, 119, 180))


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
    _panel(
        draw,
        (left, top, w - right, h - bottom),
        [e["kimg"] for e in entries],
        [e.get("loss") for e in entries],
        "training loss (EDM-weighted, mean per element)",
        log_y=True,
    )
    if fid:
        _panel(
            draw,
            (left, h + top, w - right, 2 * h - bottom),
            [k for k, _ in fid],
            [v for _, v in fid],
            "FID of EMA samples",
            log_y=False,
        )
    with atomic_path(png_path) as tmp:
        img.save(tmp, format="PNG")
    return png_path
