"""A digit classifier as the feature network of the demo (docs/DEMO.md): `--network digits`.

The protocol's InceptionV3 cannot score the demo's ~2,000 digits in a minute on two CPU cores (its
speed: docs/TESTING.md, "The stand-in's speed"), and its stand-in, as slow, is random. This network is a classifier of
scikit-learn's handwritten digits, scikit-learn's `MLPClassifier` with one hidden layer of 64 ReLU
units, fitted once on the 1,500 training digits of the fixed split by
:func:`diffit_eval.features.digits_fit.fit_digit_network` and shipped as `digits-mlp.npz` beside
this module. Its hidden layer plays the part of pool_3 (FID, precision/recall, KID) and its ten
logits that of Inception's (IS, "the MNIST Inception score" of the GAN literature); it has no
spatial features, so sFID is unavailable. Numbers measured with it rank models on digits; they
are not comparable with any Inception number, and every record names the network.

Input: uint8 RGB images of any square size that is a multiple of 8 (the demo's are 16x16). They
reach the classifier as the 8x8 grey digits it was fitted on (:func:`diffit_eval.features.gray8.to_gray8`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from diffit_eval.assets.cache import sha256_file
from diffit_eval.errors import UserError
from diffit_eval.features.base import Features
from diffit_eval.features.gray8 import DIGITS_RESIZE, to_gray8
from diffit_eval.protocol import FEATURE_NETWORKS

__all__ = ["CLASSES", "DIGITS_NETWORK", "DIGITS_WEIGHTS", "HIDDEN", "DigitFeatures"]

DIGITS_NETWORK = FEATURE_NETWORKS["digits"]
DIGITS_WEIGHTS = Path(__file__).with_name("digits-mlp.npz")
HIDDEN = 64  # the feature dimension (FID, precision/recall)
CLASSES = 10


class DigitFeatures(torch.nn.Module):
    """The shipped digit classifier as a feature network
    (:class:`~diffit_eval.features.base.FeatureNetwork`): uint8 NCHW in, Features out."""

    pool_dim = HIDDEN
    spatial_dim = None  # no sFID features
    logits_dim = CLASSES
    has_logits = True
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
