"""Improved precision and recall (Kynkaanniemi et al. 2019) with the rules of ADM's evaluator.

- The radius of a point is the squared distance to its k-th nearest neighbour in its own set
  (k = 3): the (k+1)-th smallest entry of its row of distances to the whole set, itself included,
  as ADM's `ManifoldEstimator.manifold_radii` takes it (its own distance is 0, or the float16
  rounding of 0).
- precision = share of samples within (<=) the radius of at least one reference point;
  recall = share of reference points within the radius of at least one sample. As in ADM's
  `DistanceBlock.less_thans`, both come from the one block D(reference, samples).

Two arithmetics for the squared distances (`ARITHS`); `diffit-eval metrics` reports both.

``adm-fp16`` (the protocol, what published tables used): ADM's `_batch_pairwise_distances` on
float16 casts, op by op, each result rounded to float16 (round to nearest even)::

    U, V     = cast(U, half), cast(V, half)
    norm_u   = reduce_sum(square(U), 1)                         # norm_v likewise
    D        = maximum((norm_u - 2 * matmul(U, V^T)) + norm_v, 0)
    D        = D if reduce_all(is_finite(D)) else the same graph on the float32 inputs

The float32 redo is decided per block (ADM's `tf.cond`), so blocks must be ADM's 10,000 x 10,000
for a run that overflows float16 (|u|^2 > 65504) to match it; without overflow the block size
changes nothing. A nan from inf - inf propagates through the clamp (torch's clamp; Eigen's
`max(a, b) = a < b ? b : a` with the distance first), so it too sends the block to float32.
Two ops depend on how the kernels accumulate; what TensorFlow's source establishes, and the
choice made here:

- matmul: products of halves are exact in float32. TF's GPU half GEMM asks cuBLAS for float32
  accumulation by default (`TF_FP16_MATMUL_USE_FP32_COMPUTE`, read by
  `MatmulDoFP32ComputationFP16Input` in `tensorflow/core/util/matmul_autotune.cc`), and so do
  we (torch.mm on the half values held in float32), rounding the dot product once to half. The
  order of the float32 sum is the BLAS's on both sides and not reproducible: where it lands
  within a float32 rounding of a half midpoint, one distance moves by one half ulp of 2 u.v.
- reduce_sum of the half squares: TF reduces halves *in half*. `ReduceFunctor<GPUDevice,
  SumReducer<T>>` runs `Sum<T>` with T = Eigen::half, and a row of >= 1024 columns goes to
  `cub::DeviceSegmentedReduce` with that op (`tensorflow/core/kernels/reduction_gpu_kernels.cu.h`);
  only the mean has a float path (`MeanReducer<Eigen::half>`, through `HalfToFloat`). Every
  partial sum was thus rounded to half, in the order of the block reduction of the CUB version
  and GPU that ran, which the public source does not pin down (CUB's tuning policies differ by
  version and architecture), so no "TF order" is offered. The norm here is instead the *exact*
  sum of the half squares rounded once to half: order-free and the value every accumulation
  approaches (a float64 sum of up to 8192 halves is exact, every half being a multiple of 2^-24
  below 2^16; the rounding to half is numpy's, which rounds a double directly, where torch
  would round through float32 and could round twice). How far half accumulation in plausible
  orders moves P/R is measured by `benchmarks/bench_prc_band.py` (docs/METRICS.md): that band,
  not this choice, bounds how closely a published P/R can be reproduced.

Every other op (the half subtraction and addition, the float32 -> half casts) is correctly
rounded on any hardware: torch computes a half op in float32 and rounds once, and float32 has
at least 2 x 11 + 2 bits, so that double rounding is exact. `tests/adm_evaluator_graph.py`
transcribes ADM's graph in numpy with each rounding explicit; tests check every distance.

``exact``: float64 throughout, |u|^2 - 2 u.v + |v|^2 clamped at 0. Its rounding (~1e-16 of
|u|^2) is far below any distance gap of real features, so P/R equal a float64 brute force.

Work is done in blocks of 10,000 x 10,000, and each radius is found with a running top-(k+1)
over column blocks, so memory stays bounded by a few blocks whatever the set sizes
(`benchmarks/bench_prc.py`). Inside a block the float16 steps run in place on one
half-precision buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 10_000
K = 3
ARITHS = ("adm-fp16", "exact")
_NORM_CHUNK = 4096  # rows at a time when computing norms (bounded temporaries)


def half_sq_norms(x: np.ndarray) -> np.ndarray:
    """|x|^2 of the float16-rounded rows of `x`: squares rounded to half, summed exactly, rounded once.

    Returns float16 [len(x)]; inf where the norm (or a square) overflows half, as in ADM.
    """
    out = np.empty(len(x), np.float16)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, len(x), _NORM_CHUNK):
            h = np.asarray(x[i : i + _NORM_CHUNK], np.float32).astype(np.float16).astype(np.float32)
            sq = (h * h).astype(np.float16)  # the float32 product of two halves is exact: one rounding
            out[i : i + _NORM_CHUNK] = sq.astype(np.float64).sum(1).astype(np.float16)
    return out


HalfNorms = Callable[[np.ndarray], np.ndarray]


def _check_arith(arith: str) -> None:
    if arith not in ARITHS:
        raise ValueError(f"unknown precision/recall arithmetic {arith!r}; choose one of {', '.join(ARITHS)}")


def sq_norms(feats: torch.Tensor, arith: str = "adm-fp16", half_norms: HalfNorms = half_sq_norms) -> torch.Tensor:
    """|x|^2 per row in the arithmetic's rules: float16 (adm-fp16) or float64 (exact)."""
    _check_arith(arith)
    if arith == "adm-fp16":
        return torch.from_numpy(half_norms(feats.cpu().numpy())).to(feats.device)
    out = torch.empty(len(feats), dtype=torch.float64, device=feats.device)
    for i in range(0, len(feats), _NORM_CHUNK):
        x = feats[i : i + _NORM_CHUNK].double()
        out[i : i + _NORM_CHUNK] = (x * x).sum(1)
    return out


def _adm_block(u: torch.Tensor, v: torch.Tensor, nu: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
    """[len(u), len(v)] ADM distances: float16, or after a non-finite entry the float32 graph."""
    u16, v16 = u.to(torch.float16).float(), v.to(torch.float16).float()
    d = torch.mm(u16, v16.T).to(torch.float16)  # u.v: float32 accumulation, rounded to half
    d.mul_(-2)  # -2 u.v (exact, or -inf on overflow)
    d.add_(nu[:, None])  # |u|^2 - 2 u.v, rounded
    d.add_(nv[None, :])  # ... + |v|^2, rounded
    d.clamp_min_(0)
    # ADM's test is tf.reduce_all(tf.math.is_finite(d)); after the clamp every entry is in
    # [0, inf] or nan, and max() propagates nan, so this is the same test in one cheap pass.
    if torch.isfinite(d.max()):
        return d
    u, v = u.float(), v.float()
    return ((u * u).sum(1)[:, None] - 2 * (u @ v.T) + (v * v).sum(1)[None, :]).clamp_min(0)


def _exact_block(u: torch.Tensor, v: torch.Tensor, nu: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
    """[len(u), len(v)] float64 distances."""
    d = torch.mm(u.double(), v.double().T)
    d.mul_(-2)
    d.add_(nu[:, None])
    d.add_(nv[None, :])
    return d.clamp_min_(0)


def _block(arith: str):
    return _adm_block if arith == "adm-fp16" else _exact_block


def pairwise_sq_distances(
    u: torch.Tensor, v: torch.Tensor, arith: str = "adm-fp16", *, half_norms: HalfNorms = half_sq_norms
) -> torch.Tensor:
    """[len(u), len(v)] squared distances in one block: float32 holding ADM's values, or float64."""
    nu, nv = sq_norms(u, arith, half_norms), sq_norms(v, arith, half_norms)
    d = _block(arith)(u, v, nu, nv)
    return d.double() if arith == "exact" else d.float()


def manifold_radii(
    feats: torch.Tensor,
    k: int = K,
    block: int = BLOCK,
    arith: str = "adm-fp16",
    *,
    norms: torch.Tensor | None = None,
    half_norms: HalfNorms = half_sq_norms,
) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour within `feats` (self excluded).

    float32 for adm-fp16 (ADM keeps radii in a float32 array), float64 for exact.
    """
    return knn_radii(feats, (k,), block, arith, norms=norms, half_norms=half_norms)[k]


def knn_radii(
    feats: torch.Tensor,
    ks: tuple[int, ...],
    block: int = BLOCK,
    arith: str = "adm-fp16",
    *,
    norms: torch.Tensor | None = None,
    half_norms: HalfNorms = half_sq_norms,
) -> dict[int, torch.Tensor]:
    """{k: k-th nearest-neighbour distance of each point} for every k in `ks`, from one pass over
    the blocks of D(feats, feats) (P/R's k = 3 and density/coverage's k = 5 share it)."""
    n, kmax = len(feats), max(ks)
    if n <= kmax:
        raise ValueError(f"precision/recall need more than {kmax} points per set, got {n}")
    norms = sq_norms(feats, arith, half_norms) if norms is None else norms
    dist = _block(arith)
    dtype = torch.float64 if arith == "exact" else torch.float32
    radii = {k: torch.empty(n, dtype=dtype, device=feats.device) for k in ks}
    for r0 in range(0, n, block):
        rows, nrows = feats[r0 : r0 + block], norms[r0 : r0 + block]
        best = None  # the kmax+1 smallest distances seen so far per row (self is one of them)
        for c0 in range(0, n, block):
            d = dist(rows, feats[c0 : c0 + block], nrows, norms[c0 : c0 + block])
            top = torch.topk(d, min(kmax + 1, d.shape[1]), dim=1, largest=False).values.to(dtype)
            del d
            cand = top if best is None else torch.cat([best, top], dim=1)
            best = torch.topk(cand, min(kmax + 1, cand.shape[1]), dim=1, largest=False).values
        for k in ks:
            radii[k][r0 : r0 + block] = best[:, k]
    return radii


def _in_radius(d: torch.Tensor, r: torch.Tensor, r_low: torch.Tensor | None) -> torch.Tensor:
    """d <= r elementwise (r broadcast), in d's float16 when every radius is a half (same answer, cheaper)."""
    if d.dtype == torch.float16 and r_low is not None:
        return d <= r_low
    return d.to(r.dtype) <= r


def _covered(
    ref: torch.Tensor,
    sam: torch.Tensor,
    ref_norms: torch.Tensor,
    sam_norms: torch.Tensor,
    ref_radii: torch.Tensor,
    sam_radii: torch.Tensor | None,
    block: int,
    arith: str,
    cover: torch.Tensor | None = None,
    balls: Balls | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples inside some reference radius, reference points inside some sample radius), from D(ref, sam).

    With `cover` (bool [len(ref), len(sam)]), also which sample balls hold which reference point:
    the bootstrap's recall (:mod:`diffit_eval.metrics.bootstrap`) is read from it. With `balls`,
    density/coverage's counts are read from the same blocks. Without `sam_radii`, recall's side
    is skipped (all False).
    """
    dist = _block(arith)
    sam_in = torch.zeros(len(sam), dtype=torch.bool, device=sam.device)
    ref_in = torch.zeros(len(ref), dtype=torch.bool, device=ref.device)

    def as_half(r: torch.Tensor) -> torch.Tensor | None:
        # A radius from a block that overflowed float16 is a float32 value: compare in float32 then.
        return r.half() if arith == "adm-fp16" and torch.equal(r.half().to(r.dtype), r) else None

    ref_r16 = as_half(ref_radii)
    sam_r16 = None if sam_radii is None else as_half(sam_radii)
    for p0 in range(0, len(ref), block):
        rr = ref_radii[p0 : p0 + block, None]
        rr16 = None if ref_r16 is None else ref_r16[p0 : p0 + block, None]
        for c0 in range(0, len(sam), block):
            # ADM's orientation: rows are reference points, columns samples. (|u|^2 - 2 u.v) + |v|^2
            # is not symmetric under float16 rounding, so the orientation is part of the protocol.
            d = dist(ref[p0 : p0 + block], sam[c0 : c0 + block], ref_norms[p0 : p0 + block], sam_norms[c0 : c0 + block])
            if sam_radii is not None:
                rs = sam_radii[None, c0 : c0 + block]
                rs16 = None if sam_r16 is None else sam_r16[None, c0 : c0 + block]
                inside = _in_radius(d, rs, rs16)
                ref_in[p0 : p0 + block] |= inside.any(dim=1)
                if cover is not None:
                    cover[p0 : p0 + block, c0 : c0 + block] = inside
            sam_in[c0 : c0 + block] |= _in_radius(d, rr, rr16).any(dim=0)
            if balls is not None:
                balls.add(d, p0, c0)
            del d
    return sam_in, ref_in


def precision_recall(ref_feats, sample_feats, **options) -> tuple[float, float]:
    """(precision, recall) of `sample_feats` against `ref_feats` ([N, D] arrays); `options` are
    :func:`membership`'s: `arith` "adm-fp16" (ADM's float16 distances, the default) or "exact"
    (float64), `k`, `block`, `device`, and `half_norms` replacing the float16 |x|^2 rule (the band
    benchmark passes half-accumulating ones).
    """
    m = membership(ref_feats, sample_feats, **options)
    return m.precision, m.recall


class Balls:
    """Density/coverage's counts (Naeem et al. 2020) gathered from P/R's blocks of D(reference, samples).

    `radii`: the squared distance of each reference point to its k-th neighbour among the
    reference points. Membership is strict, d < r, as in the paper's reference code (`prdc`).
    `counts[j]`: how many reference balls hold sample j (density is their mean over k);
    `covered[i]`: reference ball i holds some sample (coverage is their mean).
    """

    def __init__(self, radii: torch.Tensor, num_samples: int) -> None:
        self.radii = radii
        self.counts = torch.zeros(num_samples, dtype=torch.int64, device=radii.device)
        self.covered = torch.zeros(len(radii), dtype=torch.bool, device=radii.device)

    def add(self, d: torch.Tensor, p0: int, c0: int) -> None:
        inside = d.to(self.radii.dtype) < self.radii[p0 : p0 + len(d), None]
        self.counts[c0 : c0 + d.shape[1]] += inside.sum(dim=0)
        self.covered[p0 : p0 + len(d)] |= inside.any(dim=1)


@dataclass
class Membership:
    """Per-point outcomes behind precision/recall, kept for the bootstrap.

    `sample_in[i]`: sample i lies in some reference ball (precision is their mean);
    `ref_in[j]`: reference point j lies in some sample ball (recall is their mean);
    `cover[j, i]` (when asked for): reference point j lies in the ball of sample i.
    """

    sample_in: np.ndarray
    ref_in: np.ndarray
    cover: torch.Tensor | None = None
    balls: Balls | None = None  # density/coverage's counts, when asked for (`ball_k`)

    @property
    def precision(self) -> float:
        # Shares as float64, as ADM's np.mean(status.astype(np.float64)) (a float32 mean gives 0.93333334).
        return int(self.sample_in.sum()) / len(self.sample_in)

    @property
    def recall(self) -> float:
        return int(self.ref_in.sum()) / len(self.ref_in)


def membership(
    ref_feats,
    sample_feats,
    *,
    arith: str = "adm-fp16",
    k: int = K,
    block: int = BLOCK,
    device: str | torch.device | None = None,
    half_norms: HalfNorms = half_sq_norms,
    keep_cover: bool = False,
    ball_k: int | None = None,
    recall: bool = True,
) -> Membership:
    """The per-point indicators of :func:`precision_recall` (and with `keep_cover` the full
    reference x sample coverage, bool, len(ref) x len(samples) bytes on `device`).

    With `ball_k`, also density/coverage's :class:`Balls` (reference k-NN radii with k = `ball_k`
    from the same pass as P/R's, counts from the same blocks of D(reference, samples)); with
    `recall=False` the sample radii (a pass over D(samples, samples)) are not computed and
    `ref_in` is all False: density/coverage alone need only the reference's."""
    _check_arith(arith)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ref = torch.as_tensor(np.asarray(ref_feats, np.float32), device=device)
    sam = torch.as_tensor(np.asarray(sample_feats, np.float32), device=device)
    if ref.shape[1] != sam.shape[1]:
        raise ValueError(f"feature dimension differs: {ref.shape[1]} vs {sam.shape[1]}")
    ref_norms, sam_norms = sq_norms(ref, arith, half_norms), sq_norms(sam, arith, half_norms)
    radii = knn_radii(ref, (k,) if ball_k is None else (k, ball_k), block, arith, norms=ref_norms)
    sam_radii = manifold_radii(sam, k, block, arith, norms=sam_norms) if recall else None
    cover = torch.zeros((len(ref), len(sam)), dtype=torch.bool, device=device) if keep_cover else None
    balls = None if ball_k is None else Balls(radii[ball_k], len(sam))
    sam_in, ref_in = _covered(ref, sam, ref_norms, sam_norms, radii[k], sam_radii, block, arith, cover, balls)
    return Membership(sam_in.cpu().numpy(), ref_in.cpu().numpy(), cover, balls)


def precision_recall_literal(ref_feats, sample_feats, *, k: int = K) -> tuple[float, float]:
    """The definition, written literally (Kynkaanniemi et al. 2019, Eq. 1-2) in float64.

    Full distance matrices and `(d <= r).any()`: O(N M) memory, for checking
    :func:`precision_recall` (the blocked, fused form the protocol runs) on small sets.
    """
    ref = np.asarray(ref_feats, np.float64)
    sam = np.asarray(sample_feats, np.float64)
    if min(len(ref), len(sam)) <= k:
        raise ValueError(f"precision/recall need more than {k} points per set, got {len(ref)} and {len(sam)}")

    def sq_dist(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # ||u_i - v_j||^2, by differences
        return ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)

    r_ref = np.sort(sq_dist(ref, ref), axis=1)[:, k]  # k-th neighbour; column 0 is the point itself
    r_sam = np.sort(sq_dist(sam, sam), axis=1)[:, k]
    d = sq_dist(ref, sam)  # D(reference, samples)
    precision = (d <= r_ref[:, None]).any(axis=0).mean()  # a sample inside some reference ball
    recall = (d <= r_sam[None, :]).any(axis=1).mean()  # a reference point inside some sample ball
    return float(precision), float(recall)
