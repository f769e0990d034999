"""The ADM evaluation protocol (issue 2): our numbers against torch-fidelity, clean-fid and brute force.

Network-level tests use the stand-in weights (`standin_weights`, tests/conftest.py) loaded
through the real weights path, and two sets of 16 small images extracted once per session.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffit_eval.errors import UserError
from diffit_eval.features.extract import FeatureSet, batch_features, extract_batch
from diffit_eval.features.network import InceptionFeatures
from diffit_eval.features.stats import RunningStats
from diffit_eval.io.readers import NpzMember
from diffit_eval.io.sources import FolderSource, NpzSource, open_samples
from diffit_eval.metrics.fid import (
    FID_METHODS,
    frechet_distance,
    frechet_distance_by,
    frechet_distance_sqrtm,
    low_rank_factor,
    trace_sqrt_product,
)
from diffit_eval.metrics.inception_score import inception_score
from diffit_eval.metrics.prc import manifold_radii, pairwise_sq_distances, precision_recall, precision_recall_literal


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def fid_of(fa: FeatureSet, fb: FeatureSet) -> float:
    return frechet_distance(fa.pool.mean, fa.pool.cov, fb.pool.mean, fb.pool.cov)


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


class TensorDataset(torch.utils.data.Dataset):
    """torch-fidelity's Dataset input: uint8 CHW tensors."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = nchw(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def write_pngs(images: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:04d}.png")
    return folder


# --- against torch-fidelity and clean-fid -------------------------------------------------------


# Our prepared network (batch norm folded, channels-last; docs/PROTOCOL.md) against torch-fidelity's
# unfolded one: max |difference| / max |value| of each feature set, and FID relative. On the
# random-weight stand-in float32 rounding alone moves torch-fidelity's own pool_3 1.8e-4 from a
# float64 forward (measured; a random network amplifies rounding), so the feature bound sits
# below that; `test_prepared_network_is_as_accurate_as_torch_fidelity` checks against float64.
# FID moves with those roundings by the CPU's kernels: 2.4e-6 relative on an AVX2 EPYC, under 1e-6
# on an AVX-512 one; a wrong feature (another layer, another resize) moves it by over 1e-2.
FEATURE_AGREEMENT = 1e-4
FID_AGREEMENT = 1e-5


def scaled_difference(ours, theirs) -> float:
    ours, theirs = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(theirs, dtype=torch.float64)
    return float((ours - theirs).abs().max() / theirs.abs().max())


def test_fid_is_and_sfid_features_match_torch_fidelity(standin_weights, metrics_images, metrics_features, monkeypatch):
    """FID equal to torch-fidelity's calculate_metrics (<= FID_AGREEMENT), IS with aligned splits (<= 1e-4), and
    pool_3, logits and our sFID tap (torch-fidelity's own Mixed_6d.branch1x1 output in the same
    forward) within FEATURE_AGREEMENT of torch-fidelity's, row by row."""
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    a, b = metrics_images["A"], metrics_images["B"]
    n = len(a)
    taps, outputs = [], []  # Mixed_6d.branch1x1 output and (pool_3, logits) of each forward (input1 first)
    original_forward = FeatureExtractorInceptionV3.forward

    def spying_forward(self, x):
        hook = self.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: taps.append(o.detach().clone()))
        try:
            out = original_forward(self, x)
            outputs.append(sorted((t.detach().clone() for t in out), key=lambda t: -t.shape[1]))  # pool, logits
            return out
        finally:
            hook.remove()

    monkeypatch.setattr(FeatureExtractorInceptionV3, "forward", spying_forward)
    theirs = torch_fidelity.calculate_metrics(
        input1=TensorDataset(a),
        input2=TensorDataset(b),
        fid=True,
        isc=True,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(standin_weights),
        cuda=False,
        batch_size=n,
        samples_shuffle=False,
        isc_splits=2,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    fa, fb = metrics_features["A"], metrics_features["B"]

    fid = fid_of(fa, fb)
    assert fid > 1.0  # the two sets differ: a real comparison, not 0 == 0
    assert rel(fid, theirs["frechet_inception_distance"]) <= FID_AGREEMENT

    # torch-fidelity, unshuffled, cuts N = 2 * 8 into [0:8], [8:16]: ADM's in-order splits of 8.
    is_mean, is_std = inception_score(fa.all_logits(), split_size=n // 2)
    assert is_mean > 2.0  # the stand-in's logits are informative
    assert rel(is_mean, theirs["inception_score_mean"]) <= 1e-4
    assert rel(is_std, theirs["inception_score_std"]) <= 1e-3
    # ...and a different split (what a shuffled or 10-split torch-fidelity run would do) is visibly different.
    assert rel(inception_score(fa.all_logits(), split_size=n)[0], is_mean) > 1e-3

    assert len(taps) == 2 and taps[0].shape == (n, 192, 17, 17)
    net = InceptionFeatures(standin_weights)
    for images, tap, (pool, logits), fs in zip((a, b), taps, outputs, (fa, fb)):
        spatial = tap[:, :7].permute(0, 2, 3, 1).flatten(1)  # ADM: channels-last, first 7 channels
        assert spatial.shape == (n, 2023)
        ours = batch_features(net, images)
        for mine, reference in ((ours.pool, pool), (ours.logits, logits), (ours.spatial, spatial)):
            assert scaled_difference(mine, reference) <= FEATURE_AGREEMENT
        assert scaled_difference(ours.pool, fs.all_pool_rows()) == 0  # the fixture's rows are these rows
        assert scaled_difference(fs.spatial.mean, RunningStats(2023).update(spatial).mean) <= FEATURE_AGREEMENT
    assert scaled_difference(taps[0], taps[1]) > 0.1  # two different image sets: the bound is not vacuous


CLEANFID_DIM = 256


def test_fid_matches_clean_fid_legacy_tensorflow(standin_weights, metrics_images, metrics_features, tmp_path):
    """clean-fid's compute_fid on PNG folders, legacy_tensorflow mode, our network as custom_feat_extractor.

    In that mode clean-fid does not resize: its dataset hands the network float 0-255 NCHW at the
    stored size (uint8 -> ToTensor -> * 255) and expects the network to resize (as TF did). Our
    extractor rounds back to uint8 and must find exactly our images there, in our order; it then
    returns the pool_3 rows our own extraction gave for that very batch (the network is
    deterministic and batch-invariant on CPU, and its equality with torch-fidelity's forward is the
    test above), so this checks clean-fid's image reading, statistics and Frechet distance against
    ours without paying for a third pass of Inception on CPU. The rows handed over are the first
    CLEANFID_DIM columns of pool_3: clean-fid's scipy sqrtm of a 2048-d product takes ~15 s on 2
    cores, and what is compared (reading, statistics, Frechet distance) is the same at any width;
    ours is our RunningStats and frechet_distance of the same columns.
    """
    from cleanfid import fid as cleanfid

    expected = {
        name: (nchw(images), torch.from_numpy(metrics_features[name].all_pool_rows()[:, :CLEANFID_DIM]))
        for name, images in metrics_images.items()
    }
    seen = []

    def extractor(batch: torch.Tensor) -> torch.Tensor:
        assert batch.dtype == torch.float32 and batch.shape[1:] == (3, 32, 32)
        images = batch.round().clamp(0, 255).to(torch.uint8)
        assert torch.allclose(batch, images.float(), atol=1e-3)  # integer values after /255 * 255
        for name, (want, rows) in expected.items():
            if torch.equal(images, want):
                seen.append(name)
                return rows
        raise AssertionError("clean-fid fed the network other pixels than ours")

    n = len(metrics_images["A"])
    score = cleanfid.compute_fid(
        str(write_pngs(metrics_images["A"], tmp_path / "A")),
        str(write_pngs(metrics_images["B"], tmp_path / "B")),
        mode="legacy_tensorflow",
        custom_feat_extractor=extractor,
        num_workers=0,
        batch_size=n,
        device=torch.device("cpu"),
        verbose=False,
        use_dataparallel=False,
    )
    assert sorted(seen) == ["A", "B"]
    a, b = (RunningStats(CLEANFID_DIM).update(expected[k][1].numpy()) for k in ("A", "B"))
    assert rel(frechet_distance(a.mean, a.cov, b.mean, b.cov), float(score)) <= 1e-5


def test_clean_resize_is_clean_fids_resize(standin_weights, metrics_images, tmp_path):
    """`--resize clean` feeds the network what clean-fid's `clean` mode feeds its own (PIL bicubic, float)."""
    from cleanfid.utils import ResizeDataset

    images = metrics_images["A"][:3]
    files = sorted(write_pngs(images, tmp_path / "pngs").iterdir())
    theirs = torch.stack([ResizeDataset(files, mode="clean")[i] for i in range(len(files))])
    ours = InceptionFeatures(standin_weights, resize="clean")._to_299(nchw(images))
    assert ours.shape == theirs.shape == (3, 3, 299, 299)
    assert torch.equal(ours, theirs)
    legacy = InceptionFeatures(standin_weights)._to_299(nchw(images))
    assert (legacy - ours).abs().max() > 1.0  # the two modes really differ


def test_feature_network_is_batch_invariant(standin_weights, metrics_images, metrics_features):
    """Features of a batch do not depend on what else is in it (so `--batch-size` cannot move FID).
    On one thread, where PyTorch runs a 1x1 convolution of 16 images in oneDNN and of fewer in its
    own GEMM (pool_3 differs by ~3.5e-5 between the two), one call of 16 equals calls of 3 and 13:
    the network's fixed CPU micro-batch (diffit_eval/features/device.py). With more threads every
    call size already takes oneDNN, so one thread is the case that can fail."""
    net = InceptionFeatures(standin_weights)
    assert net.is_standin and "STAND-IN" in net.label and net.describe()["standin"] is True
    fs = FeatureSet()
    extract_batch(net, metrics_images["A"][:3], fs)
    np.testing.assert_array_equal(fs.all_pool_rows(), metrics_features["A"].all_pool_rows()[:3])
    np.testing.assert_array_equal(fs.all_logits(), metrics_features["A"].all_logits()[:3])
    images = torch.from_numpy(metrics_images["A"]).permute(0, 3, 1, 2).contiguous()
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole, first, rest = net(images), net(images[:3]), net(images[3:])
    finally:
        torch.set_num_threads(saved)
    assert len(images) == 16
    for a, b, c in zip(whole, first, rest):
        torch.testing.assert_close(a, torch.cat([b, c]), rtol=0, atol=0)


# --- Frechet distance ---------------------------------------------------------------------------


def _gaussian_stats(rng, n, d, rank=None):
    rank = rank or d
    basis = rng.standard_normal((d, rank)) * rng.uniform(0.1, 2.0, rank)
    x = rng.standard_normal((n, rank)) @ basis.T + rng.standard_normal(d) + 0.05 * rng.standard_normal((n, d))
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("n, rank", [(2000, None), (500, 8)])
def test_frechet_distance_eigh_route_equals_adm_sqrtm_route(n, rank):
    rng = np.random.default_rng(n)
    mu1, s1 = _gaussian_stats(rng, n, 64, rank)
    mu2, s2 = _gaussian_stats(rng, n, 64, rank)
    ours, adm = frechet_distance(mu1, s1, mu2, s2), frechet_distance_sqrtm(mu1, s1, mu2, s2)
    assert rel(ours, adm) <= 1e-9
    assert abs(frechet_distance(mu1, s1, mu1, s1)) <= 1e-9 * np.trace(s1)


def test_frechet_distance_of_rank_deficient_covariances_is_stable():
    """Fewer samples than dimensions: the null space's rounding noise must not move FID.

    ADM's sqrtm adds ~1e-8 of noise-eigenvalue roots here; ours drops them, so a reordering of
    the samples (what another batch size does to the float64 sums) changes nothing measurable.
    """
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 64)) * rng.uniform(0.1, 2, 64) + 0.5
    y = rng.standard_normal((40, 64)) * rng.uniform(0.1, 2, 64)
    stats = [RunningStats(64).update(x[:3]).update(x[3:]), RunningStats(64).update(y)]
    ours = frechet_distance(stats[0].mean, stats[0].cov, stats[1].mean, stats[1].cov)
    reordered = RunningStats(64)
    for i in rng.permutation(40):
        reordered.update(x[i : i + 1])
    assert rel(frechet_distance(reordered.mean, reordered.cov, stats[1].mean, stats[1].cov), ours) <= 1e-12
    assert rel(ours, frechet_distance_sqrtm(stats[0].mean, stats[0].cov, stats[1].mean, stats[1].cov)) <= 1e-6


@pytest.mark.parametrize("n, d", [(10, 64), (33, 64), (40, 300)])
def test_trace_sqrt_product_low_rank_route_equals_the_eigh_route(n, d):
    """Fewer samples than half the dimensions: the pivoted-Cholesky factor F F^T = S of the
    low-rank covariance gives tr sqrt(S1 S2) as the eigenvalues of F^T S_other F; it must equal the
    d x d eigendecomposition route (forced with max_rank=0), whichever covariance is the low-rank
    one, and the factor must reproduce S."""
    rng = np.random.default_rng(n + d)
    x = np.maximum(rng.standard_normal((n, d)) * rng.uniform(0.1, 2, d) + 0.3, 0)
    y = np.maximum(rng.standard_normal((4 * d, d)) * rng.uniform(0.1, 2, d), 0)
    low, full = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    f = low_rank_factor(torch.from_numpy(low), max_rank=n)
    assert f is not None and f.shape == (d, n - 1)  # rank of n centred rows
    assert np.abs(f.numpy() @ f.numpy().T - low).max() <= 1e-12 * np.abs(low).max()
    assert low_rank_factor(torch.from_numpy(full), max_rank=d - 1) is None  # full rank: no factor
    eigh_route = trace_sqrt_product(low, full, max_rank=0)
    for s1, s2 in ((low, full), (full, low)):
        assert rel(trace_sqrt_product(s1, s2), eigh_route) <= 1e-12
    both_low = np.cov(y[: n + 3], rowvar=False)
    assert rel(trace_sqrt_product(low, both_low), trace_sqrt_product(low, both_low, max_rank=0)) <= 1e-12
    assert trace_sqrt_product(full, full) == trace_sqrt_product(full, full, max_rank=0)  # full rank: unchanged


def adm_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """ADM's `FIDStatistics.frechet_distance` (guided-diffusion evaluations/evaluator.py), literally."""
    import warnings

    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
        except TypeError:  # SciPy >= 1.18 dropped `disp`; the matrix is the same
            covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"Imaginary component {m}")
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean


@pytest.mark.parametrize("n, d", [(400, 64), (40, 64), (10, 64)])
def test_fid_method_adm_sqrtm_is_adms_routine(n, d):
    """Full rank and rank-deficient (n < d): ADM's digits to 1e-12; eigh differs only when rank-deficient."""
    rng = np.random.default_rng(n)
    x = np.maximum(rng.standard_normal((n, d)) * rng.uniform(0.1, 2, d) + 0.3, 0)
    y = np.maximum(rng.standard_normal((n + 7, d)) * rng.uniform(0.1, 2, d), 0)
    stats = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    want = adm_frechet_distance(*stats)
    assert rel(frechet_distance_by("adm-sqrtm")(*stats), want) <= 1e-12
    assert frechet_distance_by("eigh") is frechet_distance and set(FID_METHODS) == {"eigh", "adm-sqrtm"}
    gap = rel(frechet_distance(*stats), want)
    if n > d:
        assert gap <= 1e-9
    else:  # sqrtm keeps the roots of null-space rounding noise that eigh drops
        assert 1e-9 < gap < 1e-2


def test_fid_method_adm_sqrtm_retries_with_eps_and_checks_imaginary_parts(monkeypatch):
    import scipy.linalg

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((50, 8)), rng.standard_normal((60, 8)) + 0.5
    stats = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    real_sqrtm, calls = scipy.linalg.sqrtm, []

    def first_call_not_finite(a, *args, **kwargs):  # the first try "fails": both routes retry with eps * I
        calls.append(a)
        out = real_sqrtm(a)
        if len(calls) % 2 == 1:
            out = out * np.nan
        return (out, 0.0) if kwargs.get("disp") is False else out

    monkeypatch.setattr(scipy.linalg, "sqrtm", first_call_not_finite)
    ours = frechet_distance_sqrtm(*stats)
    offset = np.eye(8) * 1e-6
    np.testing.assert_array_equal(calls[1], (stats[1] + offset).dot(stats[3] + offset))
    assert rel(ours, adm_frechet_distance(*stats)) <= 1e-12
    monkeypatch.setattr(scipy.linalg, "sqrtm", real_sqrtm)
    assert 0 < rel(ours, frechet_distance_sqrtm(*stats)) < 1e-5  # eps moved it, a little

    # A product with a clearly negative eigenvalue: sqrtm is complex with a large imaginary diagonal.
    bad = (np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="Imaginary component"):
        adm_frechet_distance(*bad)
    with pytest.raises(ValueError, match=r"imaginary component 1\.0 in sqrtm"):
        frechet_distance_sqrtm(*bad)
    with pytest.raises(ValueError, match="unknown FID method 'svd'; choose one of eigh, adm-sqrtm"):
        frechet_distance_by("svd")


def test_frechet_distance_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimension"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- Inception score ----------------------------------------------------------------------------


def test_inception_score_follows_adm_splits_and_survives_underflow():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((23, 10)) * 3

    def adm(lg, split):  # ADM's evaluator, literally (float64 softmax)
        preds = np.exp(lg - lg.max(1, keepdims=True))
        preds /= preds.sum(1, keepdims=True)
        scores = []
        for i in range(0, len(preds), split):
            part = preds[i : i + split]
            kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
            scores.append(np.exp(np.mean(np.sum(kl, 1))))
        return float(np.mean(scores)), float(np.std(scores))

    for split in (5, 10, 23, 5000):  # 23 = 10 + 10 + 3: the last split is shorter, as in ADM
        np.testing.assert_allclose(inception_score(logits, split_size=split), adm(logits, split), rtol=1e-12)
    # Logits far apart underflow a softmax to exact zeros: ADM's formula gives nan, ours the limit.
    sharp = logits * 1000
    with np.errstate(all="ignore"):
        assert np.isnan(adm(sharp, 23)[0])
    score, _ = inception_score(sharp, split_size=23)
    one_hot = np.eye(10)[sharp.argmax(1)] * 50  # the same predictions, without underflow
    assert score == pytest.approx(adm(one_hot, 23)[0], rel=1e-9)


# --- precision / recall -------------------------------------------------------------------------


def brute_force_pr(ref: np.ndarray, sam: np.ndarray, k: int = 3, strict: bool = False) -> tuple[float, float]:
    """ADM's rules, written out: full distance matrices, k-th neighbour by np.partition, <= comparison."""

    def dist(u, v):
        return ((u[:, None, :].astype(np.float64) - v[None, :, :]) ** 2).sum(-1)

    r_ref = np.partition(dist(ref, ref), k, axis=1)[:, k]  # index 0 is the point itself
    r_sam = np.partition(dist(sam, sam), k, axis=1)[:, k]
    d = dist(sam, ref)
    inside = np.less if strict else np.less_equal
    precision = inside(d, r_ref[None, :]).any(axis=1).mean()
    recall = inside(d.T, r_sam[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_equal_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    # Small integers: every squared distance is an integer <= 72, exact in float16, and many
    # distances equal a radius exactly, so `<=` against `<` matters.
    ref = rng.integers(0, 4, (60, 8)).astype(np.float32)
    sam = rng.integers(0, 4, (45, 8)).astype(np.float32)
    want = brute_force_pr(ref, sam)
    d = ((sam[:, None, :] - ref[None]) ** 2).sum(-1)
    r_ref = np.partition(((ref[:, None] - ref[None]) ** 2).sum(-1), 3, axis=1)[:, 3]
    assert (d == r_ref[None, :]).sum() > 0, "the data must put samples exactly on a reference radius"
    assert brute_force_pr(ref, sam, strict=True) != want, "ties must change the answer for this test to bite"

    assert precision_recall(ref, sam, device="cpu") == pytest.approx(want, abs=0)
    assert precision_recall(ref, sam, block=7, device="cpu") == pytest.approx(want, abs=0)
    assert precision_recall(ref, sam, block=7, arith="exact", device="cpu") == pytest.approx(want, abs=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exact_precision_recall_equal_float64_brute_force_on_inception_like_features(seed):
    """STAND-IN pool_3-like rows (ReLU of correlated Gaussians): arith="exact" is the brute force, to the last sample."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((16, 256)) * 0.5
    ref = np.maximum(rng.standard_normal((70, 16)) @ basis + rng.standard_normal((70, 256)) - 0.3, 0).astype(np.float32)
    sam = np.maximum(rng.standard_normal((90, 16)) @ basis + rng.standard_normal((90, 256)) - 0.2, 0).astype(np.float32)
    want = brute_force_pr(ref, sam)
    assert 0 < want[0] < 1 and 0 < want[1] < 1
    assert precision_recall(ref, sam, arith="exact", device="cpu") == want
    assert precision_recall(ref, sam, arith="exact", block=9, device="cpu") == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_precision_recall_equals_the_literal_definition(seed):
    """prc's literal `(d <= r).any()` beside the blocked, fused one: equal on tied integer data and
    on pool_3-like rows, and equal to this file's brute force (written apart from both)."""
    rng = np.random.default_rng(seed)
    tied = rng.integers(0, 4, (50, 6)).astype(np.float32), rng.integers(0, 4, (41, 6)).astype(np.float32)
    basis = rng.standard_normal((8, 64))
    rows = tuple(
        np.maximum(rng.standard_normal((n, 8)) @ basis + rng.standard_normal((n, 64)) - s, 0).astype(np.float32)
        for n, s in ((60, 0.3), (75, 0.1))
    )
    for ref, sam in (tied, rows):
        literal = precision_recall_literal(ref, sam)
        assert 0 < literal[0] < 1 or 0 < literal[1] < 1
        assert literal == brute_force_pr(ref, sam)
        assert precision_recall(ref, sam, arith="exact", block=11, device="cpu") == literal
    # Small integers are exact in float16, so ADM's arithmetic gives the literal answer there too.
    assert precision_recall(*tied, device="cpu") == precision_recall_literal(*tied)
    with pytest.raises(ValueError, match="more than 3 points"):
        precision_recall_literal(tied[0][:3], tied[1])


def test_precision_recall_blocking_does_not_change_results():
    rng = np.random.default_rng(5)
    ref = rng.standard_normal((70, 32)).astype(np.float32)
    sam = (rng.standard_normal((53, 32)) * 1.2 + 0.1).astype(np.float32)
    full = precision_recall(ref, sam, block=10_000, device="cpu")
    assert precision_recall(ref, sam, block=7, device="cpu") == full
    assert precision_recall(ref, sam, block=1, device="cpu") == full
    radii_full = manifold_radii(torch.from_numpy(ref), block=10_000)
    assert torch.equal(manifold_radii(torch.from_numpy(ref), block=7), radii_full)
    assert 0 < full[0] < 1 and 0 < full[1] < 1


def test_pairwise_distances_float16_rules_and_float32_fallback():
    rng = np.random.default_rng(3)
    u = torch.from_numpy(rng.integers(0, 4, (9, 8)).astype(np.float32))
    v = torch.from_numpy(rng.integers(0, 4, (7, 8)).astype(np.float32))
    exact = ((u[:, None] - v[None]) ** 2).sum(-1)
    assert torch.equal(pairwise_sq_distances(u, v), exact)
    # Real-valued features: values are float16 numbers (ADM computes in half precision).
    x = torch.from_numpy(rng.random((20, 64)).astype(np.float32))
    d16 = pairwise_sq_distances(x, x)
    assert torch.equal(d16, d16.half().float())
    # Large features overflow float16 (|u|^2 > 65504): ADM redoes the block in float32.
    big = x * 100
    d = pairwise_sq_distances(big, big)
    assert torch.isfinite(d).all()
    b64 = big.double()
    # float32 rounding of |u|^2 ~ 1e5 (what the fallback computes in): ~1e-2 absolute
    assert torch.allclose(d.double(), ((b64[:, None] - b64[None]) ** 2).sum(-1), rtol=1e-5, atol=1.0)
    assert d.dtype == torch.float32 and pairwise_sq_distances(big, big, "exact").dtype == torch.float64
    assert not torch.equal(d, d.half().float())  # not float16 values: the fallback ran


def test_precision_recall_needs_more_than_k_points():
    with pytest.raises(ValueError, match="more than 3"):
        precision_recall(np.zeros((3, 4)), np.zeros((10, 4)), device="cpu")


def test_evaluate_reports_pr_unavailable_for_k_or_fewer_points():
    """3 samples give FID and IS, and P/R as n/a with the reason (not a crash in manifold_radii)."""
    from diffit_eval.metrics.evaluate import evaluate
    from diffit_eval.references.store import Reference

    rng = np.random.default_rng(0)
    pool = rng.random((20, 2048)).astype(np.float32)
    samples = FeatureSet()
    samples.add(
        torch.from_numpy(pool[:3]),
        torch.from_numpy(rng.standard_normal((3, 1008)).astype(np.float32)),
        torch.zeros(3, 2023),
    )
    ref = Reference(
        name="r", mu=pool[3:].mean(0).astype(np.float64), sigma=np.cov(pool[3:], rowvar=False), pr_features=pool[3:]
    )
    res = evaluate(samples, ref, ["fid", "is", "pr"], device="cpu")
    assert res.values["fid"] > 0 and res.values["is"] > 1 and res.values["precision"] is None
    assert "more than 3 samples" in res.unavailable["pr"]
    ref.pr_features = pool[3:6]
    samples.merge(samples)  # 6 samples now
    res = evaluate(samples, ref, ["pr"], device="cpu")
    assert "more than 3 reference images" in res.unavailable["pr"]


# --- statistics ---------------------------------------------------------------------------------


def test_running_stats_merged_from_batches_and_files_equal_one_shot(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1000, 16)) @ rng.standard_normal((16, 16)) + 3.0).astype(np.float32)
    want_mu, want_cov = np.mean(x.astype(np.float64), 0), np.cov(x.astype(np.float64), rowvar=False)

    cuts = [0, 1, 2, 5, 100, 333, 334, 999, 1000]  # uneven batches, one of a single row
    one = RunningStats(16)
    for lo, hi in zip(cuts, cuts[1:]):
        one.update(x[lo:hi] if lo % 2 else torch.from_numpy(x[lo:hi]))  # numpy and torch inputs
    np.testing.assert_allclose(one.mean, want_mu, rtol=1e-10)
    np.testing.assert_allclose(one.cov, want_cov, rtol=1e-10, atol=1e-10 * np.abs(want_cov).max())

    # "Files" (a run's shards): float32 rows saved, loaded and replayed in order give the same bits.
    from diffit_eval.features.extract import load_feature_rows, save_feature_rows

    merged, direct = FeatureSet(), FeatureSet()
    for i, (lo, hi) in enumerate([(0, 400), (400, 401), (401, 1000)]):
        rows = {
            "pool": np.zeros((hi - lo, 2048), np.float32),
            "spatial": np.zeros((hi - lo, 2023), np.float32),
            "logits": np.zeros((hi - lo, 1008), np.float32),
        }
        rows["pool"][:, :16] = x[lo:hi]
        save_feature_rows(tmp_path / f"part{i}.npz", rows)
        merged.add_rows(load_feature_rows(tmp_path / f"part{i}.npz", hi - lo))
    pool = np.zeros((1000, 2048), np.float32)
    pool[:, :16] = x
    for lo in range(0, 1000, 7):  # other batches than the files', as tensors
        n = len(pool[lo : lo + 7])
        direct.add(torch.from_numpy(pool[lo : lo + 7]), torch.zeros(n, 1008), torch.zeros(n, 2023))
    assert merged.count == 1000 and merged.all_pool_rows().shape == (1000, 2048)
    np.testing.assert_allclose(merged.pool.mean[:16], want_mu, rtol=1e-10)
    np.testing.assert_allclose(merged.pool.cov[:16, :16], want_cov, rtol=1e-10, atol=1e-10 * np.abs(want_cov).max())
    np.testing.assert_array_equal(merged.pool.mean, direct.pool.mean)  # other batches, same rows: same bits
    np.testing.assert_array_equal(merged.pool.cov, direct.pool.cov)
    assert not list(tmp_path.glob(".*.tmp"))

    with pytest.raises(ValueError, match="at least 2"):
        RunningStats(4).update(np.ones((1, 4))).cov


# --- sample sources -----------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_source_streams_stored_and_compressed(tmp_path, compressed):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (23, 5, 6, 3), dtype=np.uint8)
    labels = np.arange(23)
    path = tmp_path / "samples.npz"
    (np.savez_compressed if compressed else np.savez)(path, images, labels)
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("arr_0.npy").compress_type == (zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED)

    src = open_samples(path)
    assert isinstance(src, NpzSource) and src.num_images == 23 and src.resolution == (5, 6)
    for bs in (1, 4, 23, 64):
        np.testing.assert_array_equal(np.concatenate(list(src.iter_batches(bs))), images)
    np.testing.assert_array_equal(np.concatenate(list(src.iter_batches(4, limit=10))), images[:10])
    member = NpzMember(path, "arr_0")
    for start, count in [(17, 3), (0, 1), (5, 18), (22, 1), (3, 9)]:  # out of order: seeks back and forth
        np.testing.assert_array_equal(member.read_rows(start, count), images[start : start + count])
    np.testing.assert_array_equal(src.labels(), labels)


def test_folder_source_equals_npz_source(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (11, 8, 8, 3), dtype=np.uint8)
    folder = write_pngs(images, tmp_path / "pngs" / "nested")
    src = open_samples(tmp_path / "pngs")
    assert isinstance(src, FolderSource) and src.num_images == 11
    np.testing.assert_array_equal(np.concatenate(list(src.iter_batches(3))), images)
    Image.fromarray(images[0][:4]).save(folder / "9999.png")  # a different size
    with pytest.raises(UserError, match="resize them first"):
        list(open_samples(tmp_path / "pngs").iter_batches(64))


def test_prepared_network_is_as_accurate_as_torch_fidelity(standin_weights, metrics_images):
    """Against a float64 forward of torch-fidelity's unfolded network (the exact function), our
    folded channels-last float32 pool_3 is no further off than torch-fidelity's own float32 one.

    Measured as the root-mean-square error over all 4 x 2048 values relative to the values' RMS:
    ours / theirs = 1.03 on an AVX2 EPYC (2.65e-5 / 2.56e-5). The largest single error is an
    extreme of 8,192 roundings and swings between sets of images (0.95x to 1.6x there), so it is
    not the measure; the bound 1.25x leaves room for another CPU's kernels."""
    from helpers import torch_fidelity_pool

    images = metrics_images["A"][:4]
    pool32, exact = (
        torch_fidelity_pool(standin_weights, images),
        torch_fidelity_pool(standin_weights, images, torch.float64),
    )
    ours = batch_features(InceptionFeatures(standin_weights), images).pool

    def rms_error(x) -> float:
        x = torch.as_tensor(x, dtype=torch.float64)
        return float((x - exact).pow(2).mean().sqrt() / exact.pow(2).mean().sqrt())

    theirs_error, our_error = rms_error(pool32), rms_error(ours)
    assert 0 < theirs_error < 1e-3 and our_error <= 1.25 * theirs_error, (our_error, theirs_error)


def test_batch_norm_folding_is_the_same_function_and_covers_every_layer(standin_weights):
    """fold_batch_norm on random BN statistics equals conv -> BN in float64; on InceptionV3 it folds
    all 94 convolutions, leaves no BatchNorm, and the parameters are channels-last."""
    from diffit_eval.features.inference import fold_batch_norm, full_fp32

    torch.manual_seed(0)
    block = torch.nn.Module()
    block.conv = torch.nn.Conv2d(5, 7, 3, stride=2, padding=1, bias=False)
    block.bn = torch.nn.BatchNorm2d(7, eps=1e-3)
    with torch.no_grad():
        block.bn.weight.uniform_(0.5, 2)
        block.bn.bias.normal_()
        block.bn.running_mean.normal_()
        block.bn.running_var.uniform_(0.1, 3)
    block.eval()
    x = torch.randn(2, 5, 11, 11, dtype=torch.float64)
    torch.set_grad_enabled(False)
    try:
        expected = block.bn.double()(block.conv.double()(x))
        block.float()
        assert fold_batch_norm(block) == 1 and isinstance(block.bn, torch.nn.Identity)
        folded = block.conv.double()(x)
    finally:
        torch.set_grad_enabled(True)
    assert scaled_difference(folded, expected) <= 1e-7  # float32 weights, float64 arithmetic

    net = InceptionFeatures(standin_weights).net
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 94 and all(c.bias is not None for c in convs)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs if c.kernel_size != (1, 1))
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
