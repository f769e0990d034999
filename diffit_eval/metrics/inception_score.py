"""Inception score as ADM's evaluator computes it (after improved-GAN).

p(y|x) = softmax of the unbiased 1008-way logits. The samples are cut, in order, into splits of
5000 (the last split may be shorter, as in ADM); each split scores exp(mean KL(p(y|x) || p(y)))
with p(y) that split's mean. ADM reports the mean over splits; the spread is reported beside it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

SPLIT_SIZE = 5000


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def inception_score(logits: np.ndarray, split_size: int = SPLIT_SIZE) -> tuple[float, float]:
    """(mean, std) of the per-split scores."""
    if split_size < 1:
        raise ValueError(f"split_size must be positive, got {split_size}")
    log_p = log_softmax(logits)
    preds = np.exp(log_p)
    scores = []
    for i in range(0, len(preds), split_size):
        part, log_part = preds[i : i + split_size], log_p[i : i + split_size]
        # ADM writes part * (log(part) - log(mean(part))). Taking both logs in log space (log_softmax,
        # logsumexp) gives the same value, but a probability that underflows to 0 contributes its
        # limit 0 instead of 0 * -inf = nan (a float32 softmax of large logits does underflow).
        log_py = logsumexp(log_part, axis=0, keepdims=True) - np.log(len(part))
        kl = part * (log_part - log_py)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
