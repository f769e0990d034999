"""Line plots drawn with PIL (already a dependency), so no plotting library is needed: the
training run's loss.png and the sweep's sweep.png share this one panel."""

from __future__ import annotations

import math
from collections.abc import Sequence

BLUE, ORANGE, GREEN, RED = (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)


def line_panel(
    draw,
    box: tuple[float, float, float, float],
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float | None], tuple[int, int, int]]],  # (name, ys, colour)
    title: str,
    *,
    log_y: bool = False,
    x_label: str = "kimg",
    mark: float | None = None,  # an x to mark (the best point), drawn as a red ring on the first series
) -> None:
    """One framed panel: each series as a line with dots, three axis labels per axis, a legend."""
    from PIL import ImageFont

    font = ImageFont.load_default()
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0, y0 - 16), title, fill=(0, 0, 0), font=font)

    def usable(y) -> bool:
        return y is not None and math.isfinite(y) and (y > 0 or not log_y)

    pts = [(x, y) for _, ys, _ in series for x, y in zip(xs, ys) if usable(y)]
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
    draw.text(((x0 + x1) / 2 - 12, y1 + 20), x_label, fill=(0, 0, 0), font=font)
    for i, (name, ys, colour) in enumerate(series):
        line = [at(x, y) for x, y in zip(xs, ys) if usable(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for p in line:
            draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=colour)
        if len(series) > 1:  # legend, top right
            draw.text((x1 - 90, y0 + 6 + 12 * i), f"-- {name}", fill=colour, font=font)
    if mark is not None:
        _, ys, _ = series[0]
        for x, y in zip(xs, ys):
            if x == mark and usable(y):
                px, py = at(x, y)
                draw.ellipse((px - 6, py - 6, px + 6, py + 6), outline=RED, width=2)
                draw.text((px + 8, py - 14), "best", fill=RED, font=font)
