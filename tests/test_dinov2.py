"""Issue 16: FD_DINOv2 (diffit_eval/features/dinov2.py, diffit_eval/assets/dinov2.py).

- The preprocessing equals dgm-eval's definition, torchvision's `Resize((224, 224), BICUBIC)` on
  the PIL image + `ToTensor` + `Normalize(ImageNet mean, std)`, to 1e-6.
- The ViT-L/14 layout has exactly the official state dict's names and shapes (built on the meta
  device, nothing allocated), so Meta's file loads strictly; sizes are read from a state dict, and
  a file with a missing or an extra key is refused in one line.
- The position grid is resampled to 16 x 16 for 224 inputs and left alone at 518.
- The forward equals a transcription of the official one (facebookresearch/dinov2 at b8931f7,
  `DinoVisionTransformer.forward` with `MemEffAttention` without xFormers) on a 2-head file whose
  every tensor is random, to 1e-5; `benchmarks/check_dinov2_official.py` runs the official code.
- FD_DINOv2 through the library call behind `diffit-eval metrics --metrics fd_dinov2` equals a
  direct computation (the same extractor on the images -> numpy mean/cov -> scipy sqrtm Frechet
  distance) to 1e-6, labelled STAND-IN; with --bootstrap its interval holds the value.
- Offline without weights, `--metrics fd_dinov2` is one line naming the URL and the flag (exit 2),
  and `diffit-eval weights fetch dinov2-vitl14` fails the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import synthetic_images

from diffit_eval.features.dinov2 import DINOv2Features, DinoViT, preprocess


@pytest.fixture(scope="module")
def dinov2_standin(tmp_path_factory):
    from diffit_eval.testing import make_dinov2_standin_weights

    # width 8: FD statistics of the 10-image sets below are full rank
    return make_dinov2_standin_weights(tmp_path_factory.mktemp("dinov2") / "dinov2-standin.pth", dim=8)


def test_preprocessing_is_dgm_evals_torchvision_transform():
    from PIL import Image
    from torchvision import transforms as T

    images = synthetic_images(3, 4, res=32)
    defined = T.Compose(
        [
            T.Resize((224, 224), T.InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    want = torch.stack([defined(Image.fromarray(im)) for im in images])
    got = preprocess(images)
    assert got.shape == (3, 3, 224, 224) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-6, rtol=0)


OFFICIAL_VITL14 = {  # dinov2_vitl14_pretrain.pth: names and shapes (block 0; 24 blocks)
    "cls_token": (1, 1, 1024),
    "pos_embed": (1, 1370, 1024),
    "mask_token": (1, 1024),
    "patch_embed.proj.weight": (1024, 3, 14, 14),
    "patch_embed.proj.bias": (1024,),
    "blocks.0.norm1.weight": (1024,),
    "blocks.0.norm1.bias": (1024,),
    "blocks.0.attn.qkv.weight": (3072, 1024),
    "blocks.0.attn.qkv.bias": (3072,),
    "blocks.0.attn.proj.weight": (1024, 1024),
    "blocks.0.attn.proj.bias": (1024,),
    "blocks.0.ls1.gamma": (1024,),
    "blocks.0.norm2.weight": (1024,),
    "blocks.0.norm2.bias": (1024,),
    "blocks.0.mlp.fc1.weight": (4096, 1024),
    "blocks.0.mlp.fc1.bias": (4096,),
    "blocks.0.mlp.fc2.weight": (1024, 4096),
    "blocks.0.mlp.fc2.bias": (1024,),
    "blocks.0.ls2.gamma": (1024,),
    "norm.weight": (1024,),
    "norm.bias": (1024,),
}


def test_vitl14_layout_is_the_official_state_dict():
    with torch.device("meta"):
        net = DinoViT(1024, 24, 14, 37, 4096)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert len(shapes) == 7 + 24 * 14  # tokens, patch conv, final norm; 14 tensors a block
    assert {k: v for k, v in shapes.items() if not k.startswith("blocks.") or k.startswith("blocks.0.")} == (
        OFFICIAL_VITL14
    )
    assert net.blocks[0].attn.heads == 16  # 64-d heads, as DINOv2's vit_large


def test_loader_reads_sizes_and_is_strict(dinov2_standin, tmp_path):
    from diffit_eval.errors import UserError

    net = DINOv2Features(dinov2_standin)
    assert (net.net.dim, net.net.depth, net.net.patch, net.net.grid) == (8, 2, 14, 37)
    assert net.is_standin and "STAND-IN" in net.label and net.describe()["standin"]
    state = torch.load(dinov2_standin, weights_only=True)
    for broken in ({k: v for k, v in state.items() if k != "mask_token"}, {**state, "head.weight": torch.ones(1)}):
        torch.save(broken, tmp_path / "bad.pth")
        with pytest.raises(UserError, match="not DINOv2 weights"):
            DINOv2Features(tmp_path / "bad.pth")


def test_position_grid_is_resampled_as_dinov2(dinov2_standin):
    vit = DINOv2Features(dinov2_standin).net
    assert vit.interpolate_pos_encoding(518, 518) is vit.pos_embed
    pos = vit.interpolate_pos_encoding(224, 224)
    assert pos.shape == (1, 1 + 16 * 16, 8) and torch.equal(pos[:, 0], vit.pos_embed[:, 0])
    grid = vit.pos_embed[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    # scale factor (16 + 0.1) / 37 instead of size=16: the sampling positions differ slightly
    assert not torch.equal(pos[0, 1:], want.permute(0, 2, 3, 1).reshape(-1, 8))


def _official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """DINOv2's inference forward transcribed from the official code (not ours): prepare_tokens_with_masks
    (PatchEmbed, cls token, interpolate_pos_encoding with offset 0.1 and no antialias), the blocks
    (x + ls1(attn(norm1(x))), x + ls2(mlp(norm2(x))); Attention.forward: unbind qkv on dim 2, SDPA;
    Mlp: fc1, nn.GELU, fc2), then norm; forward returns head(x_norm_clstoken), head = Identity."""
    F = torch.nn.functional
    patch = sd["patch_embed.proj.weight"].shape[-1]
    B, nc, w, h = x.shape
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat((sd["cls_token"].expand(x.shape[0], -1, -1), x), dim=1)
    npatch, N, dim = x.shape[1] - 1, sd["pos_embed"].shape[1] - 1, x.shape[-1]
    if npatch == N and w == h:
        pos = sd["pos_embed"]
    else:
        pos_embed = sd["pos_embed"].float()
        w0, h0, M = w // patch, h // patch, int(N**0.5)
        patch_pos_embed = F.interpolate(
            pos_embed[:, 1:].reshape(1, M, M, dim).permute(0, 3, 1, 2),
            mode="bicubic",
            antialias=False,
            scale_factor=(float(w0 + 0.1) / M, float(h0 + 0.1) / M),
        )
        assert (w0, h0) == patch_pos_embed.shape[-2:]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        pos = torch.cat((pos_embed[:, 0].unsqueeze(0), patch_pos_embed), dim=1).to(x.dtype)
    x = x + pos
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = {k[len(f"blocks.{i}.") :]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        y = F.layer_norm(x, (dim,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        n = y.shape[1]
        qkv = F.linear(y, p["attn.qkv.weight"], p["attn.qkv.bias"]).reshape(B, n, 3, heads, dim // heads)
        q, k, v = [t.transpose(1, 2) for t in torch.unbind(qkv, 2)]
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).contiguous().view(B, n, dim)
        x = x + F.linear(y, p["attn.proj.weight"], p["attn.proj.bias"]) * p["ls1.gamma"]
        y = F.layer_norm(x, (dim,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        y = F.linear(
            F.gelu(F.linear(y, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"]
        )
        x = x + y * p["ls2.gamma"]
    return F.layer_norm(x, (dim,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)[:, 0]


def test_forward_equals_a_transcription_of_the_official_one(tmp_path):
    from diffit_eval.testing import make_dinov2_standin_weights

    path = make_dinov2_standin_weights(tmp_path / "d128.pth", dim=128)  # 2 heads of 64
    gen = torch.Generator().manual_seed(0)
    state = {  # every tensor random (biases, LayerNorm and LayerScale are not at their init)
        k: v if v.dtype == torch.bool else v + 0.2 * torch.randn(v.shape, generator=gen)
        for k, v in torch.load(path, weights_only=True).items()
    }
    torch.save(state, path)
    net = DINOv2Features(path)
    assert net.net.blocks[0].attn.heads == 2
    sd = {k: v for k, v in state.items() if v.dtype != torch.bool}  # without the stand-in marker
    images = synthetic_images(3, 7, res=48)
    want = _official_forward(sd, preprocess(images), heads=2)
    got = net(images)
    assert got.shape == (3, 128) and (got - want).abs().max() < 1e-5, (got - want).abs().max()
    x518 = torch.nn.functional.interpolate(preprocess(images[:1]), size=(518, 518), mode="bilinear")
    assert (net.net(x518) - _official_forward(sd, x518, heads=2)).abs().max() < 1e-5  # native grid


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def test_fd_dinov2_equals_a_direct_computation(tmp_path, standin_weights, dinov2_standin, isolated_cache):
    from diffit_eval.metrics.evaluate import run_metrics

    a, b = synthetic_images(10, 5), synthetic_images(10, 6, shift=0.5)
    np.savez(tmp_path / "a.npz", arr_0=a)
    np.savez(tmp_path / "b.npz", arr_0=b)
    rec = run_metrics(
        tmp_path / "a.npz",
        str(tmp_path / "b.npz"),
        metrics=["fd_dinov2"],
        weights=str(standin_weights),
        dinov2_weights=str(dinov2_standin),
        batch_size=4,
        bootstrap=50,
        progress=False,
    )
    net = DINOv2Features(dinov2_standin)
    want = _frechet(net(a).double().numpy(), net(b).double().numpy())
    assert abs(rec["fd_dinov2"] - want) < 1e-6, (rec["fd_dinov2"], want)
    assert rec["dinov2_network"]["standin"] and rec["dinov2_network"]["sha256"] == net.weights_sha256
    lo, hi = rec["fd_dinov2_ci"]
    assert lo < rec["fd_dinov2"] < hi and rec["bootstrap"]["replicates"] == 50 and rec["fid"] is None
    # the interval is FD_DINOv2's: the bootstrap of the DINOv2 rows of these images (the CLI's seed)
    from diffit_eval.metrics.bootstrap import BootstrapInputs, bootstrap_intervals
    from diffit_eval.protocol import DEFAULT_BOOTSTRAP_SEED

    rows, ref_rows = net(a).numpy(), net(b).double().numpy()
    inputs = BootstrapInputs(fd_dinov2=(rows, ref_rows.mean(0), np.cov(ref_rows, rowvar=False)))
    direct = bootstrap_intervals(
        10, inputs, 50, seed=DEFAULT_BOOTSTRAP_SEED, device="cpu", estimates={"fd_dinov2": rec["fd_dinov2"]}
    )
    assert direct["fd_dinov2_ci"] == pytest.approx([lo, hi], rel=1e-6)


def test_offline_without_weights_is_one_line(tmp_path, isolated_cache):
    """No weights and no network: the resolver's own refusal (--no-download) and the real download
    code failing on a closed port (nothing faked), each one line naming the URL and the flag."""
    from helpers import cli, offline_env

    from diffit_eval.assets.dinov2 import DINOV2_URL

    np.savez(tmp_path / "a.npz", arr_0=synthetic_images(2, 1))
    env = {**offline_env(isolated_cache), "DIFFIT_EVAL_DINOV2_WEIGHTS": None}
    for argv in (
        ["metrics", tmp_path / "a.npz", "--ref", "x", "--metrics", "fd_dinov2", "--no-download"],
        ["metrics", tmp_path / "a.npz", "--ref", "x", "--metrics", "fd_dinov2"],
        ["weights", "fetch", "dinov2-vitl14"],
    ):
        r = cli(*argv, env=env, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert DINOV2_URL in r.stderr and "--dinov2-weights" in r.stderr, r.stderr
    assert not [p for p in isolated_cache.rglob("*") if p.is_file()]  # nothing half-downloaded is left
