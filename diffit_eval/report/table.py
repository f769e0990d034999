"""Table S.1 and its neighbours: published rows from `results/published.csv` beside measured rows.

Published values stay the strings they were typed as (`0.80` never becomes `0.8`), so a CSV
rendering reproduces the sources digit for digit; only measured values are formatted. A view
(`VIEWS`) names the dataset, the source whose rows it shows and the default baseline, so a new
layout is a table entry rather than another branch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from diffit_eval.errors import UserError
from diffit_eval.protocol import ALL_METRIC_KEYS, CI_SUFFIX, METRIC_KEYS
from diffit_eval.shipped import shipped_dir

RESULTS_DIR = shipped_dir("results")
PUBLISHED_CSV = RESULTS_DIR / "published.csv"

# The nine columns every consumer may rely on, in this order; `notes` may follow.
PUBLISHED_COLUMNS = ("model", "dataset", "resolution", "fid", "sfid", "is", "precision", "recall", "source")

# Where each `source` key in published.csv comes from (docs/PROTOCOL.md, "Published numbers" and "Regression values").
SOURCES: dict[str, str] = {
    "appendix-table-s1": "DiffiT appendix, Table S.1",
    "paper-table-1": "DiffiT paper, Table 1 (ImageNet, class-conditional)",
    "paper-table-2": "DiffiT paper, Table 2 (image space, unconditional)",
    "diffit-readme": "official DiffiT README (unrounded run)",
    "adm-evaluator": "ADM evaluator (TensorFlow) on OpenAI's published sample batches",
    "adm-evaluator-pytorch-port": "PyTorch port of the ADM evaluator on the same sample batch",
    "diffit-eval-digits": "this project: the shipped digits DiffiT on InceptionV3 pool_3 (regress --suite digits)",
}

METRIC_HEADERS = {
    "fid": "FID ↓",
    "sfid": "sFID ↓",
    "is": "IS ↑",
    "precision": "Precision ↑",
    "recall": "Recall ↑",
    "kid": "KID ↓",
    "fd_dinov2": "FD_DINOv2 ↓",
    "density": "Density ↑",
    "coverage": "Coverage ↑",
    "fid_inf": "FID_∞ ↓",
    "is_inf": "IS_∞ ↑",
    "dfid": "ΔFID",
}
# Measured values only: enough digits to see a regression, no more.
DISPLAY_DECIMALS = {
    "fid": 3,
    "sfid": 3,
    "is": 2,
    "precision": 4,
    "recall": 4,
    "kid": 5,
    "fd_dinov2": 2,
    "density": 4,
    "coverage": 4,
    "fid_inf": 3,
    "is_inf": 2,
}
MISSING = "-"

DATASET_TITLES: dict[str, Callable[[int], str]] = {
    "imagenet": lambda r: f"ImageNet-{r}",
    "cifar10": lambda r: f"CIFAR-10 {r}×{r}",
    "ffhq": lambda r: f"FFHQ-{r}",
}

DFID_FORMULA = "ΔFID = (FID − FID_baseline) / FID_baseline × 100%"


@dataclass(frozen=True)
class View:
    """One table layout: which dataset, whose rows, which metrics, relative to which row."""

    title: str
    dataset: str
    source: str
    baseline: str
    metrics: tuple[str, ...]
    resolutions: tuple[int, ...]


VIEWS: dict[str, View] = {
    "s1": View(
        "Table S.1: ImageNet class-conditional generation, FID-50K",
        "imagenet",
        "appendix-table-s1",
        "DiT-XL/2-G",
        ("fid", "is", "precision", "recall"),
        (256, 512),
    ),
    "imagenet": View(
        "Table 1: ImageNet class-conditional generation, FID-50K",
        "imagenet",
        "paper-table-1",
        "DiT-XL/2-G",
        ("fid", "is", "precision", "recall"),
        (256, 512),
    ),
    "cifar10": View(
        "Table 2: CIFAR-10 unconditional generation, FID-50K", "cifar10", "paper-table-2", "EDM (VP)", ("fid",), (32,)
    ),
    "ffhq64": View(
        "Table 2: FFHQ-64 unconditional generation, FID-50K", "ffhq", "paper-table-2", "EDM (VP)", ("fid",), (64,)
    ),
}
VIEW_ALIASES = {"table-s1": "s1", "ffhq": "ffhq64", "ffhq-64": "ffhq64", "cifar-10": "cifar10"}

# Measured JSONs name datasets loosely ("ffhq64", "ImageNet-256"); the table files them by family.
_DATASET_FAMILIES = {"imagenet": "imagenet", "cifar10": "cifar10", "cifar": "cifar10", "ffhq": "ffhq"}


def canonical_dataset(name: str) -> str | None:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key in _DATASET_FAMILIES:
        return _DATASET_FAMILIES[key]
    return _DATASET_FAMILIES.get(re.sub(r"\d+$", "", key))


def resolve_view(name: str | None) -> View:
    key = VIEW_ALIASES.get((name or "s1").lower(), (name or "s1").lower())
    if key not in VIEWS:
        raise UserError(f"unknown --dataset {name!r}; choose one of {', '.join(VIEWS)}")
    return VIEWS[key]


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """The published rows, every cell a string exactly as written (empty = not reported)."""
    path = Path(path) if path else PUBLISHED_CSV
    if not path.is_file():
        raise UserError(f"published table not found: {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in PUBLISHED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(df["source"]) - set(SOURCES))
    if unknown:
        raise UserError(
            f"{path} has unknown source(s) {', '.join(unknown)}; add them to diffit_eval.report.table.SOURCES"
        )
    return df


@dataclass(frozen=True)
class Measured:
    """One `metrics --json` file, reduced to what a table row needs."""

    path: Path
    label: str
    dataset: str | None
    resolution: int | None
    values: dict[str, float | None]
    num_samples: int | None
    network: str
    standin: bool
    intervals: dict[str, list[float]] = field(default_factory=dict)  # `<metric>_ci` of a --bootstrap run

    def source_text(self) -> str:
        n = f"{self.num_samples:,} samples" if self.num_samples else "sample count unknown"
        if self.standin:
            return f"measured, STAND-IN network, {n}"
        return f"measured, {n}, {self.network}"


def is_metrics_json(obj: object) -> bool:
    return isinstance(obj, dict) and any(k in obj for k in METRIC_KEYS) and "suite" not in obj


def load_measured(paths: Iterable[str | Path]) -> tuple[list[Measured], list[str]]:
    """Read `metrics --json` files; return the rows and one warning line per skipped file.

    Regression reports and golden files (they carry a `suite` key) are skipped silently, so
    `table results/*.json` works on a results folder that also holds them.
    """
    rows: list[Measured] = []
    warnings: list[str] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise UserError(f"no such results file: {p}")
        try:
            obj = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{p} is not readable JSON ({e})") from None
        if isinstance(obj, dict) and "suite" in obj:
            continue
        if not is_metrics_json(obj):
            warnings.append(f"skipped {p}: not a `diffit-eval metrics --json` file")
            continue
        net = obj.get("feature_network") or {}
        res = obj.get("resolution")
        rows.append(
            Measured(
                path=p,
                label=str(obj.get("label") or p.stem),
                dataset=canonical_dataset(str(obj["dataset"])) if obj.get("dataset") else None,
                resolution=int(res) if res is not None else None,
                values={m: (None if obj.get(m) is None else float(obj[m])) for m in ALL_METRIC_KEYS},
                num_samples=obj.get("num_samples"),
                network=str(net.get("label") or net.get("name") or "feature network unknown"),
                standin=bool(net.get("standin", False)),
                intervals={
                    m: [float(v) for v in obj[m + CI_SUFFIX]]
                    for m in ALL_METRIC_KEYS
                    if isinstance(obj.get(m + CI_SUFFIX), list) and len(obj[m + CI_SUFFIX]) == 2
                },
            )
        )
    return rows, warnings


@dataclass
class Column:
    key: str  # CSV header, e.g. "256_fid"
    group: str  # spanning header, e.g. "ImageNet-256"; "" for the row labels
    header: str  # metric header, e.g. "FID ↓"


@dataclass
class TableResult:
    """A rendered-agnostic table: string cells (exact for published values), columns, notes."""

    title: str
    columns: list[Column]
    exact: pd.DataFrame  # CSV cells: published strings verbatim, measured floats at full precision
    display: pd.DataFrame  # the same cells for people: measured values rounded, gaps as "-"
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _cell_float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def build_table(
    published: pd.DataFrame,
    measured: list[Measured] = (),
    *,
    view: str | View | None = None,
    baseline: str | None = None,
    metrics: Iterable[str] | None = None,
    all_sources: bool = False,
) -> TableResult:
    """Lay out one view: rows = (model, source), column groups = resolutions, cells = metrics."""
    v = view if isinstance(view, View) else resolve_view(view)
    metrics = tuple(metrics) if metrics else v.metrics
    bad = [m for m in metrics if m not in ALL_METRIC_KEYS]
    if bad:
        raise UserError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(ALL_METRIC_KEYS)}")
    warnings: list[str] = []

    pub = published[published["dataset"] == v.dataset]
    if not all_sources:
        pub = pub[pub["source"] == v.source]
    else:  # the view's own source first, the others in the CSV's order
        pub = pd.concat([pub[pub["source"] == v.source], pub[pub["source"] != v.source]])

    # (row label, source text) -> {(resolution, metric): (exact text, display text)}
    rows: dict[tuple[str, str], dict[tuple[int, str], tuple[str, str]]] = {}
    resolutions = set(v.resolutions)
    for rec in pub.to_dict("records"):
        res = int(rec["resolution"])
        resolutions.add(res)
        cells = rows.setdefault((rec["model"], rec["source"]), {})
        for m in METRIC_KEYS:
            cells[(res, m)] = (rec[m], rec[m] or MISSING)
    # Table S.1 repeats Table 1's rows; with every source shown, print such copies once.
    seen: list[tuple[str, dict]] = []
    for key in list(rows):
        if any(model == key[0] and cells == rows[key] for model, cells in seen):
            del rows[key]
        else:
            seen.append((key[0], rows[key]))

    for mrow in measured:
        if mrow.resolution is None:
            warnings.append(f"skipped {mrow.path}: its JSON has no `resolution`")
            continue
        if mrow.dataset is None:  # e.g. metrics of a bare npz: trust the resolution alone
            if mrow.resolution not in v.resolutions:
                warnings.append(
                    f"skipped {mrow.path}: no dataset in its JSON and resolution {mrow.resolution} "
                    f"is not in this view (pick one with --dataset)"
                )
                continue
            warnings.append(f"{mrow.path} names no dataset; shown as {v.dataset}-{mrow.resolution}")
        elif mrow.dataset != v.dataset:
            hint = next((k for k, vv in VIEWS.items() if vv.dataset == mrow.dataset), mrow.dataset)
            warnings.append(f"skipped {mrow.path}: dataset {mrow.dataset} is not in this view (use --dataset {hint})")
            continue
        resolutions.add(mrow.resolution)
        key = (mrow.label, mrow.source_text())
        if any(r == mrow.resolution for r, _ in rows.get(key, {})):
            key = (f"{mrow.label} [{mrow.path.stem}]", key[1])  # two runs of one label at one size
        cells = rows.setdefault(key, {})
        for m, val in mrow.values.items():
            exact = "" if val is None else repr(val)
            shown = MISSING if val is None else f"{val:.{DISPLAY_DECIMALS[m]}f}"
            if val is not None and m in mrow.intervals:  # `1.730 [1.700, 1.770]`
                lo, hi = mrow.intervals[m]
                shown += f" [{lo:.{DISPLAY_DECIMALS[m]}f}, {hi:.{DISPLAY_DECIMALS[m]}f}]"
            cells[(mrow.resolution, m)] = (exact, shown)

    base_label = baseline or v.baseline
    if not any(label == base_label for label, _ in rows):
        labels = ", ".join(dict.fromkeys(label for label, _ in rows))
        raise UserError(f"baseline {base_label!r} is not a row of this table; choose one of: {labels}")
    base_fid: dict[int, float] = {}
    for res in resolutions:
        for (label, _src), cells in rows.items():  # rows of the view's own source come first
            f = _cell_float(cells.get((res, "fid"), ("", ""))[0])
            if label == base_label and f is not None and f != 0:
                base_fid[res] = f
                break

    title_of = DATASET_TITLES.get(v.dataset, lambda r: f"{v.dataset}-{r}")
    columns = [Column("model", "", "Model"), Column("source", "", "Source")]
    for res in sorted(resolutions):
        for m in metrics:
            columns.append(Column(f"{res}_{m}", title_of(res), METRIC_HEADERS[m]))
            if m == "fid":
                columns.append(Column(f"{res}_dfid_pct", title_of(res), METRIC_HEADERS["dfid"]))

    exact_rows, display_rows = [], []
    for (label, src), cells in rows.items():
        ex: dict[str, str] = {"model": label, "source": src}
        dp: dict[str, str] = {"model": label, "source": src}
        for res in sorted(resolutions):
            for m in metrics:
                ex[f"{res}_{m}"], dp[f"{res}_{m}"] = cells.get((res, m), ("", MISSING))
            if "fid" in metrics:
                f = _cell_float(cells.get((res, "fid"), ("", ""))[0])
                b = base_fid.get(res)
                if f is None or b is None:
                    ex[f"{res}_dfid_pct"], dp[f"{res}_dfid_pct"] = "", MISSING
                else:
                    pct = (f - b) / b * 100.0
                    ex[f"{res}_dfid_pct"] = f"{pct:.2f}"
                    is_base = label == base_label and f == b
                    dp[f"{res}_dfid_pct"] = "baseline" if is_base else f"{pct:+.2f}%"
        exact_rows.append(ex)
        display_rows.append(dp)

    keys = [c.key for c in columns]
    notes = []
    if "fid" in metrics:
        notes.append(
            f"{DFID_FORMULA}, against {base_label} at the same resolution; negative = lower (better) FID. "
            "The appendix's prose percentages (31.26%, 51.94%, 13.85%) do not follow one formula; "
            "this table uses the one above for every row."
        )
    srcs = list(dict.fromkeys(src for _l, src in rows if src in SOURCES))
    if srcs:
        notes.append(
            "Sources: "
            + "; ".join(f"{s} = {SOURCES[s]}" for s in srcs)
            + "."
            + (" A row repeated verbatim in a later source is shown once." if all_sources else "")
        )
    if any(src.startswith("measured") for _l, src in rows):
        notes.append("measured rows: this toolkit's `metrics --json` files (sample count and feature network given).")
    if any("STAND-IN" in src for _l, src in rows):
        notes.append(
            "STAND-IN network: seeded random weights in place of the 2015 TF Inception; "
            "such rows test the pipeline and are not comparable with published numbers."
        )
    return TableResult(
        title=v.title,
        columns=columns,
        exact=pd.DataFrame(exact_rows, columns=keys, dtype=str),
        display=pd.DataFrame(display_rows, columns=keys, dtype=str),
        notes=[n for n in notes if n],
        warnings=warnings,
    )


def make_table(
    results: Iterable[str | Path] = (),
    *,
    view: str | None = None,
    baseline: str | None = None,
    metrics: Iterable[str] | None = None,
    all_sources: bool = False,
    published: str | Path | None = None,
) -> TableResult:
    """The library call behind `diffit-eval table`: published rows plus measured `metrics --json` files."""
    results = list(results)
    rows, warnings = load_measured(results)
    t = build_table(
        load_published(published), rows, view=view, baseline=baseline, metrics=metrics, all_sources=all_sources
    )
    t.warnings[:0] = warnings
    shown = sum(str(src).startswith("measured") for src in t.display["source"])
    if results and not shown:  # every file the user asked for was dropped: that is an error, not a warning
        skipped = [w for w in t.warnings if w.startswith("skipped")]
        why = (
            skipped[0]
            if len(skipped) == 1
            else (
                f"{len(results)} files given, none shown; " + "; ".join(skipped)
                if skipped
                else "they are regression reports or golden files"
            )
        )
        raise UserError(f"no measured row to show: {why}")
    return t
