"""Precision/recall against ADM's evaluator graph, transcribed in numpy (tests/adm_evaluator_graph.py).

STAND-IN features: ReLU of correlated Gaussians with a shifted mean (non-negative, ~60% zeros,
squared norms ~400, like Inception pool_3). `grid=True` puts them on a 1/16 grid in [0, 1], so
every float32 accumulation (products are multiples of 1/256, sums below 2^11) is exact in any
order: what remains are the float16 roundings of each op, which must then agree bit for bit.
"""

from __future__ import annotations

import math

import adm_evaluator_graph as adm
import numpy as np
import pytest
import torch

from diffit_eval.metrics.prc import (
    half_sq_norms,
    manifold_radii,
    pairwise_sq_distances,
    precision_recall,
    sq_norms,
)


def standin_features(rng, n: int, basis: np.ndarray, shift: float = 0.0, grid: bool = True) -> np.ndarray:
    z = rng.standard_normal((n, len(basis))) @ basis + 0.35 * rng.standard_normal((n, basis.shape[1])) - 0.25 + shift
    x = np.maximum(z, 0)
    if grid:
        x = np.minimum(np.round(x * 16), 16) / 16
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((16, 2048)) * 0.25
    return {
        grid: (standin_features(rng, 120, basis, grid=grid), standin_features(rng, 150, basis, 0.03, grid=grid))
        for grid in (True, False)
    }


def test_every_distance_radius_and_pr_equals_the_evaluator_graph(sets):
    ref, sam = sets[True]
    assert 200 < (ref.astype(np.float64) ** 2).sum(1).mean() < 800 and 0.4 < (ref == 0).mean() < 0.8
    for a, b in ((ref, ref), (sam, sam), (ref, sam)):
        want, took_half = adm.distance_block(a, b)
        assert took_half
        got = pairwise_sq_distances(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        np.testing.assert_array_equal(got, want)
        exact = ((a[:, None].astype(np.float64) - b[None]) ** 2).sum(-1)
        assert (want != exact).mean() > 0.5, "the float16 roundings must matter on this data"
    # The rounding of (|u|^2 - 2 u.v) + |v|^2 is not symmetric: the orientation is part of the protocol.
    assert (adm.distance_block(ref, sam)[0] != adm.distance_block(sam, ref)[0].T).mean() > 0.01

    for feats in (ref, sam):
        want_r = adm.manifold_radii(feats)[:, 0]
        np.testing.assert_array_equal(manifold_radii(torch.from_numpy(feats)).numpy(), want_r)
        np.testing.assert_array_equal(manifold_radii(torch.from_numpy(feats), block=7).numpy(), want_r)
    want = adm.compute_prec_recall(ref, sam)
    assert precision_recall(ref, sam, device="cpu") == want
    assert precision_recall(ref, sam, block=7, device="cpu") == want
    assert adm.compute_prec_recall(ref, sam, row_batch=7, col_batch=7) == want  # no overflow: blocks change nothing
    assert 0.5 < want[0] < 1 and 0.5 < want[1] < 1


def test_overflowing_blocks_are_redone_in_float32_block_by_block_like_adm(sets):
    """Rows with |u|^2 > 65504 overflow float16; ADM redoes only the blocks that hold them."""
    ref, sam = sets[True]
    ref = ref.copy()
    ref[[3, 40]] *= 16  # integers up to 16: float32 stays exact (sums < 2^24), float16 norms overflow
    ref[3] += 4.0
    assert (ref[[3]].astype(np.float64) ** 2).sum() > 65504
    block = 16
    blocks = [
        adm.distance_block(ref[i : i + block], sam[j : j + block])
        for i in range(0, len(ref), block)
        for j in range(0, len(sam), block)
    ]
    assert {half for _, half in blocks} == {True, False}, "some blocks fall back, others stay float16"
    want = adm.compute_prec_recall(ref, sam, row_batch=block, col_batch=block)
    assert precision_recall(ref, sam, block=block, device="cpu") == want
    want_r = adm.manifold_radii(ref, block, block)[:, 0]
    np.testing.assert_array_equal(manifold_radii(torch.from_numpy(ref), block=block).numpy(), want_r)
    assert not np.array_equal(want_r, adm.manifold_radii(ref)[:, 0]), "the block size must matter here"


def test_real_valued_features_differ_only_where_float32_accumulation_order_does(sets):
    """Off the grid the matmul's float32 sum is rounded in BLAS order: a rare distance moves one half ulp."""
    ref, sam = sets[False]
    for a, b in ((ref, ref), (ref, sam), (sam, sam)):
        want, _ = adm.distance_block(a, b)
        got = pairwise_sq_distances(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        differ = got != want
        assert differ.mean() <= 1e-3
        # One half ulp of 2 u.v, at most: 2 u.v < 2^11 here, so its half ulp is at most 1.
        assert np.abs(got - want).max() <= 1.0
    # A distance one half ulp off decides a neighbourhood test only when it sits on a radius.
    assert precision_recall(ref, sam, device="cpu") == adm.compute_prec_recall(ref, sam)


def test_half_norms_are_the_exact_sum_rounded_once():
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal((6, 2048)) * rng.choice([1e-4, 0.05, 0.6], (6, 2048))).astype(np.float32)
    x[5, :40] = 300.0  # a norm that overflows float16
    sq = np.square(x[:5].astype(np.float16).astype(np.float32)).astype(np.float16)
    want = np.array([math.fsum(row.astype(np.float64)) for row in sq])  # the correctly rounded sum
    got = half_sq_norms(x)
    assert np.isfinite(got[:5]).all() and 100 < want.min() < want.max() < 2000
    np.testing.assert_array_equal(got[:5], want.astype(np.float16))
    assert np.isinf(got[5])
    # float16 norms in the adm-fp16 rule; float64 ones for exact.
    t = torch.from_numpy(x[:5])
    assert sq_norms(t).dtype == torch.float16
    np.testing.assert_allclose(sq_norms(t, "exact").numpy(), (x[:5].astype(np.float64) ** 2).sum(1), rtol=1e-15)


def test_unknown_arithmetic_is_refused():
    with pytest.raises(ValueError, match="unknown precision/recall arithmetic 'fp8'; choose one of adm-fp16, exact"):
        precision_recall(np.zeros((5, 4)), np.zeros((5, 4)), arith="fp8", device="cpu")
