"""Compare diffit_eval.features.dinov2 with the official DINOv2 code and dgm-eval's preprocessing.

The official model is built exactly as torch.hub's `dinov2_vitl14` builds it
(`dinov2.hub.backbones.dinov2_vitl14(pretrained=False)`: vit_large, patch 14, img_size 518,
init_values 1.0 (LayerScale), MLP feed-forward, block_chunks 0, no registers, interpolate_offset
0.1, no antialias), plus small `DinoVisionTransformer`s with the same options. Every parameter
is filled with seeded random values (no pretrained weights are needed), the state_dict is saved
and loaded through OUR loader (`DINOv2Features(path)`, the path users take), and both run on the
same random uint8 images: ours through its own preprocessing, the official model on the same
preprocessed tensor (its `forward`, i.e. `x_norm_clstoken` through the identity head, which is
what dgm-eval's `get_representations` takes). Printed: max |difference| of the CLS features.

The preprocessing is compared with a transcription of dgm-eval's (`DINOv2Encoder.transform`,
clean_resize False, behind `NpzDataset`'s `Image.fromarray(x).convert('RGB')`).

The official package is not vendored; export it from a checkout or a bare mirror, e.g.

    git --git-dir=/path/to/dinov2.git archive HEAD dinov2 | tar -x -C /tmp/dinov2_official
    XFORMERS_DISABLED=1 python benchmarks/check_dinov2_official.py --official /tmp/dinov2_official

ViT-L/14 at 224 costs ~80 GFLOP an image on CPU: 2 images by default (--large-images 0 skips it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("XFORMERS_DISABLED", "1")  # read by the official modules at import


def dgm_eval_transform(image_uint8: np.ndarray) -> torch.Tensor:
    """dgm-eval's DINOv2 input (dgm_eval/models/dinov2.py, clean_resize=False), transcribed."""
    import torchvision.transforms as TF
    from PIL import Image

    image = Image.fromarray(image_uint8).convert("RGB")  # NpzDataset.__getitem__
    imagenet_mean = np.array([0.485, 0.456, 0.406])
    imagenet_std = np.array([0.229, 0.224, 0.225])
    image = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor()])(image)
    return TF.Normalize(imagenet_mean, imagenet_std)(image)


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Seeded values for every parameter, none at its init (so every tensor matters): linear and
    conv weights N(0, 1/fan_in), biases N(0, 0.1^2), LayerNorm weights 1 + N(0, 0.1^2), LayerScale
    gammas U(0.5, 1.5), tokens and position embeddings N(0, 0.5^2) (the grid resampling shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("gamma"):
                v = 0.5 + torch.rand(p.shape, generator=gen, dtype=torch.float64)
            elif "norm" in name and name.endswith("weight"):
                v = 1 + 0.1 * z
            elif name.endswith("bias"):
                v = 0.1 * z
            elif p.dim() > 1 and "token" not in name and "pos_embed" not in name:
                v = z * p[0].numel() ** -0.5
            else:
                v = 0.5 * z
            p.copy_(v.to(p.dtype))


def official_small(vits, block, attn, dim: int, depth: int, heads: int, patch: int = 14, img_size: int = 518):
    """A DinoVisionTransformer with dinov2_vitl14's options (hub/backbones.py) at a small size."""
    return vits.DinoVisionTransformer(
        img_size=img_size,
        patch_size=patch,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4,
        block_fn=partial(block, attn_class=attn),
        init_values=1.0,
        ffn_layer="mlp",
        block_chunks=0,
        num_register_tokens=0,
        interpolate_antialias=False,
        interpolate_offset=0.1,
    )


def compare(name: str, official: torch.nn.Module, images: np.ndarray, tmp: Path, seed: int, double: bool) -> float:
    from diffit_eval.features.dinov2 import DINOv2Features, preprocess

    randomize(official, seed)
    official.eval()
    path = tmp / f"{name}.pth"
    torch.save(official.state_dict(), path)
    ours = DINOv2Features(path)  # the users' path: torch.load + sizes from shapes + strict load
    heads = ours.net.blocks[0].attn.heads
    t0 = time.perf_counter()
    with torch.no_grad():
        got = ours(images).double()
        want = official(preprocess(images)).double()
    dt = time.perf_counter() - t0
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    print(
        f"{name:<28} heads ours/official {heads}/{official.num_heads}  {len(images)} images  float32: "
        f"max|ours - official| = {diff:.3e} (max|feature| {scale:.3g}, relative {diff / scale:.1e})  [{dt:.1f} s]"
    )
    if double:  # the same comparison in float64: only a real difference survives
        ours.net.double()
        official.double()
        x = preprocess(images).double()
        with torch.no_grad():
            d64 = (ours.net(x) - official(x)).abs().max().item()
            x518 = torch.nn.functional.interpolate(x, size=(518, 518), mode="bilinear")  # no pos resampling
            d518 = (ours.net(x518) - official(x518)).abs().max().item()
            # controls: the official model with another resampling, to show what the check can see
            official.interpolate_offset = 0.0  # size=(16, 16) instead of scale factor 16.1 / 37
            d_size = (ours.net(x) - official(x)).abs().max().item()
            official.interpolate_offset, official.interpolate_antialias = 0.1, True
            d_aa = (ours.net(x) - official(x)).abs().max().item()
            official.interpolate_antialias = False
        print(
            f"{'':<28} float64: at 224 {d64:.3e}, at 518 (native grid) {d518:.3e}; controls, official "
            f"with offset 0 (size=16): {d_size:.3e}, with antialias: {d_aa:.3e}"
        )
        diff = max(diff, d64, d518)
    return diff


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="folder holding the official `dinov2` package")
    ap.add_argument("--large-images", type=int, default=2, help="images through ViT-L/14 (0: skip it)")
    ap.add_argument("--small-images", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(Path(args.official).resolve()))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "xFormers is disabled/not available"
        from dinov2.hub.backbones import dinov2_vitl14
        from dinov2.layers import MemEffAttention, NestedTensorBlock
        from dinov2.layers.attention import XFORMERS_AVAILABLE
        from dinov2.models import vision_transformer as vits
    print(f"official dinov2 from {vits.__file__} (xFormers {'on' if XFORMERS_AVAILABLE else 'off'})")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    from diffit_eval.features.dinov2 import preprocess

    rng = np.random.default_rng(args.seed)
    worst_pre = 0.0
    for res in (32, 64, 256, 512):
        images = rng.integers(0, 256, (3, res, res, 3), dtype=np.uint8)
        want = torch.stack([dgm_eval_transform(im) for im in images])
        got = preprocess(images)
        d = (got.double() - want.double()).abs().max().item()
        worst_pre = max(worst_pre, d)
        print(f"preprocess {res:>3}px -> 224: max|ours - dgm-eval| = {d:.3e} (dtypes {got.dtype}/{want.dtype})")

    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        small = rng.integers(0, 256, (args.small_images, 64, 64, 3), dtype=np.uint8)
        for dim, depth, heads in ((64, 2, 1), (128, 2, 2), (192, 3, 3)):
            net = official_small(vits, NestedTensorBlock, MemEffAttention, dim, depth, heads)
            worst = max(worst, compare(f"small d{dim} L{depth} h{heads}", net, small, Path(tmp), args.seed, True))
        if args.large_images:
            large = rng.integers(0, 256, (args.large_images, 256, 256, 3), dtype=np.uint8)
            net = dinov2_vitl14(pretrained=False)
            worst = max(worst, compare("hub dinov2_vitl14 (random)", net, large, Path(tmp), args.seed, False))
    print(f"worst: features {worst:.3e}, preprocessing {worst_pre:.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
