"""ADM's precision/recall (guided-diffusion `evaluations/evaluator.py`) in numpy, each rounding explicit.

A test transcription, written from the evaluator's TensorFlow graph and its Python loops, not
from `diffit_eval.metrics.prc`: `DistanceBlock`, `_batch_pairwise_distances`, `ManifoldEstimator.
manifold_radii` (full rows, `np.partition`), `evaluate_pr` / `less_thans` (one block D(ref,
sample) for both directions) and `compute_prec_recall`, with ADM's 10,000-row batches.

Every float16 op is computed exactly in float64 and rounded once to float16 (`_h`; numpy rounds
a double to half directly), which is what a correctly rounded half op is. The two accumulating
ops take the choices documented in `diffit_eval/metrics/prc.py`: the half squares summed exactly, then
rounded; the matmul accumulated in float64 (exact to ~1e-16), then rounded. The float32 redo
after a non-finite block is the same graph in numpy float32.
"""

from __future__ import annotations

import numpy as np

F16, F32, F64 = np.float16, np.float32, np.float64
ROW_BATCH = COL_BATCH = 10_000
NHOOD = 3


def _h(x) -> np.ndarray:
    """Round (exact float64 values) once to float16."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, F64).astype(F16)


def _e(x) -> np.ndarray:
    """float16 -> float64, exactly (to compute the next op exactly)."""
    return np.asarray(x, F16).astype(F64)


def batch_pairwise_distances_half(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """`_batch_pairwise_distances` on float16 tensors U, V: float16 [len(U), len(V)]."""
    with np.errstate(invalid="ignore"):
        norm_u = _h(_h(_e(U) ** 2).astype(F64).sum(1))  # tf.reduce_sum(tf.square(U), 1)
        norm_v = _h(_h(_e(V) ** 2).astype(F64).sum(1))
        norm_u = norm_u.reshape(-1, 1)  # tf.reshape(norm_u, [-1, 1])
        norm_v = norm_v.reshape(1, -1)
        uv = _h(_e(U) @ _e(V).T)  # tf.matmul(U, V, False, True)
        two_uv = _h(2 * _e(uv))  # 2 * ...: exact, or inf
        a = _h(_e(norm_u) - _e(two_uv))  # norm_u - 2 uv   (inf - inf = nan)
        b = _h(_e(a) + _e(norm_v))  # ... + norm_v
        return np.where(b < 0, F16(0), b)  # tf.maximum(D, 0.0): nan stays nan


def batch_pairwise_distances_f32(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """The same graph on the float32 inputs (ADM's fallback branch)."""
    U, V = np.asarray(U, F32), np.asarray(V, F32)
    norm_u = np.sum(np.square(U), 1).reshape(-1, 1)
    norm_v = np.sum(np.square(V), 1).reshape(1, -1)
    return np.maximum(norm_u - 2 * (U @ V.T) + norm_v, F32(0))


def distance_block(U: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, bool]:
    """`DistanceBlock.distance_block`: (float32 distances, whether the float16 branch was taken)."""
    d16 = batch_pairwise_distances_half(_h(np.asarray(U, F32)), _h(np.asarray(V, F32)))  # tf.cast(.., float16)
    if np.isfinite(d16).all():  # tf.reduce_all(tf.math.is_finite(..))
        return d16.astype(F32), True
    return batch_pairwise_distances_f32(U, V), False


def manifold_radii(features: np.ndarray, row_batch: int = ROW_BATCH, col_batch: int = COL_BATCH) -> np.ndarray:
    """`ManifoldEstimator.manifold_radii` with nhood_sizes=(3,): float32 [N, 1]."""
    n = len(features)
    radii = np.zeros([n, 1], dtype=F32)
    distance_batch = np.zeros([row_batch, n], dtype=F32)
    seq = np.arange(NHOOD + 1, dtype=np.int32)
    for begin1 in range(0, n, row_batch):
        end1 = min(begin1 + row_batch, n)
        row_batch_feats = features[begin1:end1]
        for begin2 in range(0, n, col_batch):
            end2 = min(begin2 + col_batch, n)
            distance_batch[0 : end1 - begin1, begin2:end2] = distance_block(row_batch_feats, features[begin2:end2])[0]
        radii[begin1:end1, :] = np.partition(distance_batch[0 : end1 - begin1, :], seq, axis=1)[:, [NHOOD]]
    return radii


def evaluate_pr(features_1, radii_1, features_2, radii_2, row_batch: int = ROW_BATCH, col_batch: int = COL_BATCH):
    """`ManifoldEstimator.evaluate_pr` with `DistanceBlock.less_thans`: (precision [1], recall [1])."""
    features_1_status = np.zeros([len(features_1), radii_2.shape[1]], dtype=bool)
    features_2_status = np.zeros([len(features_2), radii_1.shape[1]], dtype=bool)
    for begin_1 in range(0, len(features_1), row_batch):
        end_1 = begin_1 + row_batch
        batch_1 = features_1[begin_1:end_1]
        for begin_2 in range(0, len(features_2), col_batch):
            end_2 = begin_2 + col_batch
            batch_2 = features_2[begin_2:end_2]
            dist32 = distance_block(batch_1, batch_2)[0][..., None]
            batch_1_in = np.any(dist32 <= radii_2[begin_2:end_2], axis=1)
            batch_2_in = np.any(dist32 <= radii_1[begin_1:end_1][:, None], axis=0)
            features_1_status[begin_1:end_1] |= batch_1_in
            features_2_status[begin_2:end_2] |= batch_2_in
    return (np.mean(features_2_status.astype(F64), axis=0), np.mean(features_1_status.astype(F64), axis=0))


def compute_prec_recall(
    activations_ref, activations_sample, row_batch: int = ROW_BATCH, col_batch: int = COL_BATCH
) -> tuple[float, float]:
    """`Evaluator.compute_prec_recall`."""
    radii_1 = manifold_radii(activations_ref, row_batch, col_batch)
    radii_2 = manifold_radii(activations_sample, row_batch, col_batch)
    pr = evaluate_pr(activations_ref, radii_1, activations_sample, radii_2, row_batch, col_batch)
    return float(pr[0][0]), float(pr[1][0])
