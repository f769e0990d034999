"""The digits network's recipe: how `digits-mlp.npz` (:mod:`diffit_eval.features.digits`) was made.

scikit-learn's `MLPClassifier` (one hidden layer of 64 ReLU units, L-BFGS, alpha 1e-3, seed 0),
fitted on the 1,500 training digits of the fixed split (:func:`diffit_eval.io.sources.sklearn_digits`)
after the same round trip generated digits take: rendered at 16x16, brought back by
:func:`~diffit_eval.features.gray8.to_gray8`. `tests/test_demo.py` refits it and finds the shipped
file's accuracies and predictions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from diffit_eval.assets.cache import atomic_path
from diffit_eval.features.digits import DIGITS_NETWORK, HIDDEN
from diffit_eval.features.gray8 import to_gray8

__all__ = ["FIT", "fit_digit_network"]

FIT = {"hidden_layer_sizes": (HIDDEN,), "solver": "lbfgs", "alpha": 1e-3, "max_iter": 200, "random_state": 0}


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
