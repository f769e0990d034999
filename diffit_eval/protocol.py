"""The constants of the ADM evaluation protocol, in one place (docs/PROTOCOL.md, "Evaluation").

Every layer may import this module: it holds names and numbers only, no code. What a number means
and where it comes from is written in docs/PROTOCOL.md.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_RESIZE",
    "FEATURE_NETWORK",
    "LOGITS_DIM",
    "METRIC_GROUPS",
    "METRIC_KEYS",
    "POOL_DIM",
    "RESIZE_MODES",
    "ROW_BYTES",
    "ROW_DIMS",
    "SPATIAL_CHANNELS",
    "SPATIAL_DIM",
]

# The feature network: torch-fidelity's port of the 2015-12-05 TensorFlow InceptionV3.
FEATURE_NETWORK = "inception-v3-compat"

# How images reach 299x299: TF1's bilinear resize as ADM ran it (the published numbers), or
# clean-fid's PIL bicubic.
RESIZE_MODES = ("legacy-tf", "clean")
DEFAULT_RESIZE = "legacy-tf"

# Feature dimensions: pool_3 (FID, precision/recall), the 1008 logits without bias (IS), and the
# first 7 channels of mixed_6/conv on the 17x17 grid (sFID): 17 * 17 * 7 = 2023.
POOL_DIM, LOGITS_DIM = 2048, 1008
SPATIAL_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS
ROW_DIMS = {"pool": POOL_DIM, "spatial": SPATIAL_DIM, "logits": LOGITS_DIM}
ROW_BYTES = 4 * sum(ROW_DIMS.values())  # float32 bytes one image's features take (20,316)

# What `metrics` computes (and a reference batch can hold), and the values it reports.
METRIC_GROUPS = ("fid", "sfid", "is", "pr")
METRIC_KEYS = ("fid", "sfid", "is", "precision", "recall")
