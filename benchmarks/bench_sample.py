"""Sampling throughput of latent DiffiT: images/s and achieved model TFLOP/s, bf16 vs the release's setup.

    python benchmarks/bench_sample.py                  # latent-256, 250 guided DDPM steps, batch 16, one GPU
    python benchmarks/bench_sample.py --steps 25       # time 25 steps and extrapolate to 250
    python benchmarks/bench_sample.py --tiny           # CPU smoke run: latent-tiny, tiny VAE, 64x64

It times `diffit_eval.generate.sample.sample_batch`, the exact per-batch path of `diffit-eval sample`
(per-sample generators, doubled batch for guidance, VAE decode, uint8), in two configurations in
the same process: the release's (fp32 weights with TF32 matmuls, batch 16, no compile) and bf16
autocast of the model forward (optionally also compiled). Weights are random (speed does not
depend on them) and the VAE is sd-vae's architecture with random weights, so nothing is
downloaded. The model's FLOPs are counted on one forward with torch's FlopCounterMode (the paper:
114 GMACs = 228 GFLOP per image and forward, so one guided 250-step image costs 114 TFLOP).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from diffit.models import create_model, preset_info
from diffit.testing import randomize_weights

from diffit_eval.generate.sample import PreparedModel, matmul_precision, sample_batch, state_shape

FULL_STEPS = 250


def sd_vae_random(tiny: bool):
    """sd-vae-ft-ema's architecture (or the tiny test VAE) with random weights: the decoder's cost, no download."""
    from diffusers import AutoencoderKL

    from diffit.testing import tiny_vae

    if tiny:
        return tiny_vae()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=256,
        ).eval()


def forward_flops(model: torch.nn.Module, preset: str, device: str) -> float:
    """FLOPs (2 per multiply-add) of one model forward for one image."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *state_shape(preset), device=device)
    t = torch.tensor([500], device=device)
    y = torch.tensor([1], device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, y)
    return float(counter.get_total_flops())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_config(
    name: str,
    net: torch.nn.Module,
    vae,
    preset: str,
    *,
    precision: str,
    batch: int,
    steps: int,
    compile: bool,
    repeats: int,
    device: str,
    flops_per_forward: float,
) -> dict:
    model = PreparedModel(net, precision, compile=compile)
    seeds = list(range(batch))
    with matmul_precision(precision):
        sample_batch(model, preset, seeds, steps=2, vae=vae, device=device)  # warm-up (and compilation)
        totals, decodes = [], []
        for r in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            sample_batch(model, preset, [s + r * batch for s in seeds], steps=steps, vae=vae, device=device)
            sync(device)
            totals.append(time.perf_counter() - t0)
            z = torch.randn(batch, *state_shape(preset), device=device)
            from diffit.vae import decode_latents

            sync(device)
            t0 = time.perf_counter()
            decode_latents(vae, z)
            sync(device)
            decodes.append(time.perf_counter() - t0)
    total, decode = statistics.median(totals), statistics.median(decodes)
    loop = max(total - decode, 1e-9)  # the DDPM loop: 2 forwards per image and step
    batch_full = decode + loop / steps * FULL_STEPS  # one batch at the full step count
    model_flops = batch * steps * 2 * flops_per_forward
    return {
        "config": name,
        "precision": precision,
        "batch": batch,
        "compile": compile,
        "steps_timed": steps,
        "s_per_batch_timed": round(total, 4),
        "decode_s_per_batch": round(decode, 4),
        "images_per_s": round(batch / batch_full, 4),
        "s_per_image": round(batch_full / batch, 4),
        "model_tflops": model_flops / loop / 1e12,
        "images_per_hour_per_device": round(3600 * batch / batch_full, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="latent-tiny + tiny VAE (CPU smoke run)")
    ap.add_argument("--model", default=None, help="latent preset (default latent-256; --tiny: latent-tiny)")
    ap.add_argument(
        "--steps", type=int, default=None, help="steps to time, extrapolated to 250 (default 250; --tiny 10)"
    )
    ap.add_argument("--batch-size", type=int, default=16, help="per device (the release: 16)")
    ap.add_argument("--bf16-batch-size", type=int, default=None, help="batch for the bf16 runs (default: --batch-size)")
    ap.add_argument("--compile", action="store_true", help="also time bf16 + torch.compile")
    ap.add_argument("--repeats", type=int, default=1, help="timed batches per configuration (median)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    preset = args.model or ("latent-tiny" if args.tiny else "latent-256")
    steps = args.steps or (10 if args.tiny else FULL_STEPS)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    info = preset_info(preset)
    if info["kind"] != "latent":
        sys.exit(f"bench_sample: {preset} is not a latent preset")

    with torch.device(device):
        net = create_model(preset)
    net = randomize_weights(net, seed=0).eval().requires_grad_(False)
    vae = sd_vae_random(args.tiny).to(device).requires_grad_(False)
    flops = forward_flops(net, preset, device)
    guidance = info["guidance"]
    print(
        f"{preset} on {torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}: "
        f"{flops / 1e9:.4g} GFLOP per image and forward (counted; the paper's 114 GMACs = 228 GFLOP at 256), "
        f"guided x2, {FULL_STEPS} steps -> {FULL_STEPS * 2 * flops / 1e12:.4g} TFLOP per image; guidance "
        f"{guidance['scale']} {guidance['ramp']}; timing {steps} steps",
        flush=True,
    )

    bf16_batch = args.bf16_batch_size or args.batch_size
    configs = [("release (fp32+TF32)", "tf32", args.batch_size, False), ("bf16 autocast", "bf16", bf16_batch, False)]
    if args.compile:
        configs.append(("bf16 + compile", "bf16", bf16_batch, True))
    results = []
    for name, precision, batch, comp in configs:
        r = time_config(
            name,
            net,
            vae,
            preset,
            precision=precision,
            batch=batch,
            steps=steps,
            compile=comp,
            repeats=args.repeats,
            device=device,
            flops_per_forward=flops,
        )
        results.append(r)
        print(
            f"  {name:22s} batch {batch:3d}: {r['images_per_s']:8.3f} img/s at {FULL_STEPS} steps "
            f"({r['s_per_image']:.3f} s/img, decode {r['decode_s_per_batch']:.3f} s/batch), "
            f"model {r['model_tflops']:.4g} TFLOP/s",
            flush=True,
        )
    if len(results) >= 2:
        print(f"  bf16 / release: {results[1]['images_per_s'] / results[0]['images_per_s']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "preset": preset,
                    "device": device,
                    "flops_per_forward": flops,
                    "steps_timed": steps,
                    "results": results,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
