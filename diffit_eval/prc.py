"""Improved precision and recall (Kynkaanniemi et al. 2019) with the rules of ADM's evaluator.

- Distances are squared Euclidean, |u|^2 - 2 u.v + |v|^2 clamped at 0, computed in float16 as
  ADM does (inputs, norms, products and sums each rounded to float16) and redone in float32 for a
  block with any non-finite value. The products are accumulated in float32 (exact for float16
  inputs), which is what the GPU's half-precision matmul does; so CPU and GPU agree.
- The radius of a point is the distance to its k-th nearest neighbour in its own set (k = 3; the
  point itself, at distance 0, is not counted).
- precision = share of samples within (<=) the radius of at least one reference point;
  recall = share of reference points within the radius of at least one sample.

Work is done in blocks of 10,000 x 10,000, and each radius is found with a running top-(k+1)
over column blocks, so memory stays bounded by a few blocks whatever the set sizes.
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK = 10_000
K = 3


def _fp16_round(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(torch.float32)


def pairwise_sq_distances(u: torch.Tensor, v: torch.Tensor, half: bool = True) -> torch.Tensor:
    """[len(u), len(v)] squared distances, float32 holding ADM's float16 values (or plain float32)."""
    if half:
        u16, v16 = _fp16_round(u), _fp16_round(v)
        nu = _fp16_round((_fp16_round(u16 * u16)).sum(1))
        nv = _fp16_round((_fp16_round(v16 * v16)).sum(1))
        uv2 = _fp16_round(2 * _fp16_round(u16 @ v16.T))
        d = _fp16_round(_fp16_round(nu[:, None] - uv2) + nv[None, :]).clamp_min(0)
        if torch.isfinite(d).all() and (d < 65504).all():
            return d
    u, v = u.float(), v.float()
    nu, nv = (u * u).sum(1), (v * v).sum(1)
    return (nu[:, None] - 2 * (u @ v.T) + nv[None, :]).clamp_min(0)


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
            d = pairwise_sq_distances(rows, feats[c0:c0 + block], half)
            cand = d if best is None else torch.cat([best, d], dim=1)
            best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii[r0:r0 + block] = best[:, k]
    return radii


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int, half: bool) -> torch.Tensor:
    """For each point: is it within the radius of at least one centre?"""
    out = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    for p0 in range(0, len(points), block):
        for c0 in range(0, len(centres), block):
            d = pairwise_sq_distances(points[p0:p0 + block], centres[c0:c0 + block], half)
            out[p0:p0 + block] |= (d <= radii[None, c0:c0 + block]).any(dim=1)
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
    precision = _covered(sam, ref, ref_radii, block, half).float().mean().item()
    recall = _covered(ref, sam, sam_radii, block, half).float().mean().item()
    return precision, recall
