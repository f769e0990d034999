"""Latent DiffiT forward speed: the fused SDPA attention path against the straightforward one.

CPU (default): latent-256 at batch 2, fp32, both attention paths in one run, with their ratio.
    python benchmarks/bench_models.py
GPU: images/s and achieved TFLOP/s at batch 64 in bf16 autocast and in fp32 with TF32.
    python benchmarks/bench_models.py --cuda [--compile] [--model latent-512]

Weights are random (nothing is downloaded). TFLOP/s counts 2 FLOPs per multiply-add of the
model's matmuls and convs, computed from its configuration (the paper quotes 114 GMACs at 256).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from diffit.models import LatentDiffiT, create_model, parameter_count, set_attention_impl


def forward_macs(model: LatentDiffiT) -> int:
    """Multiply-adds of one image's forward pass (linears, patch conv, attention products)."""
    n = model.grid_size**2
    d = model.pos_embed.shape[-1]
    block = model.blocks[0]
    mlp = block.mlp.fc1.out_features
    per_block = n * (3 * d * d + d * d + 2 * d * mlp) + 3 * d * d + 2 * n * n * d  # qkv, proj, mlp, qkv_temb, qk^T, av
    embed = n * d * model.in_channels * model.patch_size**2 + 256 * d + d * d
    final = n * d * model.patch_size**2 * model.out_channels
    return len(model.blocks) * per_block + embed + final


def time_forward(model, args, repeats: int, warmup: int, cuda: bool, autocast) -> list[float]:
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast():
                model(*args)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def build(name: str, device: str) -> LatentDiffiT:
    model = create_model(name).to(device).eval()
    # DiT's zero-initialised output layer would make every output 0; the timing is unaffected.
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.02)
    return model


def inputs(model: LatentDiffiT, batch: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size, generator=g).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    y = torch.randint(0, 1001, (batch,), generator=g).to(device)
    return x, t, y


def run_cpu(opts: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = build(opts.model, "cpu")
    args = inputs(model, opts.batch, "cpu")
    print(
        f"{opts.model}: {parameter_count(model)[0]:,} trainable parameters, batch {opts.batch}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    results, outputs = {}, {}
    for impl in ("sdpa", "math"):
        set_attention_impl(impl)
        results[impl] = time_forward(model, args, opts.repeats, opts.warmup, False, contextlib.nullcontext)
        with torch.inference_mode():
            outputs[impl] = model(*args)
        print(
            f"  {impl:4s}: median {statistics.median(results[impl]):.3f} s per forward "
            f"(runs: {', '.join(f'{t:.3f}' for t in results[impl])})"
        )
    set_attention_impl("sdpa")
    ratio = statistics.median(results["math"]) / statistics.median(results["sdpa"])
    diff = (outputs["sdpa"] - outputs["math"]).abs().max().item()
    gflop = 2 * forward_macs(model) * opts.batch / 1e9
    print(
        f"  speed-up of sdpa over math: {ratio:.2f}x; max |sdpa - math| = {diff:.2e}; "
        f"{gflop / statistics.median(results['sdpa']):.1f} GFLOP/s with sdpa"
    )


def run_cuda(opts: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = build(opts.model, "cuda")
    args = inputs(model, opts.batch, "cuda")
    flop = 2 * forward_macs(model)
    print(
        f"{opts.model} on {torch.cuda.get_device_name()}: batch {opts.batch}, "
        f"{flop / 1e9:.1f} GFLOP per image, torch {torch.__version__}"
    )
    runner = torch.compile(model) if opts.compile else model
    modes = {
        "bf16 autocast": (False, lambda: torch.autocast("cuda", dtype=torch.bfloat16)),
        "fp32 + TF32": (True, contextlib.nullcontext),
    }
    for impl in ("sdpa", "math"):
        set_attention_impl(impl)
        for label, (tf32, autocast) in modes.items():
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
            torch.backends.cudnn.allow_tf32 = tf32
            times = time_forward(runner, args, opts.repeats, opts.warmup, True, autocast)
            t = statistics.median(times)
            print(
                f"  {impl:4s} {label:13s}: {t * 1e3:8.1f} ms  {opts.batch / t:8.1f} images/s  "
                f"{flop * opts.batch / t / 1e12:6.1f} TFLOP/s"
            )
    set_attention_impl("sdpa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="latent-256", help="latent preset (default latent-256)")
    parser.add_argument("--cuda", action="store_true", help="GPU mode: batch 64, bf16 and fp32+TF32")
    parser.add_argument("--compile", action="store_true", help="wrap the model in torch.compile (GPU mode)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 2 on CPU, 64 on GPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per setting (default 3 CPU, 10 GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 1 CPU, 3 GPU)")
    opts = parser.parse_args()
    defaults = dict(batch=64, repeats=10, warmup=3) if opts.cuda else dict(batch=2, repeats=3, warmup=1)
    for key, value in defaults.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    if opts.cuda:
        if not torch.cuda.is_available():
            raise SystemExit("bench_models: --cuda given but no CUDA device is visible")
        run_cuda(opts)
    else:
        run_cpu(opts)


if __name__ == "__main__":
    main()
