"""EDM's training loop for the image-space DiffiT (NVlabs/edm `training/training_loop.py`), resumable.

One optimizer step, as EDM:

    1. accumulate gradients over the global batch: each process takes batch / world_size images,
       in rounds of batch_gpu, and adds loss.sum() * loss_scaling / (batch / world_size);
    2. learning rate = lr * min(images seen / lr ramp-up images, 1);
    3. NaN -> 0, +inf -> 1e5, -inf -> -1e5 in every gradient; Adam step;
    4. EMA: half-life h = min(ema_halflife, images seen * ema_rampup_ratio),
       beta = 0.5 ** (batch / h), ema = net.lerp(ema, beta).

Maintenance once per tick (tick_kimg thousand images, and after the first step): a stats.jsonl
line and a progress line; a network snapshot every snapshot_ticks, a training state every
state_ticks, an FID every metrics_kimg when asked; everything at the end.

Randomness is a function of (seed, step) and never of the process: at each step every process
seeds one generator with (seed, step) and draws the whole global batch's sigma, augmentation and
noise from it, keeping its own rows (:class:`diffit.random.BatchRandom`); the data order is a
function of the seed and the images seen (:class:`EpochOrder`). Dropout masks come from torch's
global generator, seeded per (seed, step, process, round). So on CPU a resumed run is bit-for-bit
the uninterrupted one (same world size), and with dropout 0 the world size changes only the
floating-point summation order of the gradient.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from diffit_eval import distributed
from diffit_eval.train import config as cfg
from diffit_eval.train import data as trdata
from diffit_eval.train import state as st
from diffit_eval.train import stats as trstats
from diffit_eval.train.plan import TrainPlan, plan_training

COLLECTIVE_TIMEOUT = timedelta(hours=12)  # ranks wait while rank 0 writes snapshots or measures FID
METRICS_LOG = "metrics.jsonl"


def step_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed for (seed, parts...) via numpy's SeedSequence (same on every machine)."""
    return int(
        np.random.SeedSequence([seed, *parts])
        .generate_state(2, dtype=np.uint32)
        .astype(np.uint64)
        .dot(np.array([1 << 31, 1], dtype=np.uint64))
    )


def learning_rate(lr: float, nimg: int, lr_rampup_kimg: float) -> float:
    """EDM: lr * min(images seen / ramp-up images, 1), evaluated before the step's images are counted."""
    return lr * min(nimg / max(lr_rampup_kimg * 1000, 1e-8), 1)


def ema_beta(batch: int, nimg: int, ema_halflife_kimg: float, ema_rampup_ratio: float | None) -> float:
    """EDM: beta = 0.5 ** (batch / h), h = min(half-life, images seen * ramp-up ratio) images."""
    ema_halflife_nimg = ema_halflife_kimg * 1000
    if ema_rampup_ratio is not None:
        ema_halflife_nimg = min(ema_halflife_nimg, nimg * ema_rampup_ratio)
    return 0.5 ** (batch / max(ema_halflife_nimg, 1e-8))


def build_network(c: dict, device: str | torch.device) -> torch.nn.Module:
    """The preset's network with the training-only parts: augmentation-label embedding and dropout."""
    from diffit.models import create_model

    torch.manual_seed(c["seed"])  # the same initial weights on every process (DDP also broadcasts rank 0's)
    arch = {k: tuple(v) for k, v in c.get("model", {}).items()}
    extra = {"label_dropout": c["label_dropout"]} if c.get("label_dropout") else {}
    net = create_model(c["preset"], augment_dim=c["augment_dim"], dropout=c["dropout"], **extra, **arch)
    if c.get("transfer") is not None:
        st.transfer_weights(net, Path(c["transfer"]["path"]))
    return net.to(device)


def build_augment_pipe(c: dict):
    from diffit.augment import EDM_AUGMENT_KWARGS, AugmentPipe

    return AugmentPipe(p=c["augment"], **EDM_AUGMENT_KWARGS) if c["augment"] > 0 else None


# ----------------------------------------------------------------------------
# Progress display (rank 0).


class _Display:
    """A rich bar on stderr (kimg, loss, img/s, ETA) and one status line per tick."""

    def __init__(self, enabled: bool, total_nimg: int, done_nimg: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from diffit_eval.progress import stderr_console

        self.enabled, self.console = enabled, stderr_console
        self.bar = Progress(
            TextColumn("training"),
            BarColumn(),
            TextColumn("kimg {task.fields[kimg]:.1f}/{task.fields[kimg_total]:.1f}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} img/s"),
            TimeRemainingColumn(),
            console=stderr_console,
            transient=True,
            disable=not (enabled and sys.stderr.isatty()),
        )
        self.task = self.bar.add_task(
            "train",
            total=total_nimg,
            completed=done_nimg,
            kimg=done_nimg / 1e3,
            kimg_total=total_nimg / 1e3,
            loss="-",
            rate="-",
        )

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def advance(self, n: int, nimg: int) -> None:
        self.bar.update(self.task, advance=n, kimg=nimg / 1e3)

    def tick(self, entry: dict) -> None:
        self.bar.update(self.task, loss=f"{entry['loss']:.4f}", rate=f"{entry['img_per_s']:.1f}")
        if self.enabled:
            fid = f" fid {entry['fid']:.3f}" if entry.get("fid") is not None else ""
            self.console.print(
                f"tick {entry['tick']:<5d} kimg {entry['kimg']:<9.3f} loss {entry['loss']:<8.4f} "
                f"lr {entry['lr']:.3g} {entry['img_per_s']:.1f} img/s "
                f"mem {entry['cpu_mem_gb']:.2f}/{entry['gpu_mem_gb']:.2f} GB{fid}",
                highlight=False,
            )


def _cpu_mem_gb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    except Exception:
        return float("nan")


# ----------------------------------------------------------------------------
# The run.


def _reduce_sum(values: list[float], d: distributed.Dist, device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if d.world_size > 1:
        torch.distributed.all_reduce(t)
    return t.tolist()


def train(config: cfg.TrainConfig) -> Path | None:
    """Train (or continue) a run; returns its folder, or None for a dry run. Every process of torchrun calls this."""
    import json

    from diffit.edm import EDMLoss, EDMPrecond
    from diffit.random import BatchRandom

    from diffit_eval.generate.sample import matmul_precision
    from diffit_eval.provenance import device_description, now_iso

    d = distributed.init(config.device, timeout=COLLECTIVE_TIMEOUT)
    device = torch.device(distributed.device_for(d, config.device))
    lock, probe = None, None
    try:

        def plan_and_claim() -> tuple[TrainPlan, None]:
            nonlocal lock, probe  # rank 0's own: the finally below releases the lock whatever fails
            plan = plan_training(config, d.world_size)
            if config.dry_run:
                info = {"run_dir": str(plan.run_dir), "world_size": d.world_size, **plan.config}
                print(json.dumps(info, indent=2, default=str))
                return plan, None
            if plan.metrics_kimg is not None:
                from diffit_eval.train.quality import FIDProbe

                probe = FIDProbe(
                    plan.config["preset"], config.ref, config.metrics_num, config.inception_weights, str(device)
                )
                plan.manifest["metrics"] = probe.describe()
            lock, plan.manifest = st.claim(plan.run_dir, plan.manifest, resume=config.resume is not None)
            plan.resume_from = st.latest_state(plan.run_dir)
            return plan, None

        plan, _ = distributed.main_then_broadcast(plan_and_claim, d)
        if config.dry_run:
            return None
        c = plan.config
        batch_gpu_total, batch_gpu, rounds = cfg.split_batch(c["batch"], plan.batch_gpu, d.world_size)

        # Data, network, loss, optimizer, augmentation, EMA (EDM's order).
        dataset = trdata.load_training_set(c["data"], c["resolution"])
        order = trdata.EpochOrder(len(dataset), c["seed"])
        net = build_network(c, device).train().requires_grad_(True)
        loss_fn = EDMLoss(P_mean=c["P_mean"], P_std=c["P_std"], sigma_data=c["sigma_data"])
        optimizer = torch.optim.Adam(net.parameters(), lr=c["lr"], betas=c["adam_betas"], eps=c["adam_eps"])
        augment_pipe = build_augment_pipe(c)
        denoiser = EDMPrecond(net, sigma_data=c["sigma_data"])
        ddp = denoiser
        if d.world_size > 1:
            ddp = torch.nn.parallel.DistributedDataParallel(
                denoiser, device_ids=[device] if device.type == "cuda" else None
            )
        call = torch.compile(ddp) if plan.compile else ddp
        ema = copy.deepcopy(net).eval().requires_grad_(False)

        # Resume: weights, EMA, optimizer and counters from the newest training state.
        nimg, tick, tick_start_nimg = 0, 0, 0
        if plan.resume_from is not None:
            s = st.load_state(plan.resume_from)
            if s.get("world_size") != d.world_size and d.is_main and config.verbose:
                print(
                    f"diffit-eval: resuming a run made with {s.get('world_size')} processes on {d.world_size}; "
                    "it continues, but not bit-for-bit",
                    file=sys.stderr,
                )
            net.load_state_dict(s["net"])
            ema.load_state_dict(s["ema"])
            optimizer.load_state_dict(s["optimizer"])
            nimg, tick, tick_start_nimg = s["nimg"], s["tick"], s["tick_start_nimg"]
            if d.is_main:
                trstats.truncate_after(plan.run_dir / st.STATS, nimg)
        total_nimg = c["iterations"] * c["batch"]
        next_metrics = None
        if plan.metrics_kimg is not None:
            every = int(round(plan.metrics_kimg * 1000))
            next_metrics = (nimg // every + 1) * every if nimg else 0

        meta = {"format": cfg.FORMAT, "preset": c["preset"], "ema": "true", "config": {k: c[k] for k in cfg.COMPARED}}
        device_type = device.type
        autocast = c["precision"] == "bf16"
        tick_nimg = int(round(c["tick_kimg"] * 1000))
        loss_sum = torch.zeros([], dtype=torch.float64, device=device)
        loss_count = 0
        session_start, session_start_nimg = time.time(), nimg
        tick_start_time = time.time()
        maintenance = 0.0
        if d.is_main and config.verbose:
            what = f"resuming at kimg {nimg / 1e3:.3f} from {plan.resume_from.name}" if plan.resume_from else "starting"
            print(
                f"diffit-eval: training {c['preset']} on {c['data']} ({c['num_images']} images), {what}; "
                f"{c['iterations']} iterations of batch {c['batch']} ({d.world_size} process"
                f"{'es' if d.world_size > 1 else ''}, {rounds} round{'s' if rounds > 1 else ''} of {batch_gpu}) "
                f"into {plan.run_dir}",
                file=sys.stderr,
            )

        display = _Display(config.verbose and d.is_main, total_nimg, nimg)
        with display, matmul_precision(c["precision"]):
            done = nimg >= total_nimg
            while not done:
                step = nimg // c["batch"]

                # Accumulate gradients.
                optimizer.zero_grad(set_to_none=True)
                for round_idx in range(rounds):
                    lo = d.rank * batch_gpu_total + round_idx * batch_gpu
                    idx = order.indices(nimg + lo, batch_gpu)
                    images = trdata.to_model_range(dataset.images[idx], device, net.img_channels)
                    labels = (
                        trdata.label_vectors(dataset.labels, idx, c["num_classes"], device)
                        if c.get("num_classes")
                        else None
                    )
                    gen = torch.Generator(device).manual_seed(step_seed(c["seed"], step))
                    rnd = BatchRandom(gen, slice(lo, lo + batch_gpu), c["batch"])
                    torch.manual_seed(step_seed(c["seed"], step, d.rank, round_idx))  # dropout masks
                    sync = round_idx == rounds - 1 or d.world_size == 1
                    with (
                        contextlib.nullcontext() if sync else ddp.no_sync(),
                        torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast),
                    ):
                        loss = loss_fn(net=call, images=images, labels=labels, augment_pipe=augment_pipe, rnd=rnd)
                    loss_sum += loss.detach().sum().to(torch.float64)
                    loss_count += loss.numel()
                    loss.sum().mul(c["loss_scaling"] / batch_gpu_total).backward()

                # Update weights.
                lr = learning_rate(c["lr"], nimg, c["lr_rampup_kimg"])
                for g in optimizer.param_groups:
                    g["lr"] = lr
                for param in net.parameters():
                    if param.grad is not None:
                        torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
                optimizer.step()

                # Update EMA.
                beta = ema_beta(c["batch"], nimg, c["ema_halflife_kimg"], c["ema_rampup_ratio"])
                with torch.no_grad():
                    for p_ema, p_net in zip(ema.parameters(), net.parameters()):
                        p_ema.copy_(p_net.detach().lerp(p_ema, beta))

                # Maintenance once per tick.
                nimg += c["batch"]
                display.advance(c["batch"], nimg)
                done = nimg >= total_nimg
                if not done and tick != 0 and nimg < tick_start_nimg + tick_nimg:
                    continue
                tick_end_time = time.time()
                total_loss, count = _reduce_sum([float(loss_sum), float(loss_count)], d, device)
                loss_sum.zero_()
                loss_count = 0
                seconds = max(tick_end_time - tick_start_time - maintenance, 1e-9)
                entry = {
                    "tick": tick,
                    "kimg": nimg / 1e3,
                    "nimg": nimg,
                    "step": step + 1,
                    "loss": total_loss / max(count, 1),
                    "lr": lr,
                    "img_per_s": (nimg - tick_start_nimg) / seconds,
                    "sec_per_kimg": seconds / max(nimg - tick_start_nimg, 1) * 1e3,
                    "cpu_mem_gb": _cpu_mem_gb(),
                    "gpu_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0,
                    "timestamp": time.time(),
                }
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                t_maint = time.time()

                # Network snapshot (EMA, the preset's layout) and training state.
                if done or tick % c["snapshot_ticks"] == 0:
                    if d.is_main:
                        st.save_snapshot(plan.run_dir, ema, nimg, meta)
                if (done or tick % c["state_ticks"] == 0) and tick != 0 and d.is_main:
                    st.save_state(
                        plan.run_dir,
                        {
                            "net": net.state_dict(),
                            "ema": ema.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "nimg": nimg,
                            "tick": tick + 1,
                            "tick_start_nimg": nimg,
                            "world_size": d.world_size,
                            "augment_pipe": augment_pipe.state() if augment_pipe is not None else None,
                            "config": st.compared(c),
                            "torch_rng": torch.get_rng_state(),
                        },
                        nimg,
                    )

                # FID of the EMA network.
                if next_metrics is not None and (nimg >= next_metrics or done):
                    if d.is_main:
                        fid = probe.measure(ema)
                        entry["fid"] = fid
                        trstats.append(
                            plan.run_dir / METRICS_LOG,
                            {
                                "kimg": nimg / 1e3,
                                "nimg": nimg,
                                "fid": fid,
                                "num_samples": probe.num_samples,
                                "timestamp": time.time(),
                            },
                        )
                    every = int(round(plan.metrics_kimg * 1000))
                    next_metrics = (nimg // every + 1) * every

                if d.is_main:
                    trstats.append(plan.run_dir / st.STATS, entry)
                    display.tick(entry)
                    if done or tick % c["snapshot_ticks"] == 0:
                        trstats.plot(plan.run_dir / st.STATS, plan.run_dir / st.PLOT)
                distributed.barrier(d)

                # Update state.
                tick += 1
                tick_start_nimg = nimg
                tick_start_time = time.time()
                maintenance = tick_start_time - t_maint

        if d.is_main:
            if not (plan.run_dir / st.LATEST).is_file() or plan.resume_from is not None and session_start_nimg == nimg:
                st.save_snapshot(plan.run_dir, ema, nimg, meta)
            trstats.plot(plan.run_dir / st.STATS, plan.run_dir / st.PLOT)
            session = {
                "finished": now_iso(),
                "elapsed_s": round(time.time() - session_start, 3),
                "from_nimg": session_start_nimg,
                "to_nimg": nimg,
                "world_size": d.world_size,
                "batch_gpu": batch_gpu,
                "device": device_description(str(device)),
                "compile": plan.compile,
            }
            plan.manifest["sessions"] = [*plan.manifest.get("sessions", []), session]
            plan.manifest["complete"] = nimg >= total_nimg
            plan.manifest["updated"] = now_iso()
            from diffit_eval.assets.cache import write_json_atomic

            write_json_atomic(plan.run_dir / st.MANIFEST, plan.manifest)
            if config.verbose:
                print(
                    f"diffit-eval: trained to kimg {nimg / 1e3:.3f} ({nimg // c['batch']} iterations); EMA weights in "
                    f"{plan.run_dir / st.LATEST}",
                    file=sys.stderr,
                )
        distributed.shutdown(d)
        return plan.run_dir
    finally:
        if lock is not None:
            lock.release()
        if d.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def plot_run(run_dir: str | os.PathLike) -> Path:
    """Redraw loss.png of a run folder from its stats.jsonl (`diffit-eval train --plot`)."""
    run_dir = Path(run_dir)
    st.read_manifest(run_dir)
    return trstats.plot(run_dir / st.STATS, run_dir / st.PLOT)
