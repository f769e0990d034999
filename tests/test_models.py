"""DiffiT models against docs/PROTOCOL.md, "Latent DiffiT" and "Image-space DiffiT": state_dict contract, forward pass, guidance, checkpoints."""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from diffit.checkpoint import CHECKPOINTS, CheckpointMismatchError, load_checkpoint
from diffit.models import (
    MODEL_PRESETS,
    TMSA,
    Guidance,
    ImageDiffiT,
    LatentDiffiT,
    create_model,
    get_attention_impl,
    parameter_count,
    preset_info,
    relative_position_index,
    set_attention_impl,
)
from diffit.testing import randomize_weights


@pytest.fixture
def attention_impl():
    """Restore the module-wide attention kernel after a test switches it."""
    before = get_attention_impl()
    yield set_attention_impl
    set_attention_impl(before)


def tiny_latent(seed: int = 0, **overrides) -> LatentDiffiT:
    model = create_model("latent-tiny", **overrides).eval()
    return randomize_weights(model, seed=seed, std=0.1)


# --------------------------------------------------------------------------------------------
# 1. State-dict contract (docs/PROTOCOL.md, "Model layout"), relative position index, parameter counts
# --------------------------------------------------------------------------------------------


def spec_state_dict(grid: int, depth: int = 28) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The state-dict table of docs/PROTOCOL.md written out: key -> (shape, dtype)."""
    f32, n = torch.float32, grid * grid
    table = {
        "pos_embed": ((1, n, 1152), f32),
        "x_embedder.proj.weight": ((1152, 4, 2, 2), f32),
        "x_embedder.proj.bias": ((1152,), f32),
        "t_embedder.mlp.0.weight": ((1152, 256), f32),
        "t_embedder.mlp.0.bias": ((1152,), f32),
        "t_embedder.mlp.2.weight": ((1152, 1152), f32),
        "t_embedder.mlp.2.bias": ((1152,), f32),
        "y_embedder.embedding_table.weight": ((1001, 1152), f32),
        "final_layer.linear.weight": ((32, 1152), f32),
        "final_layer.linear.bias": ((32,), f32),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        table.update(
            {
                b + "attn.qkv.weight": ((3456, 1152), f32),
                b + "attn.qkv.bias": ((3456,), f32),
                b + "attn.qkv_temb.weight": ((3456, 1152), f32),
                b + "attn.qkv_temb.bias": ((3456,), f32),
                b + "attn.relative_position_bias_table": (((2 * grid - 1) ** 2, 16), f32),
                b + "attn.relative_position_index": ((n, n), torch.int64),
                b + "attn.proj.weight": ((1152, 1152), f32),
                b + "attn.proj.bias": ((1152,), f32),
                b + "mlp.fc1.weight": ((4608, 1152), f32),
                b + "mlp.fc1.bias": ((4608,), f32),
                b + "mlp.fc2.weight": ((1152, 4608), f32),
                b + "mlp.fc2.bias": ((1152,), f32),
            }
        )
    return table


@pytest.mark.parametrize("name, grid, trainable", [("latent-256", 16, 561_035_232), ("latent-512", 32, 562_382_816)])
def test_latent_state_dict_matches_spec(name, grid, trainable):
    with torch.device("meta"):
        model = create_model(name)
    sd = model.state_dict()
    expected = spec_state_dict(grid)
    assert set(sd) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert (tuple(sd[key].shape), sd[key].dtype) == (shape, dtype), key
    assert isinstance(model.pos_embed, torch.nn.Parameter) and not model.pos_embed.requires_grad
    assert parameter_count(model) == (trainable, grid * grid * 1152)
    assert parameter_count(name) == (trainable, grid * grid * 1152)


def test_alias_and_preset_info():
    assert preset_info("latent") == preset_info("latent-256")
    info = preset_info("latent-256")
    assert (info["resolution"], info["latent_size"], info["sampler"], info["steps"]) == (256, 32, "ddpm", 250)
    assert info["guidance"]["ramp"] == "power-cosine" and info["guidance"]["scale"] == 4.4
    assert preset_info("latent-512")["guidance"] == {**info["guidance"], "scale": 1.49, "ramp": "constant"}
    assert (preset_info("cifar10")["sampler"], preset_info("cifar10")["steps"]) == ("edm", 18)
    assert (preset_info("ffhq64")["sampler"], preset_info("ffhq64")["steps"]) == ("edm", 40)
    assert info["checkpoint"] in CHECKPOINTS and preset_info("cifar10")["checkpoint"] is None
    with pytest.raises(ValueError, match="latent-256"):
        create_model("latent-1024")


def test_relative_position_index_is_swin():
    G = 16
    expected = torch.empty(G * G, G * G, dtype=torch.int64)
    for i in range(G * G):
        for j in range(G * G):
            dh, dw = i // G - j // G, i % G - j % G
            expected[i, j] = (dh + G - 1) * (2 * G - 1) + (dw + G - 1)
    assert torch.equal(relative_position_index(G), expected)
    attn = TMSA(dim=32, num_heads=2, temb_dim=8, window_size=G)
    assert attn.relative_position_index.dtype == torch.int64
    assert torch.equal(attn.relative_position_index, expected)
    assert "relative_position_index" in attn.state_dict()


def test_pos_embed_is_dit_sincos():
    model = create_model("latent-tiny")
    G, D = model.grid_size, model.pos_embed.shape[-1]
    omega = 1.0 / 10000 ** (torch.arange(D // 4, dtype=torch.float64) / (D / 4))
    rows = []
    for h in range(G):
        for w in range(G):  # first half encodes the column, second half the row (DiT's layout)
            rows.append(
                torch.cat([torch.sin(w * omega), torch.cos(w * omega), torch.sin(h * omega), torch.cos(h * omega)])
            )
    torch.testing.assert_close(model.pos_embed[0], torch.stack(rows).float())


# --------------------------------------------------------------------------------------------
# 2. The forward pass against an independent re-implementation of docs/PROTOCOL.md, "Model layout"
# --------------------------------------------------------------------------------------------


def spec_forward(sd: dict, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, heads: int, patch: int = 2):
    """The latent forward of docs/PROTOCOL.md ("Model layout"), in plain ops from a state_dict, one head at a time."""
    tok = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=patch)
    N, D, G, _ = tok.shape
    tok = tok.flatten(2).transpose(1, 2) + sd["pos_embed"]
    f = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 128)
    arg = t.float()[:, None] * f
    c = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)
    c = F.linear(
        F.silu(F.linear(c, sd["t_embedder.mlp.0.weight"], sd["t_embedder.mlp.0.bias"])),
        sd["t_embedder.mlp.2.weight"],
        sd["t_embedder.mlp.2.bias"],
    )
    c = c + sd["y_embedder.embedding_table.weight"][y]
    index = torch.tensor(
        [
            [(i // G - j // G + G - 1) * (2 * G - 1) + (i % G - j % G + G - 1) for j in range(G * G)]
            for i in range(G * G)
        ]
    )
    hd = D // heads
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for b in range(depth):
        p = lambda name: sd[f"blocks.{b}.{name}"]  # noqa: E731
        u = F.layer_norm(tok, (D,), eps=1e-6)
        qkv = (
            F.linear(u, p("attn.qkv.weight"), p("attn.qkv.bias"))
            + F.linear(c, p("attn.qkv_temb.weight"), p("attn.qkv_temb.bias"))[:, None]
        )
        q, k, v = qkv[..., :D], qkv[..., D : 2 * D], qkv[..., 2 * D :]
        outs = []
        for h in range(heads):
            s = slice(h * hd, (h + 1) * hd)
            bias = p("attn.relative_position_bias_table")[index, h]
            a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(hd) + bias, dim=-1)
            outs.append(a @ v[..., s])
        tok = tok + F.linear(torch.cat(outs, -1), p("attn.proj.weight"), p("attn.proj.bias"))
        u = F.layer_norm(tok, (D,), eps=1e-6)
        hidden = F.gelu(F.linear(u, p("mlp.fc1.weight"), p("mlp.fc1.bias")), approximate="tanh")
        tok = tok + F.linear(hidden, p("mlp.fc2.weight"), p("mlp.fc2.bias"))
    tok = F.linear(
        F.silu(F.layer_norm(tok, (D,), eps=1e-6)), sd["final_layer.linear.weight"], sd["final_layer.linear.bias"]
    )
    C = tok.shape[-1] // (patch * patch)
    out = torch.empty(N, C, G * patch, G * patch)
    for h in range(G):
        for w in range(G):
            for pi in range(patch):
                for qi in range(patch):
                    start = (pi * patch + qi) * C
                    out[:, :, patch * h + pi, patch * w + qi] = tok[:, h * G + w, start : start + C]
    return out


def spec_scale(t: int, s: float) -> float:
    return 1 + (s - 1) * (1 - math.cos(math.pi * (1 - t / 1000) ** 4)) / 2


@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_latent_forward_matches_spec(impl, attention_impl):
    attention_impl(impl)
    torch.manual_seed(1)
    model = tiny_latent()
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([999, 500, 0]), torch.tensor([3, 1000, 7])
    with torch.no_grad():
        out = model(x, t, y)
    expected = spec_forward(model.state_dict(), x, t, y, heads=2)
    assert out.shape == (3, 8, 8, 8)
    assert expected.abs().max() > 0.1  # the weights are random enough to exercise every term
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_forward_with_cfg_matches_spec():
    torch.manual_seed(2)
    model = tiny_latent()
    B, s = 3, 4.4
    half, t_half = torch.randn(B, 4, 8, 8), torch.tensor([999, 500, 0])
    x = torch.cat([half, torch.randn_like(half)])  # the release reads only the first half
    t, y = torch.cat([t_half, t_half]), torch.tensor([5, 17, 999, 1000, 1000, 1000])
    with torch.no_grad():
        guided = model.forward_with_cfg(x, t, y, s)
        plain = model(torch.cat([half, half]), t, y)
    ref = spec_forward(model.state_dict(), torch.cat([half, half]), t, y, heads=2)
    cond, uncond = ref[:B, :3], ref[B:, :3]
    scale = torch.tensor([spec_scale(int(ti), s) for ti in t_half]).view(-1, 1, 1, 1)
    eps = uncond + scale * (cond - uncond)
    torch.testing.assert_close(guided[:, :3], torch.cat([eps, eps]), atol=1e-5, rtol=1e-5)
    assert torch.equal(guided[:, 3:], plain[:, 3:])  # channel 3 and the variance pass unguided
    assert not torch.allclose(guided[:B, :3], plain[:B, :3])


def test_guidance_ramp_values():
    ramp = MODEL_PRESETS["latent-256"].guidance
    s_t = ramp.scale_at(torch.tensor([999, 500, 0]), 4.4)
    expected = torch.tensor([spec_scale(999, 4.4), spec_scale(500, 4.4), spec_scale(0, 4.4)])
    torch.testing.assert_close(s_t, expected)
    assert abs(s_t[0] - 1) < 1e-6 and abs(s_t[2] - 4.4) < 1e-6
    assert MODEL_PRESETS["latent-512"].guidance.scale_at(torch.tensor([999, 0]), 1.49) == 1.49


def test_constant_guidance_is_an_explicit_setting():
    torch.manual_seed(3)
    model = tiny_latent(guidance=Guidance(ramp="constant"))
    half, t = torch.randn(2, 4, 8, 8), torch.tensor([999, 0, 999, 0])
    x, y = torch.cat([half, half]), torch.tensor([1, 2, 1000, 1000])
    with torch.no_grad():
        guided, plain = model.forward_with_cfg(x, t, y, 1.49), model(x, t, y)
    eps = plain[2:, :3] + 1.49 * (plain[:2, :3] - plain[2:, :3])
    torch.testing.assert_close(guided[:, :3], torch.cat([eps, eps]))


# --------------------------------------------------------------------------------------------
# 3. Checkpoints
# --------------------------------------------------------------------------------------------


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    source, target = tiny_latent(seed=0), tiny_latent(seed=1)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.tensor([1, 1000])
    assert load_checkpoint(target, tmp_path / "w.safetensors") is target
    with torch.no_grad():
        assert torch.equal(source(x, t, y), target(x, t, y))


def test_pt_wrapped_under_ema(tmp_path):
    source, target = tiny_latent(seed=0), tiny_latent(seed=1)
    torch.save(
        {
            "model": tiny_latent(seed=2).state_dict(),
            "ema": source.state_dict(),
            "args": argparse.Namespace(model="DiffiT"),
        },
        tmp_path / "ckpt.pt",
    )
    load_checkpoint(target, str(tmp_path / "ckpt.pt"))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_mismatch_names_the_keys(tmp_path):
    from diffit.errors import DiffitError

    from diffit_eval.errors import UserError, user_error

    model = tiny_latent()
    sd = model.state_dict()
    sd["blocks.0.attn.qkv_w"] = sd.pop("blocks.0.attn.qkv.weight")
    sd["pos_embed"] = torch.zeros(1, 64, 32)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(model, tmp_path / "bad.pth")
    message = str(err.value)
    assert isinstance(err.value, DiffitError) and isinstance(err.value, ValueError)
    assert isinstance(user_error(err.value), UserError) and user_error(err.value).code == 1  # the CLI's exit code
    assert "\n" not in message
    for key in ("blocks.0.attn.qkv.weight", "blocks.0.attn.qkv_w", "pos_embed", "[1, 64, 32]"):
        assert key in message


def test_missing_path_is_one_line_user_error(tmp_path):
    from diffit.errors import CheckpointNotFoundError

    from diffit_eval.assets.checkpoints import load_released
    from diffit_eval.errors import UserError

    with pytest.raises(CheckpointNotFoundError, match="not found") as err:
        load_checkpoint(tiny_latent(), tmp_path / "nope.safetensors")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="not found") as err:  # through diffit_eval: a UserError, exit 1
        load_released(tiny_latent(), tmp_path / "nope.safetensors")
    assert "\n" not in str(err.value) and err.value.code == 1


def test_diffit_never_downloads_a_released_name():
    from diffit.errors import CheckpointNotFoundError

    with pytest.raises(CheckpointNotFoundError) as err:
        load_checkpoint(tiny_latent(), "diffit-256")
    assert CHECKPOINTS["diffit-256"].url in str(err.value) and "\n" not in str(err.value)


def test_name_offline_raises_missing_asset(tmp_path, monkeypatch):
    from diffit_eval.assets.checkpoints import load_released
    from diffit_eval.errors import MissingAssetError

    monkeypatch.setenv("DIFFIT_EVAL_CACHE", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY"):  # a refused proxy keeps the test offline everywhere
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    start = time.monotonic()
    with pytest.raises(MissingAssetError) as err:
        load_released(tiny_latent(), "diffit-256")
    assert time.monotonic() - start < 30
    assert CHECKPOINTS["diffit-256"].url in str(err.value) and "--ckpt" in str(err.value)
    assert not list((tmp_path / "checkpoints").glob("diffit_256.safetensors"))


def test_diffit_imports_without_diffit_eval():
    code = (
        "import sys, diffit, diffit.models, diffit.checkpoint, diffit.vae, diffit.testing; "
        "sys.exit(any(m.startswith('diffit_eval') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------------------------
# 4. Image-space models
# --------------------------------------------------------------------------------------------


def image_spec_forward(
    sd: dict, x: torch.Tensor, c_noise: torch.Tensor, blocks: tuple[int, ...], window: int, resample: str = "conv"
) -> torch.Tensor:
    """Image-space DiffiT (docs/PROTOCOL.md, "Image-space DiffiT") in plain float64 ops from a state_dict.

    Written from the description, not from diffit/image.py: windows are cut by explicit pixel
    coordinates, each pair's bias row is computed from its offsets, one head at a time.
    """
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()

    def conv(h, name, stride=1, padding=1):
        return F.conv2d(h, sd[f"{name}.weight"], sd.get(f"{name}.bias"), stride=stride, padding=padding)

    def group_norm(h, name):
        C = h.shape[1]
        return F.group_norm(
            h, 32 if C % 32 == 0 else math.gcd(C, 32), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6
        )

    def linear(h, name):
        return h @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    # Time token: 256-d sinusoid of c_noise (cos half first), Linear, Swish, Linear.
    f = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float64) / 128)
    arg = c_noise.double()[:, None] * f
    temb = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)
    temb = linear(F.silu(linear(temb, "t_embedder.mlp.0")), "t_embedder.mlp.2")

    def tmsa(u, p, w):  # u: (N, H, W, C) normalised tokens
        N, H, W, C = u.shape
        heads = sd[f"{p}.relative_position_bias_table"].shape[1]
        hd = C // heads
        qkv = linear(u, f"{p}.qkv") + linear(temb, f"{p}.qkv_temb")[:, None, None]
        out = torch.zeros(N, H, W, C, dtype=torch.float64)
        coords = [(i, j) for i in range(w) for j in range(w)]  # row-major inside a window
        bias_row = torch.tensor(
            [[(a[0] - b[0] + w - 1) * (2 * w - 1) + (a[1] - b[1] + w - 1) for b in coords] for a in coords]
        )
        for wy in range(0, H, w):
            for wx in range(0, W, w):
                tok = qkv[:, wy : wy + w, wx : wx + w].reshape(N, w * w, 3 * C)
                outs = []
                for h in range(heads):
                    q = tok[..., h * hd : (h + 1) * hd]
                    k = tok[..., C + h * hd : C + (h + 1) * hd]
                    v = tok[..., 2 * C + h * hd : 2 * C + (h + 1) * hd]
                    bias = sd[f"{p}.relative_position_bias_table"][bias_row, h]
                    outs.append(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + bias, dim=-1) @ v)
                out[:, wy : wy + w, wx : wx + w] = torch.cat(outs, -1).reshape(N, w, w, C)
        return linear(out, f"{p}.proj")

    def res_block(h, p, resolution):
        w = min(window, resolution)
        y = conv(F.silu(group_norm(h, f"{p}.norm")), f"{p}.conv").permute(0, 2, 3, 1)  # (N, H, W, C)
        C = y.shape[-1]
        y = y + tmsa(F.layer_norm(y, (C,), eps=1e-6), f"{p}.block.attn", w)
        hidden = F.gelu(linear(F.layer_norm(y, (C,), eps=1e-6), f"{p}.block.mlp.fc1"), approximate="tanh")
        y = (y + linear(hidden, f"{p}.block.mlp.fc2")).permute(0, 3, 1, 2)
        skip = conv(h, f"{p}.skip", padding=0) if f"{p}.skip.weight" in sd else h
        return y + skip

    def down(h, i):
        if resample == "bilinear":
            return F.interpolate(h, scale_factor=0.5, mode="bilinear", align_corners=False)
        return conv(h, f"down.{i}.conv", stride=2)

    def up(h, i):
        if resample == "bilinear":
            return F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        return conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), f"up.{i}.conv")

    res = x.shape[-1]
    h = conv(x, "tokenizer")
    skips = []
    for i, n in enumerate(blocks):  # encoder: stage i at res / 2^i, entered by a down-sampler
        if i > 0:
            h = down(h, i - 1)
        for j in range(n):
            h = res_block(h, f"encoder.{i}.{j}", res >> i)
        skips.append(h)
    for d, i in enumerate(reversed(range(len(blocks) - 1))):  # decoder: up, concatenate the skip, blocks
        h = torch.cat([up(h, d), skips[i]], dim=1)
        for j in range(blocks[i]):
            h = res_block(h, f"decoder.{d}.{j}", res >> i)
    return conv(F.silu(group_norm(h, "head.0")), "head.2")


# Narrow versions of every preset option (the full widths take minutes in float64 on 2 CPU cores).
NARROW = dict(channels=(32, 64, 64), head_channels=16)
NARROW4 = dict(channels=(32, 64, 64, 64), head_channels=16)


@pytest.mark.parametrize(
    "name, options",
    [
        ("cifar10-tiny", {}),
        ("cifar10", dict(NARROW, blocks="I.1")),
        ("cifar10", dict(NARROW, blocks="H.1")),
        ("cifar10", dict(NARROW, blocks=(1, 3, 2), resample="bilinear")),
        ("ffhq64", dict(NARROW4, blocks="I.1")),
        ("ffhq64", dict(NARROW4, blocks=(1, 1, 1, 1), window_size=4)),
    ],
)
def test_image_forward_matches_an_independent_reference(name, options):
    model = randomize_weights(create_model(name, **options).eval(), seed=3)
    res = model.img_resolution
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(0))
    c_noise = torch.tensor([-1.2, 0.7])
    with torch.no_grad():
        out = model(x, c_noise).double()  # the model runs in float32 (its time sinusoid is float32)
    expected = image_spec_forward(
        model.state_dict(), x, c_noise, model.blocks, model.window_size, options.get("resample", "conv")
    )
    scale = expected.abs().max().item()
    assert expected.abs().mean() > 0.1 * scale > 0  # random weights, a non-trivial output
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4 * scale)
    # A wrong window bias or head split moves the output far beyond float32 rounding.
    assert (out - expected).abs().max() < 1e-4 * scale


@pytest.mark.parametrize("name, res", [("cifar10", 32), ("ffhq64", 64), ("cifar10-tiny", 32)])
def test_image_presets_keep_the_shape(name, res):
    # A fresh model has EDM's zeroed head: F(x) = 0 exactly, whatever x and the noise level.
    fresh = create_model(name).eval()
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(fresh(x, torch.tensor([0.3, -2.0])), torch.zeros_like(x))
    model = randomize_weights(fresh, seed=0)
    c_noise = torch.tensor([0.3, -2.0])
    with torch.no_grad():
        out = model(x, c_noise)
        alone = model(x[1:], c_noise[1:])
    assert out.shape == x.shape and torch.isfinite(out).all()
    # The full-width preset against the independent float64 reference, and each image on its own.
    expected = image_spec_forward(model.state_dict(), x, c_noise, model.blocks, model.window_size)
    scale = expected.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(out[1:], alone, rtol=0, atol=1e-5 * scale)
    print(f"{name}: {parameter_count(model)[0]:,} parameters")


@pytest.mark.parametrize(
    "name, options",
    [
        ("cifar10", dict(blocks="H.1")),
        ("ffhq64", dict(blocks="H.1")),
        ("cifar10", dict(resample="bilinear")),
        ("ffhq64", dict(resample="bilinear")),
        ("cifar10", dict(blocks=(1, 3, 2))),
        ("ffhq64", dict(blocks=(1, 1, 1, 1), window_size=4)),
    ],
)
def test_image_options_on_meta(name, options):
    # Full width on the meta device (no memory, no compute): the options reach the layout. Their
    # values are checked at narrow width by test_image_forward_matches_an_independent_reference.
    with torch.device("meta"):
        model = create_model(name, **options)
        res = model.img_resolution
        out = model(torch.empty(2, 3, res, res), torch.empty(2))
    assert out.shape == (2, 3, res, res)
    named = {"H.1": (4,) * len(model.channels), "I.1": {"cifar10": (2, 2, 2), "ffhq64": (1, 2, 2, 2)}[name]}
    blocks = options.get("blocks", "I.1")
    assert model.blocks == (named[blocks] if isinstance(blocks, str) else tuple(blocks))
    assert [len(stage) for stage in model.encoder] == list(model.blocks)
    resamplers = [*model.down, *model.up]
    assert all(hasattr(r, "conv") == (options.get("resample", "conv") == "conv") for r in resamplers)
    windows = {m.window_size for m in model.modules() if isinstance(m, TMSA)}
    assert max(windows) == options.get("window_size", model.window_size)
    print(f"{name} {options}: {parameter_count(model)[0]:,} parameters")


def test_image_blocks_per_stage():
    assert create_model("cifar10").blocks == (2, 2, 2)
    assert create_model("ffhq64").blocks == (1, 2, 2, 2)
    with torch.device("meta"):
        assert create_model("cifar10", blocks="H.1").blocks == (4, 4, 4)
        assert create_model("ffhq64", blocks="H.1").blocks == (4, 4, 4, 4)
    assert parameter_count("ffhq64") != parameter_count(create_model("ffhq64", resample="bilinear"))


def plain_global_attention(attn: TMSA, x: torch.Tensor, c: torch.Tensor, G: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + B) v over all G*G tokens with the module's weights."""
    D, heads = x.shape[-1], attn.num_heads
    qkv = attn.qkv(x) + attn.qkv_temb(c)[:, None]
    q, k, v = (z.unflatten(-1, (heads, D // heads)).transpose(1, 2) for z in qkv.split(D, -1))
    bias = attn.relative_position_bias_table[relative_position_index(G)].permute(2, 0, 1)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads) + bias, dim=-1)
    return attn.proj((a @ v).transpose(1, 2).flatten(2))


def test_window_equal_to_map_is_global_attention():
    torch.manual_seed(4)
    attn = randomize_weights(TMSA(dim=32, num_heads=4, temb_dim=16, window_size=8), std=0.2)
    x, c = torch.randn(2, 64, 32), torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, c, (8, 8)), plain_global_attention(attn, x, c, 8), atol=1e-5, rtol=1e-5)


def test_windows_attend_independently():
    torch.manual_seed(5)
    attn = randomize_weights(TMSA(dim=32, num_heads=4, temb_dim=16, window_size=4), std=0.2)
    x, c = torch.randn(2, 8, 8, 32), torch.randn(2, 16)
    with torch.no_grad():
        out = attn(x.flatten(1, 2), c, (8, 8)).view(2, 8, 8, 32)
        for i in (0, 4):
            for j in (0, 4):
                window = x[:, i : i + 4, j : j + 4].flatten(1, 2)
                expected = plain_global_attention(attn, window, c, 4).view(2, 4, 4, 32)
                torch.testing.assert_close(out[:, i : i + 4, j : j + 4], expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# 5. Fast attention path
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["latent-tiny", "cifar10-tiny"])
def test_sdpa_equals_math(name, attention_impl):
    torch.manual_seed(6)
    model = randomize_weights(create_model(name).eval(), seed=0, std=0.1)
    if isinstance(model, ImageDiffiT):
        args = (torch.randn(2, 3, 32, 32), torch.randn(2))
    else:
        args = (torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 1000]))
    outs = {}
    for impl in ("math", "sdpa"):
        attention_impl(impl)
        with torch.no_grad():
            outs[impl] = model(*args)
    torch.testing.assert_close(outs["sdpa"], outs["math"], atol=1e-5, rtol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(*args)
    torch.testing.assert_close(low.float(), outs["math"], atol=0.1 * outs["math"].abs().max().item(), rtol=0.1)


def test_unknown_attention_impl():
    with pytest.raises(ValueError, match="sdpa"):
        set_attention_impl("flash")


# --------------------------------------------------------------------------------------------
# The `diffit-eval models` table
# --------------------------------------------------------------------------------------------


def test_models_command_table():
    from rich.console import Console

    from diffit_eval.cli.models import models_table

    console = Console(file=io.StringIO(), width=200)
    console.print(models_table())
    text = console.file.getvalue()
    for needle in (
        "561,035,232",
        "562,382,816",
        "latent-tiny",
        "cifar10-tiny",
        "ffhq64",
        "edm 40",
        "ddpm 250",
        "diffit-512",
        CHECKPOINTS["diffit-256"].url,
    ):
        assert needle in text
