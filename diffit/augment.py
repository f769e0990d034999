"""EDM's non-leaky geometric augmentation (Karras et al. 2022, appendix F.2; NVlabs/edm `training/augment.py`).

The transforms and their parameters follow Karras et al. 2020 ("Training Generative Adversarial
Networks with Limited Data", ADA, appendix C): per image, each transform is applied with
probability `multiplier * p`; the geometric ones are composed into one inverse matrix G_inv and
executed once, with reflect padding and a 2x up-sampled bilinear warp between sym6 wavelet
filters. EDM's training (`train.py --augment p`) enables xflip (multiplier 1e8, so every image
draws a random flip bit), yflip, isotropic scale, fractional rotation, anisotropic scale and
fractional translation, each with multiplier 1, which gives 9 augmentation labels:

    xflip: w in {0, 1}            yflip: w in {0, 1}           scale: w, s = 2^(w * scale_std)
    rotate_frac: (cos w - 1, sin w), w the angle             aniso: (w cos r, w sin r)
    translate_frac: (wx, wy), shift = (wx W, wy H) * translate_frac_std

A label is 0 exactly when its transform was not applied, so all-zero labels mean "no
augmentation": the denoiser is conditioned on them during training and given zeros (or none) when
sampling, which keeps the augmentations from leaking into the generated images.

Random numbers come from a :class:`diffit.random.BatchRandom` (default: torch's global generator,
as EDM), drawn in EDM's order, transform by transform, one value per image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diffit.random import BatchRandom

__all__ = ["EDM_AUGMENT_KWARGS", "SYM6", "AugmentPipe"]

# Multipliers of EDM's train.py (`c.augment_kwargs.update(...)`); p comes from --augment.
EDM_AUGMENT_KWARGS = dict(xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)

# Low-pass filter of the sym6 wavelet: the up/down-sampling filter around the warp.
SYM6 = [
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
]


# ----------------------------------------------------------------------------
# 2-D homogeneous matrices, batched when an entry is a tensor of per-image values.


def matrix(*rows, device=None) -> torch.Tensor:
    """Stack scalar or [N] entries into a float32 [3, 3] (or [N, 3, 3]) matrix."""
    elems = [x for row in rows for x in row]
    ref = [x for x in elems if isinstance(x, torch.Tensor)]
    if not ref:
        return torch.as_tensor(np.asarray(rows), dtype=torch.float32, device=device)
    elems = [x if isinstance(x, torch.Tensor) else torch.full_like(ref[0], float(x)) for x in elems]
    return torch.stack(elems, dim=-1).reshape(ref[0].shape + (len(rows), -1))


def translate2d(tx, ty, **kwargs) -> torch.Tensor:
    return matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], **kwargs)


def scale2d(sx, sy, **kwargs) -> torch.Tensor:
    return matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], **kwargs)


def rotate2d(theta, **kwargs) -> torch.Tensor:
    return matrix(
        [torch.cos(theta), torch.sin(-theta), 0], [torch.sin(theta), torch.cos(theta), 0], [0, 0, 1], **kwargs
    )


def translate2d_inv(tx, ty, **kwargs) -> torch.Tensor:
    return translate2d(-tx, -ty, **kwargs)


def scale2d_inv(sx, sy, **kwargs) -> torch.Tensor:
    return scale2d(1 / sx, 1 / sy, **kwargs)


def rotate2d_inv(theta, **kwargs) -> torch.Tensor:
    return rotate2d(-theta, **kwargs)


# ----------------------------------------------------------------------------
# The pipe.


class AugmentPipe:
    """EDM's AugmentPipe restricted to the transforms EDM trains with; call it as `images, labels = pipe(images)`."""

    def __init__(
        self,
        p: float = 1,  # Overall multiplier for augmentation probability.
        xflip: float = 0,  # Probability multiplier for x-flip.
        yflip: float = 0,  # Probability multiplier for y-flip.
        scale: float = 0,  # Probability multiplier for isotropic scaling.
        rotate_frac: float = 0,  # Probability multiplier for fractional rotation.
        aniso: float = 0,  # Probability multiplier for anisotropic scaling.
        translate_frac: float = 0,  # Probability multiplier for fractional translation.
        scale_std: float = 0.2,  # Log2 standard deviation of isotropic scaling.
        rotate_frac_max: float = 1,  # Range of fractional rotation, 1 = full circle.
        aniso_std: float = 0.2,  # Log2 standard deviation of anisotropic scaling.
        aniso_rotate_prob: float = 0.5,  # Probability of anisotropic scaling w.r.t. a rotated frame.
        translate_frac_std: float = 0.125,  # Standard deviation of fractional translation, relative to the image size.
    ) -> None:
        self.p = float(p)
        self.xflip, self.yflip = float(xflip), float(yflip)
        self.scale, self.rotate_frac = float(scale), float(rotate_frac)
        self.aniso, self.translate_frac = float(aniso), float(translate_frac)
        self.scale_std, self.rotate_frac_max = float(scale_std), float(rotate_frac_max)
        self.aniso_std, self.aniso_rotate_prob = float(aniso_std), float(aniso_rotate_prob)
        self.translate_frac_std = float(translate_frac_std)

    @property
    def label_dim(self) -> int:
        """Width of the augmentation labels: 1 per flip and scale, 2 per rotation, aniso and translation."""
        widths = (
            (self.xflip, 1),
            (self.yflip, 1),
            (self.scale, 1),
            (self.rotate_frac, 2),
            (self.aniso, 2),
            (self.translate_frac, 2),
        )
        return sum(width for multiplier, width in widths if multiplier > 0)

    def state(self) -> dict:
        """The constructor arguments (recorded in run folders and training states)."""
        return dict(vars(self))

    def __call__(self, images: torch.Tensor, rnd: BatchRandom | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        N, C, H, W = images.shape
        device = images.device
        rnd = rnd if rnd is not None else BatchRandom(device=device)
        if self.p == 0:  # EDM trains without a pipe at --augment 0: the images pass untouched
            return images, torch.zeros([N, self.label_dim], device=device)
        labels = [torch.zeros([N, 0], device=device)]

        def enabled(multiplier: float) -> torch.Tensor:
            # One uniform per image: the transform applies with probability multiplier * p.
            return rnd.rand([N], device=device) < multiplier * self.p

        # Pixel blitting: flips.
        if self.xflip > 0:
            w = rnd.randint(2, [N], device=device)
            w = torch.where(enabled(self.xflip), w, torch.zeros_like(w)).reshape(N, 1, 1, 1)
            images = torch.where(w == 1, images.flip(3), images)
            labels += [w]
        if self.yflip > 0:
            w = rnd.randint(2, [N], device=device)
            w = torch.where(enabled(self.yflip), w, torch.zeros_like(w)).reshape(N, 1, 1, 1)
            images = torch.where(w == 1, images.flip(2), images)
            labels += [w]

        # Select parameters for the geometric transformations, composed into G_inv (output -> input coordinates).
        I_3 = torch.eye(3, device=device)
        G_inv = I_3
        if self.scale > 0:
            w = rnd.randn([N], device=device)
            w = torch.where(enabled(self.scale), w, torch.zeros_like(w))
            s = w.mul(self.scale_std).exp2()
            G_inv = G_inv @ scale2d_inv(s, s)
            labels += [w]
        if self.rotate_frac > 0:
            w = (rnd.rand([N], device=device) * 2 - 1) * (np.pi * self.rotate_frac_max)
            w = torch.where(enabled(self.rotate_frac), w, torch.zeros_like(w))
            G_inv = G_inv @ rotate2d_inv(-w)
            labels += [w.cos() - 1, w.sin()]
        if self.aniso > 0:
            w = rnd.randn([N], device=device)
            r = (rnd.rand([N], device=device) * 2 - 1) * np.pi
            w = torch.where(enabled(self.aniso), w, torch.zeros_like(w))
            r = torch.where(rnd.rand([N], device=device) < self.aniso_rotate_prob, r, torch.zeros_like(r))
            s = w.mul(self.aniso_std).exp2()
            G_inv = G_inv @ rotate2d_inv(r) @ scale2d_inv(s, 1 / s) @ rotate2d_inv(-r)
            labels += [w * r.cos(), w * r.sin()]
        if self.translate_frac > 0:
            w = rnd.randn([N, 2], device=device).t()
            w = torch.where(enabled(self.translate_frac)[None], w, torch.zeros_like(w))
            G_inv = G_inv @ translate2d_inv(
                w[0].mul(W * self.translate_frac_std), w[1].mul(H * self.translate_frac_std)
            )
            labels += [w[0], w[1]]

        # Execute the geometric transformations.
        if G_inv is not I_3:
            images = _warp(images, G_inv)

        labels = torch.cat([x.to(torch.float32).reshape(N, -1) for x in labels], dim=1)
        return images, labels


def _warp(images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """Resample each image at G_inv x (pixel coordinates centred on the image), as EDM does."""
    N, C, H, W = images.shape
    device = images.device
    const = lambda v: torch.as_tensor(v, dtype=torch.float32, device=device)

    # Reflect-pad enough for the corners of the transformed image plus the filter support.
    cx, cy = (W - 1) / 2, (H - 1) / 2
    cp = matrix([-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1], device=device)  # [idx, xyz]
    cp = G_inv @ cp.t()  # [batch, xyz, idx]
    Hz = np.asarray(SYM6, dtype=np.float32)
    Hz_pad = len(Hz) // 4
    margin = cp[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, batch * idx]
    margin = torch.cat([-margin, margin]).max(dim=1).values  # [x0, y0, x1, y1]
    margin = margin + const([Hz_pad * 2 - cx, Hz_pad * 2 - cy] * 2)
    margin = margin.max(const([0, 0] * 2))
    margin = margin.min(const([W - 1, H - 1] * 2))
    mx0, my0, mx1, my1 = margin.ceil().to(torch.int32).tolist()

    # Pad image and adjust origin.
    images = F.pad(input=images, pad=[mx0, mx1, my0, my1], mode="reflect")
    G_inv = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, device=device) @ G_inv

    # Upsample 2x: zero-stuff, then the sym6 low-pass along x and y.
    conv_weight = torch.as_tensor(Hz[None, None, ::-1].copy(), dtype=images.dtype, device=device).tile([C, 1, 1])
    conv_pad = (len(Hz) + 1) // 2
    images = torch.stack([images, torch.zeros_like(images)], dim=4).reshape(N, C, images.shape[2], -1)[:, :, :, :-1]
    images = F.conv2d(images, conv_weight.unsqueeze(2), groups=C, padding=[0, conv_pad])
    images = torch.stack([images, torch.zeros_like(images)], dim=3).reshape(N, C, -1, images.shape[3])[:, :, :-1, :]
    images = F.conv2d(images, conv_weight.unsqueeze(3), groups=C, padding=[conv_pad, 0])
    G_inv = scale2d(2, 2, device=device) @ G_inv @ scale2d_inv(2, 2, device=device)
    G_inv = translate2d(-0.5, -0.5, device=device) @ G_inv @ translate2d_inv(-0.5, -0.5, device=device)

    # Execute the transformation (bilinear, in affine_grid's [-1, 1] coordinates).
    shape = [N, C, (H + Hz_pad * 2) * 2, (W + Hz_pad * 2) * 2]
    G_inv = (
        scale2d(2 / images.shape[3], 2 / images.shape[2], device=device)
        @ G_inv
        @ scale2d_inv(2 / shape[3], 2 / shape[2], device=device)
    )
    grid = F.affine_grid(theta=G_inv[:, :2, :], size=shape, align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # Downsample 2x with the same filter and crop the filter margin.
    conv_weight = torch.as_tensor(Hz[None, None, :], dtype=images.dtype, device=device).tile([C, 1, 1])
    conv_pad = (len(Hz) - 1) // 2
    images = F.conv2d(images, conv_weight.unsqueeze(2), groups=C, stride=[1, 2], padding=[0, conv_pad])[
        :, :, :, Hz_pad:-Hz_pad
    ]
    images = F.conv2d(images, conv_weight.unsqueeze(3), groups=C, stride=[2, 1], padding=[conv_pad, 0])[
        :, :, Hz_pad:-Hz_pad, :
    ]
    return images
