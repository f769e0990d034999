"""EDM's AugmentPipe (diffit/augment.py): identity at p = 0, the 9-label layout, each label's meaning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffit.augment import EDM_AUGMENT_KWARGS, AugmentPipe
from diffit.random import BatchRandom

N, H, W = 16, 32, 32


def smooth_images(n: int = N, seed: int = 0) -> tuple[torch.Tensor, list]:
    """f(u, v) = sum of two low-frequency cosines per channel, u, v pixel coordinates about the centre."""
    rng = np.random.default_rng(seed)
    params = rng.uniform([-0.25, -0.25, 0], [0.25, 0.25, 2 * np.pi], size=(n, 3, 2, 3))
    cx, cy = (W - 1) / 2, (H - 1) / 2
    v, u = np.meshgrid(np.arange(H) - cy, np.arange(W) - cx, indexing="ij")
    images = np.zeros((n, 3, H, W))
    for i in range(n):
        for c in range(3):
            for a, b, phase in params[i, c]:
                images[i, c] += 0.5 * np.cos(a * u + b * v + phase)
    return torch.tensor(images, dtype=torch.float32), params


def evaluate(params, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The smooth image of `params` at input coordinates (u, v), shape (3, H, W)."""
    return np.stack([sum(0.5 * np.cos(a * u + b * v + ph) for a, b, ph in params[c]) for c in range(3)])


def run(pipe: AugmentPipe, images: torch.Tensor, seed: int = 1):
    return pipe(images, BatchRandom(torch.Generator().manual_seed(seed)))


def test_identity_at_p0():
    images, _ = smooth_images()
    pipe = AugmentPipe(p=0, **EDM_AUGMENT_KWARGS)
    out, labels = run(pipe, images)
    assert torch.equal(out, images)
    assert labels.shape == (N, 9) and not labels.any()


def test_label_layout_matches_edm_draws():
    """The 9 labels in EDM's order, from EDM's draws in EDM's order (a direct transcription of augment.py)."""
    n, p = 64, 0.12
    images, _ = smooth_images(n)
    _, labels = run(AugmentPipe(p=p, **EDM_AUGMENT_KWARGS), images, seed=5)

    g = torch.Generator().manual_seed(5)
    expect = []
    w = torch.randint(2, [n], generator=g)  # xflip
    expect.append(torch.where(torch.rand([n], generator=g) < 1e8 * p, w, 0).float())
    w = torch.randint(2, [n], generator=g)  # yflip
    expect.append(torch.where(torch.rand([n], generator=g) < 1 * p, w, 0).float())
    w = torch.randn([n], generator=g)  # scale
    expect.append(torch.where(torch.rand([n], generator=g) < p, w, 0))
    w = (torch.rand([n], generator=g) * 2 - 1) * np.pi  # rotate_frac
    w = torch.where(torch.rand([n], generator=g) < p, w, 0)
    expect += [w.cos() - 1, w.sin()]
    w = torch.randn([n], generator=g)  # aniso
    r = (torch.rand([n], generator=g) * 2 - 1) * np.pi
    w = torch.where(torch.rand([n], generator=g) < p, w, 0)
    r = torch.where(torch.rand([n], generator=g) < 0.5, r, 0)
    expect += [w * r.cos(), w * r.sin()]
    w = torch.randn([n, 2], generator=g).t()  # translate_frac
    w = torch.where(torch.rand([n], generator=g)[None] < p, w, 0)
    expect += [w[0], w[1]]
    torch.testing.assert_close(labels, torch.stack(expect, dim=1), rtol=0, atol=0)


def test_probabilities():
    """xflip (1e8 x p) draws a flip bit for every image; each other transform applies with probability p."""
    n, p = 4096, 0.12
    images = torch.zeros(n, 3, 8, 8)
    _, labels = run(AugmentPipe(p=p, **EDM_AUGMENT_KWARGS), images, seed=2)
    assert abs((labels[:, 0] == 1).float().mean() - 0.5) < 4 * math.sqrt(0.25 / n)
    sd = 4 * math.sqrt(p * (1 - p) / n)
    for col in (2, 3, 7):  # scale, rotation, translation: non-zero exactly when applied
        assert abs((labels[:, col] != 0).float().mean() - p) < sd
    assert abs((labels[:, 1] == 1).float().mean() - p / 2) < sd


def test_flips_are_exact():
    images, _ = smooth_images()
    for kw, dim in ((dict(xflip=1), 3), (dict(yflip=1), 2)):
        out, labels = run(AugmentPipe(p=1, **kw), images)
        assert labels.shape == (N, 1) and 0 < labels.sum() < N
        for i in range(N):
            expect = images[i].flip(dim - 1) if labels[i, 0] == 1 else images[i]
            assert torch.equal(out[i], expect)


def _inverse_map(kind: str, lab: np.ndarray):
    """EDM's definition of each label: output pixel (u, v) about the centre -> input (u, v)."""
    if kind == "scale":
        s = 2 ** (lab[0] * 0.2)
        return lambda u, v: (u / s, v / s)
    if kind == "rotate_frac":
        w = math.atan2(lab[1], lab[0] + 1)
        return lambda u, v: (math.cos(w) * u - math.sin(w) * v, math.sin(w) * u + math.cos(w) * v)
    tx, ty = lab[0] * W * 0.125, lab[1] * H * 0.125
    return lambda u, v: (u - tx, v - ty)


@pytest.mark.parametrize("kind", ["scale", "rotate_frac", "translate_frac"])
def test_geometric_labels_mean_what_edm_says(kind):
    """Resampling the analytic image at the transform the labels describe reproduces the pipe's output."""
    images, params = smooth_images()
    out, labels = run(AugmentPipe(p=1, **{kind: 1}), images, seed=3)
    assert labels.abs().sum(dim=1).min() > 0  # p = 1: every image is transformed
    cx, cy = (W - 1) / 2, (H - 1) / 2
    v, u = np.meshgrid(np.arange(H) - cy, np.arange(W) - cx, indexing="ij")
    checked = 0
    for i in range(N):
        su, sv = _inverse_map(kind, labels[i].numpy().astype(np.float64))(u, v)
        inside = (np.abs(su) < cx - 4) & (np.abs(sv) < cy - 4)  # away from the reflected border
        if inside.sum() < 50:
            continue
        expect = evaluate(params[i], su, sv)
        err = np.abs(out[i].numpy() - expect)[:, inside]
        # Measured per image: mean <= 0.014, max <= 0.041 (rotation interpolates most); the opposite sign: mean 0.4, max > 1.
        assert err.mean() < 0.03 and err.max() < 0.06, (kind, i, err.mean(), err.max())
        checked += 1
    assert checked >= N // 2


def test_untransformed_images_pass_through_the_warp():
    """With the geometric path on but a transform not drawn, the filters give back the image (EDM's sym6 round trip)."""
    images, _ = smooth_images()
    out, labels = run(AugmentPipe(p=0.3, scale=1), images, seed=4)
    untouched = labels[:, 0] == 0
    assert 0 < untouched.sum() < N
    err = (out[untouched] - images[untouched]).abs()
    assert err[..., 3:-3, 3:-3].max() < 0.01
