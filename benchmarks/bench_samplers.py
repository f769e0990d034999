"""Sampler overhead outside the network, per step, against one latent-256 forward (CPU, batch 2).

The samplers run with a network that returns zeros of the right shape, so what is timed is the
schedule gathers, the step arithmetic and the noise draws. The budget is 2% of one forward per
step. Weights are random (nothing is downloaded).
    python benchmarks/bench_samplers.py [--batch 2] [--steps 250] [--forward-repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from diffit.ddpm import ddim_sampler, ddpm_sampler
from diffit.edm import edm_sampler
from diffit.guidance import guided_ddpm_sample
from diffit.random import StackedRandomGenerator


class ZeroLatentModel(torch.nn.Module):
    """Stands in for the latent model: eps and variance channels of zeros, no work."""

    def forward(self, x, t, y=None, **kwargs):
        return x.new_zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:])

    def forward_with_cfg(self, x, t, y, cfg_scale):
        return self.forward(x, t, y)


def per_step_ms(run, steps: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) / steps * 1000


def forward_ms(batch: int, repeats: int) -> tuple[float, str]:
    try:
        from diffit.models import create_model

        model = create_model("latent-256").eval()
        what = "latent-256 (diffit.models)"
    except ImportError as error:  # The models module is written in parallel; say what stood in.
        print(f"diffit.models unavailable ({error}); timing a DiT-XL/2-sized nn.TransformerEncoder instead")
        layer = torch.nn.TransformerEncoderLayer(1152, 16, 4608, batch_first=True, norm_first=True)
        model = torch.nn.TransformerEncoder(layer, 28, enable_nested_tensor=False).eval()
        what = "stand-in transformer (28 x 1152, 256 tokens)"
        tokens = torch.randn(batch, 256, 1152)
        call = lambda: model(tokens)
    else:
        x = torch.randn(batch, 4, 32, 32)
        t = torch.full((batch,), 500, dtype=torch.int64)
        y = torch.zeros(batch, dtype=torch.int64)
        call = lambda: model(x, t, y)
    times = []
    with torch.inference_mode():
        call()  # Warm-up.
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--forward-repeats", type=int, default=2)
    args = parser.parse_args()
    B, steps = args.batch, args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {B}, {steps} steps")

    zero = ZeroLatentModel()
    noise = torch.randn(B, 4, 32, 32)
    labels = torch.zeros(B, dtype=torch.int64)

    def with_generators(sample):
        # A fresh generator per run, as the sharded generator makes one per batch.
        def run():
            gen = StackedRandomGenerator("cpu", range(B))
            return sample(gen.randn([B, 4, 32, 32]), gen.randn_like)

        return run

    cases = {
        "ddpm, torch.randn_like": lambda: ddpm_sampler(zero, noise, num_steps=steps),
        "ddpm, per-sample generators": with_generators(
            lambda z, rl: ddpm_sampler(zero, z, num_steps=steps, randn_like=rl)
        ),
        "ddim, per-sample generators": with_generators(
            lambda z, rl: ddim_sampler(zero, z, num_steps=steps, randn_like=rl)
        ),
        "guided ddpm (doubled batch), per-sample": with_generators(
            lambda z, rl: guided_ddpm_sample(zero, z, labels, 4.4, num_steps=steps, randn_like=rl)
        ),
    }
    overhead = {name: per_step_ms(run, steps) for name, run in cases.items()}
    edm_steps = 40
    edm_zero = lambda x, sigma, labels=None: torch.zeros_like(x, dtype=torch.float32)
    edm_ms = per_step_ms(
        lambda: edm_sampler(edm_zero, torch.randn(B, 4, 32, 32), num_steps=edm_steps), 2 * edm_steps - 1
    )

    fwd, what = forward_ms(B, args.forward_repeats)
    print(f"forward: {what}, batch {B}: {fwd:.1f} ms")
    worst = 0.0
    for name, ms in overhead.items():
        ratio = ms / fwd
        worst = max(worst, ratio)
        print(f"{name:42s} {ms * 1000:8.1f} us/step   {100 * ratio:.4f}% of a forward")
    print(
        f"{'edm (per network call, 4x32x32)':42s} {edm_ms * 1000:8.1f} us/call   {100 * edm_ms / fwd:.4f}% of a forward"
    )
    print(f"worst ratio {100 * worst:.4f}% (budget 2%): {'OK' if worst < 0.02 else 'OVER BUDGET'}")


if __name__ == "__main__":
    main()
