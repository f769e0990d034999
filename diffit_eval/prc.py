"""Improved precision and recall (Kynkaanniemi et al. 2019) with the rules of ADM's evaluator.

- Distances are squared Euclidean, |u|^2 - 2 u.v + |v|^2 clamped at 0, computed in float16 as
  ADM does (inputs, norms, products and sums each rounded to float16) and redone in float32 for a
  block with any non-finite value. The products are accumulated in float32 (exact for float16
  inputs), as a GPU's half-precision matmul does; the order of that accumulation is the BLAS's,
  so CPU and GPU may differ in the last float16 bit of a few distances.
- The radius of a point is the distance to its k-th nearest neighbour in its own set (k = 3; the
  point itself, at distance 0, is not counted).
- precision = share of samples within (<=) the radius of at least one reference point;
  recall = share of reference points within the radius of at least one sample.

Work is done in blocks of 10,000 x 10,000, and each radius is found with a running top-(k+1)
over column blocks, so memory stays bounded by a few blocks whatever the set sizes (about 1 GB
of work space at the default block, `benchmarks/bench_prc.py`). Inside a block the float16 steps
run in place on one half-precision buffer: float16 arithmetic rounds each result exactly as the
float32-then-round emulation would, so this is the same arithmetic with fewer passes over memory.
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK = 10_000
K = 3


def _fp16_round(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(torch.float32)


def _sq_norms16(x16: torch.Tensor) -> torch.Tensor:
    """|x|^2 of float16-valued rows: squares rounded to float16, summed in float32, rounded."""
    return (x16 * x16).to(torch.float16).float().sum(1).to(torch.float16)


def _block_distances(u: torch.Tensor, v: torch.Tensor, half: bool = True) -> torch.Tensor:
    """[len(u), len(v)] squared distances: float16 (ADM's values) or, after an overflow, float32."""
    if half:
        u16, v16 = _fp16_round(u), _fp16_round(v)
        d = torch.mm(u16, v16.T).to(torch.float16)  # u.v rounded to float16
        d.mul_(-2)                                     # -2 u.v (exact, or -inf on overflow)
        d.add_(_sq_norms16(u16)[:, None])              # |u|^2 - 2 u.v, rounded
        d.add_(_sq_norms16(v16)[None, :])              # ... + |v|^2, rounded
        d.clamp_min_(0)
        # ADM's test is tf.reduce_all(tf.math.is_finite(d)); after the clamp every entry is in
        # [0, inf] or nan, and max() propagates nan, so this is the same test in one cheap pass.
        if torch.isfinite(d.max()):
            return d
    u, v = u.float(), v.float()
    nu, nv = (u * u).sum(1), (v * v).sum(1)
    return (nu[:, None] - 2 * (u @ v.T) + nv[None, :]).clamp_min(0)


def pairwise_sq_distances(u: torch.Tensor, v: torch.Tensor, half: bool = True) -> torch.Tensor:
    """[len(u), len(v)] squared distances, float32 holding ADM's float16 values (or plain float32)."""
    return _block_distances(u, v, half).float()


def manifold_radii(feats: torch.Tensor, k: int = K, block: int = BLOCK, half: bool = True) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour within `feats` (self excluded)."""
    n = len(feats)
    if n <= k:
        raise ValueError(f"precision/recall need more than {k} points per set, got {n}")
    radii = torch.empty(n, dtype=torch.float32, device=feats.device)
    for r0 in range(0, n, block):
        rows = feats[r0:r0 + block]
        best = None  # the k+1 smallest distances seen so far per row (self at 0 is one of them)
        for c0 in range(0, n, block):
            d = _block_distances(rows, feats[c0:c0 + block], half)
            top = torch.topk(d, min(k + 1, d.shape[1]), dim=1, largest=False).values.float()
            del d
            cand = top if best is None else torch.cat([best, top], dim=1)
            best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii[r0:r0 + block] = best[:, k]
    return radii


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int, half: bool) -> torch.Tensor:
    """For each point: is it within (<=) the radius of at least one centre?"""
    out = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    # A radius from a block that overflowed float16 is a float32 value; compare in float32 then.
    radii16 = radii.half() if torch.equal(radii.half().float(), radii) else None
    for p0 in range(0, len(points), block):
        for c0 in range(0, len(centres), block):
            d = _block_distances(points[p0:p0 + block], centres[c0:c0 + block], half)
            r = radii[c0:c0 + block]
            if d.dtype == torch.float16:
                if radii16 is not None:
                    r = radii16[c0:c0 + block]
                else:
                    d = d.float()
            # d <= r for some centre  <=>  min over centres of (d - r) <= 0: the difference of two
            # floats of one precision, rounded, has the sign of the exact difference and is 0 only
            # when they are equal (gradual underflow), so this is ADM's `<=`, one pass cheaper.
            d.sub_(r[None, :])
            out[p0:p0 + block] |= d.amin(dim=1) <= 0
            del d
    return out


def precision_recall(ref_feats, sample_feats, *, k: int = K, block: int = BLOCK, half: bool = True,
                     device: str | torch.device | None = None) -> tuple[float, float]:
    """(precision, recall) of `sample_feats` against `ref_feats` ([N, D] arrays)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ref = torch.as_tensor(np.asarray(ref_feats, np.float32), device=device)
    sam = torch.as_tensor(np.asarray(sample_feats, np.float32), device=device)
    if ref.shape[1] != sam.shape[1]:
        raise ValueError(f"feature dimension differs: {ref.shape[1]} vs {sam.shape[1]}")
    ref_radii = manifold_radii(ref, k, block, half)
    sam_radii = manifold_radii(sam, k, block, half)
    # Shares as float64, as ADM's np.mean(status.astype(np.float64)) (a float32 mean gives 0.93333334).
    precision = _covered(sam, ref, ref_radii, block, half).sum().item() / len(sam)
    recall = _covered(ref, sam, sam_radii, block, half).sum().item() / len(ref)
    return precision, recall
