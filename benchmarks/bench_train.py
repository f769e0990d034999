"""Training speed of the image-space DiffiT under EDM's recipe: fp32 against bf16 autocast, same run.

One timed step is what `diffit-eval train` does per iteration: augmentation pipe (p = 0.12), EDM
loss through the preconditioned network with its augmentation-label embedding, backward, NaN
guard, Adam, EMA. Prints images/s for both precisions, their ratio, and the cost of the paper's
200,000 iterations (appendix I.1: batch 512 for cifar10, 256 for ffhq64) in device-hours at the
measured rate, assuming one device processes the whole batch at that rate (8 GPUs with DDP take
about 1/8 of the wall time each; the all-reduce of 10^7-10^8 gradient values is not counted).

    python benchmarks/bench_train.py                     # CPU, cifar10, batch 64
    python benchmarks/bench_train.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from diffit.augment import EDM_AUGMENT_KWARGS, AugmentPipe
from diffit.edm import EDMLoss, EDMPrecond
from diffit.models import create_model, parameter_count

from diffit_eval.train.config import EDM_DEFAULTS, TRAIN_PRESETS


def make_step(preset: str, batch: int, device: str, precision: str, compile_: bool):
    c = {**EDM_DEFAULTS, **TRAIN_PRESETS.get(preset, {})}
    torch.manual_seed(0)
    net = create_model(preset, augment_dim=9, dropout=c["dropout"]).to(device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    denoiser = EDMPrecond(net)
    call = torch.compile(denoiser) if compile_ else denoiser
    opt = torch.optim.Adam(net.parameters(), lr=c["lr"], betas=c["adam_betas"], eps=c["adam_eps"])
    pipe, loss_fn = AugmentPipe(p=c["augment"], **EDM_AUGMENT_KWARGS), EDMLoss()
    images = torch.rand(batch, 3, net.img_resolution, net.img_resolution, device=device) * 2 - 1
    dev_type = torch.device(device).type

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(call, images, augment_pipe=pipe)
        loss.sum().mul(1 / batch).backward()
        for p in net.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()
        with torch.no_grad():
            for p_ema, p_net in zip(ema.parameters(), net.parameters()):
                p_ema.copy_(p_net.detach().lerp(p_ema, 0.999))

    return step, net


def measure(step, device: str, warmup: int, repeats: int) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cifar10")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma-separated subset of fp32,bf16")
    args = ap.parse_args()

    c = {**EDM_DEFAULTS, **TRAIN_PRESETS.get(args.preset, {})}
    rates = {}
    for precision in args.precisions.split(","):
        step, net = make_step(args.preset, args.batch, args.device, precision, args.compile)
        times = measure(step, args.device, args.warmup, args.repeats)
        rates[precision] = args.batch / statistics.median(times)
        print(
            f"{args.preset} batch {args.batch} {precision} on {args.device}: {statistics.median(times):.3f} s/step "
            f"(min {min(times):.3f}), {rates[precision]:.2f} img/s"
        )
        del step, net
    if len(rates) == 2:
        print(
            f"bf16 / fp32 speed: {rates['bf16'] / rates['fp32']:.2f}x  "
            f"({parameter_count(args.preset)[0]:,} parameters + 2,304 for the augmentation labels)"
        )
    images = c["iterations"] * c["batch"]
    for precision, rate in rates.items():
        hours = images / rate / 3600
        print(
            f"paper's run ({c['iterations']:,} iterations x batch {c['batch']} = {images / 1e6:.1f} Mimg) at the "
            f"{precision} rate: {hours:,.0f} device-hours ({hours / 8:,.1f} h wall on 8 such devices)"
        )


if __name__ == "__main__":
    main()
