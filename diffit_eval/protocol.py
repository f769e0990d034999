"""The constants of the ADM evaluation protocol, in one place (docs/PROTOCOL.md, "Evaluation").

Every layer may import this module: it holds names and numbers only, no code. What a number means
and where it comes from is written in docs/PROTOCOL.md.
"""

from __future__ import annotations

__all__ = [
    "ALL_METRIC_KEYS",
    "BOOTSTRAP_CONFIDENCE",
    "BOOTSTRAP_METRICS",
    "CI_SUFFIX",
    "DEFAULT_BOOTSTRAP_SEED",
    "DEFAULT_METRIC_GROUPS",
    "DEFAULT_RESIZE",
    "DENSITY_K",
    "DINOV2_DIM",
    "DINOV2_FEATURE_NETWORK",
    "DINOV2_INPUT_SIZE",
    "DINOV2_INTERPOLATE_OFFSET",
    "DINOV2_MEAN",
    "DINOV2_STD",
    "DINOV2_STAT_KEYS",
    "PR_ROWS_KEY",
    "EXTRA_METRIC_KEYS",
    "FID_INF_MIN_FRACTION",
    "FID_INF_MIN_SAMPLES",
    "FID_INF_POINTS",
    "FID_INF_SEED",
    "PR_LABELS_KEY",
    "KID_COEF0",
    "KID_DEGREE",
    "KID_SEED",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "DEFAULT_NETWORK",
    "FEATURE_NETWORK",
    "FEATURE_NETWORKS",
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
# `--network` of `metrics` and `ref build` -> the name records carry: the protocol's InceptionV3, or
# the demo's digit classifier (diffit_eval/features/digits.py, docs/DEMO.md), whose numbers compare
# with nothing else.
FEATURE_NETWORKS = {"inception": FEATURE_NETWORK, "digits": "digits-mlp"}
DEFAULT_NETWORK = "inception"

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

# What `metrics` computes (and a reference batch can hold), and the values it reports. The ADM set
# (`DEFAULT_METRIC_GROUPS`, `METRIC_KEYS`) is what `metrics` computes unless --metrics names more,
# and what the golden suite and Table S.1 read; KID and FD_DINOv2 (issue 16) are asked for by name.
DEFAULT_METRIC_GROUPS = ("fid", "sfid", "is", "pr")
# Density/coverage and FID_inf/IS_inf (issue 24) are asked for by name too.
METRIC_GROUPS = (*DEFAULT_METRIC_GROUPS, "kid", "fd_dinov2", "density", "coverage", "fid_inf", "is_inf")
METRIC_KEYS = ("fid", "sfid", "is", "precision", "recall")
EXTRA_METRIC_KEYS = ("kid", "fd_dinov2", "density", "coverage", "fid_inf", "is_inf")
ALL_METRIC_KEYS = (*METRIC_KEYS, *EXTRA_METRIC_KEYS)

# KID (Binkowski et al. 2018) with torch-fidelity's defaults (docs/PROTOCOL.md, "KID"): the cubic
# polynomial kernel k(x, y) = (x.y / d + 1)^3 on pool_3, the unbiased MMD^2 averaged over 100
# subsets of 1000 (fewer when a set is smaller), index draws from numpy's RandomState(2020).
KID_DEGREE, KID_COEF0 = 3, 1.0  # gamma is 1 / d
KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 100, 1000, 2020

# FD_DINOv2 (Stein et al. 2023, dgm-eval; docs/PROTOCOL.md, "FD_DINOv2"): the CLS token of DINOv2
# ViT-L/14 after its final LayerNorm, from images resized to 224 x 224 (PIL bicubic) and normalised
# with ImageNet's mean and std. The pretrained grid of 37 x 37 position embeddings is resampled to
# 16 x 16 bicubically with DINOv2's 0.1 offset, without antialiasing.
DINOV2_FEATURE_NETWORK = "dinov2-vitl14"
DINOV2_DIM = 1024
DINOV2_INPUT_SIZE = 224
DINOV2_MEAN = (0.485, 0.456, 0.406)
DINOV2_STD = (0.229, 0.224, 0.225)
DINOV2_INTERPOLATE_OFFSET = 0.1
# Keys of the DINOv2 statistics in a reference npz (beside ADM's mu/sigma, which stay pool_3's).
DINOV2_STAT_KEYS = ("mu_dinov2", "sigma_dinov2")
# A built reference's pool_3 rows of its P/R images (float32 [pr_images, pool_dim]), made in the
# same pass as its statistics, so the first `metrics` against it runs none of them again.
PR_ROWS_KEY = "pr_pool"
# The class of each P/R image (int64 [pr_images]) when the dataset has labels (class folders, npz
# `arr_1`): the reference rows `metrics --per-class` splits by class (docs/METRICS.md, "Per-class").
PR_LABELS_KEY = "pr_labels"

# Density and coverage (Naeem et al., ICML 2020; docs/METRICS.md, "Density and coverage"): k-NN
# balls on the reference rows with the paper's default k = 5 (P/R keep ADM's k = 3).
DENSITY_K = 5

# FID_inf and IS_inf (Chong & Forsyth, CVPR 2020; docs/METRICS.md, "FID_inf"): the metric at
# FID_INF_POINTS subset sizes spaced linearly from ceil(N * FID_INF_MIN_FRACTION) to N (their
# defaults, 15 points from 5,000 to 50,000, are this schedule at N = 50,000), each subset the first
# n of a permutation drawn from numpy's PCG64(FID_INF_SEED), then a least-squares line in 1/n whose
# intercept is the value at n = infinity. Fewer than FID_INF_MIN_SAMPLES samples (smallest subset
# under 15) is refused.
FID_INF_POINTS = 15
FID_INF_MIN_FRACTION = 0.1
FID_INF_MIN_SAMPLES = 150
FID_INF_SEED = 0

# Bootstrap intervals (docs/PROTOCOL.md, "Bootstrap"): percentile intervals at 95% over replicates
# that resample the samples with replacement, the reference fixed. `<key>_ci` holds [lo, hi].
BOOTSTRAP_METRICS = ("fid", "fd_dinov2", "kid", "is", "precision", "recall")
BOOTSTRAP_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_SEED = 0
CI_SUFFIX = "_ci"
