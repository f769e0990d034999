"""The demo (docs/DEMO.md): the shipped `digits` DiffiT scored against the digits it was trained on.

Three rows, each `num_samples` images measured against the 1,500 training digits of the fixed
`sklearn-digits` split (diffit_eval/io/sources.py):

1. held-out real digits: the 297 digits training never saw, the floor a perfect model would reach;
2. the trained DiffiT: the shipped EMA weights (diffit/weights/digits.safetensors), EDM Heun;
3. the same architecture untrained: seeded random weights, the same sampler, the ceiling.

Features. The protocol's InceptionV3 cannot be downloaded here and its stand-in (random weights)
runs at a few images a second on two CPU cores, far too slow for a two-minute demo of ~2,000
images. The demo therefore measures in the feature space of a small digit classifier trained at
run time on the training split (an MLP on the 8x8 grey digits, 64 hidden units): FID on its hidden
layer, IS on its ten logits (the "MNIST Inception score" of the GAN literature), precision/recall
(k = 3) on its hidden layer, all with the project's metric code. The rows say so: these numbers are
not Inception numbers and not comparable with any paper; the ordering is the point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffit_eval.errors import UserError

__all__ = [
    "DEMO_MODEL",
    "DigitFeatures",
    "DemoResult",
    "digit_features",
    "run_demo",
    "sample_digits",
    "score",
    "to_gray8",
    "write_demo_grid",
]

DEMO_MODEL = "digits"  # the preset whose weights ship in the package
UNTRAINED = "random:0"  # the ceiling: seeded random weights (diffit.testing.randomize_weights)
FEATURE_SEED = 0  # the classifier's initialisation and data order
FEATURE_HIDDEN = 64  # hidden units: the FID / precision-recall feature dimension
FEATURE_NETWORK = f"digit-MLP features ({FEATURE_HIDDEN} hidden units, trained at run time on the training split)"
LABELS = {
    "heldout": "held-out real digits",
    "trained": "DiffiT digits (trained, shipped)",
    "untrained": "DiffiT digits (untrained)",
}
DEFAULT_NUM_SAMPLES = 256  # per row; at most the 297 held-out digits
MIN_SAMPLES = 16  # precision/recall need more than k = 3 neighbours; covariances many more


def to_gray8(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 16, 16, 3] -> float64 [N, 64] in scikit-learn's 0-16 scale: channel mean, 2x2 block mean."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] % 8 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected square [N, H, W, C] images with H a multiple of 8, got {images.shape}")
    f = images.shape[1] // 8
    gray = images.astype(np.float64).mean(axis=-1)
    gray = gray.reshape(len(gray), 8, f, 8, f).mean(axis=(2, 4))
    return gray.reshape(len(gray), 64) * (16 / 255)


@dataclass
class DigitFeatures:
    """A digit classifier used as a feature network: hidden ReLU layer (features) and logits."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    train_accuracy: float
    heldout_accuracy: float

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NHWC images -> (hidden [N, 64], logits [N, 10]), float64."""
        x = to_gray8(images)
        hidden = np.maximum(x @ self.weights[0] + self.biases[0], 0)
        return hidden, hidden @ self.weights[1] + self.biases[1]


def digit_features(resolution: int = 16) -> DigitFeatures:
    """Fit the feature classifier on the training split, rendered at `resolution` and brought back to 8x8.

    The round trip (8x8 -> bilinear `resolution` -> block mean) is the one generated samples take,
    so real and generated digits reach the classifier through the same path.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from diffit_eval.io.sources import sklearn_digits

    train, y_train = sklearn_digits("train", resolution)
    held, y_held = sklearn_digits("heldout", resolution)
    # L-BFGS: deterministic full-batch steps, about a second on 1,500 digits (Adam takes ~20x longer).
    clf = MLPClassifier(
        hidden_layer_sizes=(FEATURE_HIDDEN,), solver="lbfgs", alpha=1e-3, max_iter=200, random_state=FEATURE_SEED
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(to_gray8(train), y_train)
    return DigitFeatures(
        [np.asarray(w, np.float64) for w in clf.coefs_],
        [np.asarray(b, np.float64) for b in clf.intercepts_],
        float(clf.score(to_gray8(train), y_train)),
        float(clf.score(to_gray8(held), y_held)),
    )


def sample_digits(
    out: Path, num_samples: int, *, ckpt: str | None = None, steps: int | None = None, verbose: bool = False
) -> np.ndarray:
    """`num_samples` digits (seeds 0..N-1) from the `digits` preset with EDM Heun, through the project's sampler.

    `ckpt` None: the shipped weights; `random:SEED`: the untrained ceiling. Returns uint8 NHWC.
    """
    from diffit_eval.generate.runner import generate
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
    rows: dict[str, dict] = field(default_factory=dict)  # key -> metrics record
    images: dict[str, np.ndarray] = field(default_factory=dict)
    features: DigitFeatures | None = None
    seconds: float = 0.0


def score(images: np.ndarray, ref_hidden: np.ndarray, net: DigitFeatures) -> dict:
    """FID, IS, precision and recall of `images` against the training digits' hidden features."""
    from diffit_eval.metrics.fid import frechet_distance_by
    from diffit_eval.metrics.inception_score import inception_score
    from diffit_eval.metrics.prc import precision_recall

    hidden, logits = net(images)
    fid = frechet_distance_by("eigh")(
        hidden.mean(0), np.cov(hidden, rowvar=False), ref_hidden.mean(0), np.cov(ref_hidden, rowvar=False)
    )
    is_mean, is_std = inception_score(logits)
    precision, recall = precision_recall(ref_hidden, hidden, arith="exact", device="cpu")
    return {
        "fid": float(fid),
        "sfid": None,
        "is": float(is_mean),
        "is_std": float(is_std),
        "precision": float(precision),
        "recall": float(recall),
        "num_samples": int(len(images)),
    }


def run_demo(
    out: Path,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    steps: int | None = None,
    ceiling_samples: int | None = None,
    verbose: bool = True,
) -> DemoResult:
    """Sample the trained and the untrained model, score the three rows, write one metrics JSON per row.

    `ceiling_samples` (default `num_samples`) lets a test draw fewer untrained samples: the ceiling
    is ~40x the floor, far beyond the few-sample noise of FID, and FID's small-sample bias only
    raises it further.
    """
    from diffit_eval.assets.cache import write_json_atomic
    from diffit_eval.io.sources import sklearn_digits

    if ceiling_samples is not None and ceiling_samples < MIN_SAMPLES:
        raise UserError(f"ceiling_samples must be at least {MIN_SAMPLES}, got {ceiling_samples}")
    from diffit_eval.provenance import device_description, now_iso, package_versions

    t0 = time.time()
    heldout, _ = sklearn_digits("heldout", 16)
    if not MIN_SAMPLES <= num_samples <= len(heldout):
        raise UserError(
            f"--num-samples must be between {MIN_SAMPLES} and {len(heldout)} (the held-out digits), got {num_samples}"
        )
    net = digit_features(16)
    train, _ = sklearn_digits("train", 16)
    ref_hidden, _ = net(train)
    result = DemoResult(features=net)
    result.images["train"] = train
    result.images["heldout"] = heldout[:num_samples]
    result.images["trained"] = sample_digits(out / "trained", num_samples, steps=steps, verbose=verbose)
    result.images["untrained"] = sample_digits(
        out / "untrained", ceiling_samples or num_samples, ckpt=UNTRAINED, steps=steps, verbose=verbose
    )
    for key, label in LABELS.items():
        record = score(result.images[key], ref_hidden, net)
        record.update(
            {
                "label": label,
                "dataset": "digits",
                "resolution": 16,
                "samples": str(out / key) if key != "heldout" else "sklearn-digits-heldout",
                "reference": {"name": "sklearn-digits (training split)", "count": len(train)},
                "feature_network": {
                    "name": FEATURE_NETWORK,
                    "standin": False,
                    "train_accuracy": net.train_accuracy,
                    "heldout_accuracy": net.heldout_accuracy,
                },
                "provenance": {
                    "versions": package_versions(),
                    "device": device_description("cpu"),
                    "created": now_iso(),
                },
            }
        )
        write_json_atomic(out / f"{key}.json", record)
        result.rows[key] = record
    result.seconds = time.time() - t0
    return result


def demo_table(out: Path, result: DemoResult):
    """The three rows in the layout of Table S.1 (FID, ΔFID, IS, precision, recall), floor as the baseline."""
    from diffit_eval.report.table import Measured, View, build_table, load_published

    view = View(
        f"Demo: scikit-learn digits 16×16, unconditional, against the {len(result.images['train']):,} training digits",
        "digits",
        "demo",
        LABELS["heldout"],
        ("fid", "is", "precision", "recall"),
        (16,),
    )
    rows = [
        Measured(
            path=out / f"{key}.json",
            label=r["label"],
            dataset="digits",
            resolution=16,
            values={m: r.get(m) for m in ("fid", "sfid", "is", "precision", "recall")},
            num_samples=r["num_samples"],
            network="digit-MLP features",
            standin=False,
        )
        for key, r in result.rows.items()
    ]
    return build_table(load_published(), rows, view=view)


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


def write_summary(out: Path, result: DemoResult) -> Path:
    from diffit_eval.assets.cache import write_json_atomic

    summary = {
        "rows": result.rows,
        "seconds": round(result.seconds, 1),
        "feature_network": {
            "name": FEATURE_NETWORK,
            "train_accuracy": result.features.train_accuracy,
            "heldout_accuracy": result.features.heldout_accuracy,
        },
    }
    write_json_atomic(out / "metrics.json", summary)
    return out / "metrics.json"
