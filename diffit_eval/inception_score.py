"""Inception score as ADM's evaluator computes it (after improved-GAN).

p(y|x) = softmax of the unbiased 1008-way logits. The samples are cut, in order, into splits of
5000 (the last split may be shorter, as in ADM); each split scores exp(mean KL(p(y|x) || p(y)))
with p(y) that split's mean. ADM reports the mean over splits; the spread is reported beside it.
"""

from __future__ import annotations

import numpy as np

SPLIT_SIZE = 5000


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def inception_score(logits: np.ndarray, split_size: int = SPLIT_SIZE) -> tuple[float, float]:
    """(mean, std) of the per-split scores."""
    preds = softmax(logits)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i:i + split_size]
        py = part.mean(axis=0, keepdims=True)
        kl = part * (np.log(part) - np.log(py))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
