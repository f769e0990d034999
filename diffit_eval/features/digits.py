"""A digit classifier as the feature network of the demo (docs/DEMO.md): `--network digits`.

The protocol's InceptionV3 runs at a few images a second on two CPU cores, and its stand-in is
random; neither can score the demo's ~2,000 digits in a minute. This network is a classifier of
scikit-learn's handwritten digits, scikit-learn's `MLPClassifier` (one hidden layer of 64 ReLU
units, L-BFGS, alpha 1e-3, seed 0) fitted once on the 1,500 training digits of the fixed split
(:func:`diffit_eval.io.sources.sklearn_digits`), and shipped as `digits-mlp.npz` beside this
module. Its hidden layer plays the part of pool_3 (FID, precision/recall, KID) and its ten
logits that of Inception's (IS, "the MNIST Inception score" of the GAN literature); it has no
spatial features, so sFID is unavailable. Numbers measured with it rank models on digits; they
are not comparable with any Inception number, and every record names the network.

Input: uint8 RGB images of any square size that is a multiple of 8 (the demo's are 16x16). They
reach the classifier as the 8x8 grey digits it was fitted on: channel mean, block mean to 8x8,
scaled to scikit-learn's 0-16 range (:func:`to_gray8`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from diffit_eval.assets.cache import atomic_path, sha256_file
from diffit_eval.errors import UserError
from diffit_eval.features.network import Features
from diffit_eval.protocol import FEATURE_NETWORKS

DIGITS_NETWORK = FEATURE_NETWORKS["digits"]
DIGITS_WEIGHTS = Path(__file__).with_name("digits-mlp.npz")
DIGITS_RESIZE = "block-mean-8x8"  # how images reach the network; recorded like Inception's resize mode
HIDDEN = 64  # the feature dimension (FID, precision/recall)
CLASSES = 10
FIT = {"hidden_layer_sizes": (HIDDEN,), "solver": "lbfgs", "alpha": 1e-3, "max_iter": 200, "random_state": 0}


def to_gray8(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, H, 3] (H a multiple of 8) -> float64 [N, 64] in scikit-learn's 0-16 scale."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] % 8 or images.shape[1] != images.shape[2]:
        raise UserError(
            f"the digits network takes square images whose size is a multiple of 8, got {list(images.shape[1:])}"
        )
    f = images.shape[1] // 8
    gray = images.astype(np.float64).mean(axis=-1)
    gray = gray.reshape(len(gray), 8, f, 8, f).mean(axis=(2, 4))
    return gray.reshape(len(gray), 64) * (16 / 255)


def fit_digit_network(out: str | os.PathLike, resolution: int = 16) -> Path:
    """Fit the classifier on the training split rendered at `resolution` (the path generated digits
    take back to 8x8) and write `out` (W1, b1, W2, b2 float64 and a JSON `meta`), atomically."""
    import warnings

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from diffit_eval.io.sources import sklearn_digits

    train, y_train = sklearn_digits("train", resolution)
    held, y_held = sklearn_digits("heldout", resolution)
    clf = MLPClassifier(**FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(to_gray8(train), y_train)
    meta = {
        "network": DIGITS_NETWORK,
        "fit": {**FIT, "hidden_layer_sizes": list(FIT["hidden_layer_sizes"])},
        "data": f"sklearn-digits training split (1,500), rendered at {resolution}x{resolution}",
        "train_accuracy": float(clf.score(to_gray8(train), y_train)),
        "heldout_accuracy": float(clf.score(to_gray8(held), y_held)),
        "scikit_learn": sklearn.__version__,
    }
    arrays = {
        f"{k}{i + 1}": np.asarray(a, np.float64)
        for k, v in (("W", clf.coefs_), ("b", clf.intercepts_))
        for i, a in enumerate(v)
    }
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, meta=np.array(json.dumps(meta)))
    return Path(out)


class DigitFeatures(torch.nn.Module):
    """The shipped digit classifier with the feature-network interface of
    :class:`~diffit_eval.features.network.InceptionFeatures`: uint8 NCHW in, Features out."""

    pool_dim = HIDDEN
    spatial_dim = None  # no sFID features
    is_standin = False
    resize = DIGITS_RESIZE

    def __init__(self, weights_path: str | os.PathLike = DIGITS_WEIGHTS) -> None:
        super().__init__()
        self.weights_path = Path(weights_path)
        try:
            with np.load(self.weights_path, allow_pickle=False) as z:
                params = [torch.from_numpy(z[k]) for k in ("W1", "b1", "W2", "b2")]
                self.meta = json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"{self.weights_path} is not the digits network's weights ({type(e).__name__})") from None
        # float64 as fitted; parameters (not buffers) so `next(net.parameters()).device` finds the device
        self.W1, self.b1, self.W2, self.b2 = (torch.nn.Parameter(p, requires_grad=False) for p in params)
        self.weights_sha256 = sha256_file(self.weights_path)

    @property
    def label(self) -> str:
        return DIGITS_NETWORK

    def describe(self) -> dict:
        return {
            "name": DIGITS_NETWORK,
            "label": DIGITS_NETWORK,
            "weights": str(self.weights_path),
            "sha256": self.weights_sha256,
            "standin": False,
            "resize": self.resize,
            "pool_dim": self.pool_dim,
            "note": "a digit classifier (docs/DEMO.md), not InceptionV3: not comparable with any paper",
            **{k: self.meta[k] for k in ("train_accuracy", "heldout_accuracy") if k in self.meta},
        }

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Features:
        x = torch.from_numpy(to_gray8(images.permute(0, 2, 3, 1).cpu().numpy())).to(self.W1.device)
        hidden = torch.relu(x @ self.W1 + self.b1)
        return Features(hidden.float(), (hidden @ self.W2 + self.b2).float(), None)
