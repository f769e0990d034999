"""The demo's class-agreement classifier: how often a generated digit is the class it was asked for.

Independent of the model and of the digits feature network (:mod:`diffit_eval.features.digits`,
an MLP): another model family, fitted on the same 1,500 training digits after the same 16x16 round
trip as the samples (:func:`diffit_eval.features.gray8.to_gray8`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

__all__ = ["agreement_classifier"]


@functools.cache
def agreement_classifier() -> LogisticRegression:
    """The independent classifier of the class-agreement line: an L2 logistic regression (C = 0.1) on
    the 8x8 grey values of the 1,500 training digits, another model family than the digits network.

    Fitted once per process. Newton-CG reaches the optimum of this objective in ~17 steps (0.3 s);
    L-BFGS, scikit-learn's default, needed ~700 on the unscaled 0-16 values (7 s) for the same
    predictions on all 297 held-out digits."""
    from sklearn.linear_model import LogisticRegression

    from diffit_eval.features.gray8 import to_gray8
    from diffit_eval.io.sources import sklearn_digits

    train, y = sklearn_digits("train", 16)
    return LogisticRegression(C=0.1, solver="newton-cg", max_iter=200).fit(to_gray8(train), y)
