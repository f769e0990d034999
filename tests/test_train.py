"""`diffit-eval train` (diffit_eval/train): EDM's formulas, the loop, DDP, resume, the run folder, the CLI.

Training runs use the `cifar10-tiny` preset on a fixed synthetic dataset (numpy PCG64, the same bits
on every CPU) for a handful of iterations, so the whole file stays within CI's time.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import helpers
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffit.augment import EDM_AUGMENT_KWARGS, AugmentPipe
from diffit.edm import EDMLoss, EDMPrecond
from diffit.models import create_model, parameter_count
from diffit.random import BatchRandom
from diffit.testing import randomize_weights

from diffit_eval.train import TrainConfig, train
from diffit_eval.train.loop import ema_beta, learning_rate

REPO = Path(__file__).resolve().parents[1]
QUICK = dict(
    preset="cifar10-tiny",
    batch=8,
    iterations=8,
    tick_kimg=0.016,
    snapshot_ticks=1,
    state_ticks=1,
    lr_rampup_kimg=0.016,
    ema_halflife_kimg=0.05,
    augment=0.12,
    dropout=0.1,
    verbose=False,
)


def synthetic_dataset(path: Path, n: int = 64, res: int = 32, seed: int = 0) -> Path:
    """uint8 [n, res, res, 3] smooth colour fields (bilinear 4x4 -> res) saved as an ADM npz."""
    rng = np.random.default_rng(seed)
    lo = rng.uniform(0, 255, size=(n, 4, 4, 3))
    t = (np.arange(res) + 0.5) / res * 4 - 0.5
    i0 = np.clip(np.floor(t).astype(int), 0, 3)
    i1 = np.clip(i0 + 1, 0, 3)
    f = np.clip(t - i0, 0, 1)
    rows = lo[:, i0] * (1 - f)[None, :, None, None] + lo[:, i1] * f[None, :, None, None]
    img = rows[:, :, i0] * (1 - f)[None, None, :, None] + rows[:, :, i1] * f[None, None, :, None]
    images = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    np.savez(path, arr_0=images)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic_64x32x32x3.npz")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`diffit-eval ARGS` in-process (helpers.cli), from the repository root."""
    return helpers.cli(*args, cwd=REPO, env=env)


def snapshot_bytes(run_dir: Path) -> dict[str, bytes]:
    """Each EMA tensor's raw bytes (the file's header orders its metadata arbitrarily, so files are compared by content)."""
    from safetensors import safe_open

    path = str(run_dir / "network-snapshot-latest.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    return {
        "__metadata__": json.dumps(meta, sort_keys=True).encode(),
        **{k: v.numpy().tobytes() for k, v in load_file(path).items()},
    }


# ----------------------------------------------------------------------------
# EDM's formulas.


def test_edm_loss_matches_direct_transcription():
    """loss = lambda(sigma) |D(y + n) - y|^2 with EDM's sigma density, in float64 on seeded inputs (1e-12)."""
    torch.set_default_dtype(torch.float64)
    try:
        images = torch.tensor(np.random.default_rng(0).uniform(-1, 1, size=(6, 3, 4, 4)))
        D = lambda x, sigma, labels: 0.7 * x + 0.1 * sigma
        loss = EDMLoss()(D, images, rnd=BatchRandom(torch.Generator().manual_seed(3)))

        g = torch.Generator().manual_seed(3)
        z = torch.randn([6, 1, 1, 1], generator=g).numpy()
        eps = torch.randn([6, 3, 4, 4], generator=g).numpy()
        y = images.numpy()
        sigma = np.exp(-1.2 + 1.2 * z)  # ln sigma ~ N(P_mean, P_std^2)
        weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2  # (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
        noisy = y + sigma * eps
        expect = weight * (0.7 * noisy + 0.1 * sigma - y) ** 2
        assert loss.dtype == torch.float64
        np.testing.assert_allclose(loss.numpy(), expect, rtol=1e-12, atol=0)
    finally:
        torch.set_default_dtype(torch.float32)


def test_loss_weight_and_sigma_density():
    """lambda(sigma) = 1 / c_out(sigma)^2 (EDM Table 1) exactly, and ln sigma has mean -1.2, std 1.2."""
    captured = {}

    def D(x, sigma, labels):
        captured["sigma"] = sigma
        return torch.zeros_like(x)

    torch.set_default_dtype(torch.float64)
    try:
        images = torch.ones(20000, 1, 1, 1)
        loss = EDMLoss()(D, images, rnd=BatchRandom(torch.Generator().manual_seed(0)))
    finally:
        torch.set_default_dtype(torch.float32)
    sigma = captured["sigma"].flatten()
    c_out = sigma * 0.5 / (sigma**2 + 0.25).sqrt()
    torch.testing.assert_close(loss.flatten(), 1 / c_out**2, rtol=1e-12, atol=0)  # D = 0, y = 1
    log_sigma = sigma.log()
    assert abs(log_sigma.mean() + 1.2) < 4 * 1.2 / math.sqrt(20000)
    assert abs(log_sigma.std() - 1.2) < 0.03


def test_lr_rampup_and_ema_halflife_follow_edm():
    # lr * min(nimg / (rampup kimg * 1000), 1), with nimg counted before the step.
    assert learning_rate(1e-3, 0, 10_000) == 0
    assert learning_rate(1e-3, 5_000_000, 10_000) == pytest.approx(5e-4, rel=1e-15)
    assert learning_rate(1e-3, 20_000_000, 10_000) == 1e-3
    # Half-life min(500 kimg, 0.05 * nimg): 0 images -> beta 0 (EMA = net); 1 Mimg -> h = 50k images.
    assert ema_beta(512, 0, 500, 0.05) == 0
    assert ema_beta(512, 1_000_000, 500, 0.05) == pytest.approx(0.5 ** (512 / 50_000), rel=1e-15)
    assert ema_beta(512, 50_000_000, 500, 0.05) == pytest.approx(0.5 ** (512 / 500_000), rel=1e-15)
    assert ema_beta(512, 0, 500, None) == pytest.approx(0.5 ** (512 / 500_000), rel=1e-15)


def test_batch_random_is_world_size_free():
    """Rows lo..hi of a BatchRandom equal those rows of the whole batch's draw."""
    whole = BatchRandom(torch.Generator().manual_seed(9), slice(0, 8), 8).randn([8, 3])
    part = BatchRandom(torch.Generator().manual_seed(9), slice(4, 8), 8).randn([4, 3])
    assert torch.equal(whole[4:], part)
    with pytest.raises(ValueError, match="does not match"):
        BatchRandom(torch.Generator(), slice(4, 8), 8).randn([3, 3])


# ----------------------------------------------------------------------------
# The network's augmentation-label embedding.


def test_augment_embedding_is_training_only():
    """augment_dim = 0 (the presets) adds nothing; 9 adds one 9 x 256 matrix whose zero labels change nothing."""
    plain = create_model("cifar10-tiny")
    aug = randomize_weights(create_model("cifar10-tiny", augment_dim=9), seed=1, std=0.1)  # the head starts at 0
    assert parameter_count(aug)[0] - parameter_count(plain)[0] == 9 * 256
    assert not any("augment" in k for k in plain.state_dict())
    x, sigma = torch.randn(2, 3, 32, 32), torch.tensor([0.3, 2.0])
    D = EDMPrecond(aug).eval()
    with torch.no_grad():
        none = D(x, sigma)
        zeros = D(x, sigma, augment_labels=torch.zeros(2, 9))
        some = D(x, sigma, augment_labels=torch.ones(2, 9))
        plain.load_state_dict({k: v for k, v in aug.state_dict().items() if not k.startswith("augment_embedder.")})
        dropped = EDMPrecond(plain.eval())(x, sigma)
    assert torch.equal(none, zeros) and torch.equal(none, dropped)
    assert not torch.allclose(none, some)
    pipe = AugmentPipe(p=0.12, **EDM_AUGMENT_KWARGS)
    assert pipe.label_dim == 9


# ----------------------------------------------------------------------------
# Training runs.


def test_tiny_preset_reduces_the_loss(dataset, tmp_path):
    """100 iterations of batch 8 on the fixed synthetic set: the last ticks' loss is well below the first's.

    Measured (lr 4e-3, 5-iteration ramp): 0.89 at step 1, 0.62 at 61, 0.30 at 100, so the last
    three ticks average 0.36 against the first two's 0.88 (the bound is 0.6x). 160 iterations at
    lr 2e-3 showed the same in twice the time.
    """
    run = tmp_path / "run"
    train(
        TrainConfig(
            data=str(dataset),
            out=str(run),
            **{
                **QUICK,
                "iterations": 100,
                "channels": (16, 32, 32),
                "tick_kimg": 0.08,
                "snapshot_ticks": 100,
                "state_ticks": 100,
                "lr": 4e-3,
                "lr_rampup_kimg": 0.04,
                "augment": 0.0,
                "dropout": 0.0,
            },
        )
    )
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    first, last = np.mean([e["loss"] for e in stats[:2]]), np.mean([e["loss"] for e in stats[-3:]])
    assert stats[-1]["step"] == 100
    assert last < 0.6 * first, (first, last)


def test_run_folder_snapshot_and_sample(dataset, tmp_path):
    """Snapshots hold the EMA in the preset's layout: `diffit-eval sample --ckpt` loads it; stats and plot are written."""
    run = tmp_path / "run"
    train(TrainConfig(data=str(dataset), out=str(run), **{**QUICK, "iterations": 3}))
    names = sorted(p.name for p in run.iterdir())
    assert {
        "manifest.json",
        "stats.jsonl",
        "loss.png",
        "network-snapshot-000000.safetensors",
        "network-snapshot-latest.safetensors",
        "training-state-000000.pt",
    } <= set(names)
    assert not [n for n in names if n.endswith(".tmp")]
    sd = load_file(str(run / "network-snapshot-latest.safetensors"))
    assert set(sd) == set(create_model("cifar10-tiny").state_dict())
    state = torch.load(run / "training-state-000000.pt", weights_only=True)
    assert state["nimg"] == 24 and set(state) >= {"net", "ema", "optimizer", "augment_pipe", "torch_rng"}
    assert "augment_embedder.weight" in state["ema"]
    entry = json.loads((run / "stats.jsonl").read_text().splitlines()[-1])
    assert {"kimg", "loss", "lr", "img_per_s", "cpu_mem_gb", "gpu_mem_gb"} <= set(entry)
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["batch"] == 8 and manifest["complete"] is True

    # `sample --ckpt` loads that file (the manifest names its bytes) and its images are not the
    # test preset's random network's (the same seeds and sampler without --ckpt).
    from diffit_eval.assets.cache import sha256_file

    ckpt = run / "network-snapshot-latest.safetensors"
    images = {}
    for name, extra in (("trained", ["--ckpt", str(ckpt)]), ("untrained", [])):
        out = tmp_path / name
        args = ["--model", "cifar10-tiny", *extra, "--num-samples", "2", "--steps", "2", "--no-features"]
        r = cli("sample", *args, "--out", str(out), "-q")
        assert r.returncode == 0, r.stderr
        images[name] = np.load(out / "samples_2x32x32x3.npz")["arr_0"]
        record = json.loads((out / "manifest.json").read_text())["checkpoint"]
        if extra:
            assert Path(record["path"]).resolve() == ckpt.resolve() and record["sha256"] == sha256_file(ckpt)
    assert np.abs(images["trained"].astype(int) - images["untrained"]).mean() > 5


def test_two_gloo_ranks_equal_one_rank(dataset, tmp_path, launcher_lock):
    """Same global batch on 1 process, on 1 process in 2 accumulation rounds and on 2 gloo processes.

    Every random draw is a function of (seed, step, image slot), so only the summation order of the
    gradient differs (dropout is off: its masks are drawn per process). Tolerances, after 4 Adam
    steps: the EMA denoisers agree to 1e-5 on fixed inputs (measured 2.5e-7, outputs ~0.3), and
    95% of the weights to 1e-5 (measured 97.8%). The rest are parameters the network is invariant
    to (attention key biases, biases right before a GroupNorm): their true gradient is 0, and Adam
    scales the rounding noise in it up to steps of about lr, so no float tolerance covers them.
    """
    common = [
        "--preset",
        "cifar10-tiny",
        "--data",
        str(dataset),
        "--batch",
        "8",
        "--iterations",
        "4",
        "--tick-kimg",
        "0.016",
        "--lr-rampup-kimg",
        "0.008",
        "--augment",
        "0.5",
        "--dropout",
        "0",
        "-q",
    ]
    env = {"OMP_NUM_THREADS": "1"}
    r = helpers.run_argv(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "diffit_eval",
            "train",
            *common,
            "--out",
            str(tmp_path / "w2"),
        ],
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    one_rank = {**QUICK, "iterations": 4, "lr_rampup_kimg": 0.008, "augment": 0.5, "dropout": 0.0}
    train(TrainConfig(data=str(dataset), out=str(tmp_path / "w1"), **one_rank))
    train(TrainConfig(data=str(dataset), out=str(tmp_path / "w1acc"), batch_gpu=4, **one_rank))

    g = torch.Generator().manual_seed(0)
    x, sigma = torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0.05, 0.5, 2.0, 20.0])

    def denoise(sd):
        net = create_model("cifar10-tiny")
        net.load_state_dict(sd)
        with torch.no_grad():
            return EDMPrecond(net.eval())(x, sigma)

    one = load_file(str(tmp_path / "w1" / "network-snapshot-latest.safetensors"))
    ref = denoise(one)
    untrained = denoise(create_model("cifar10-tiny").state_dict())
    assert (ref - untrained).abs().max() > 1e-2  # the weights did train, so the agreement means something
    for other in ("w2", "w1acc"):
        sd = load_file(str(tmp_path / other / "network-snapshot-latest.safetensors"))
        assert (denoise(sd) - ref).abs().max() < 1e-5, other
        diff = torch.cat([(sd[k] - one[k]).abs().flatten() for k in one if one[k].is_floating_point()])
        assert (diff <= 1e-5).float().mean() > 0.95, other
        assert diff.max() < 3 * 1e-3 * 4, other  # at most a few Adam steps of size lr apart


def test_kill_then_resume_is_bit_exact(dataset, tmp_path):
    """kill -9 during training, `--resume`: the final EMA snapshot is byte-identical to an uninterrupted run."""
    iterations = 14
    base = {**QUICK, "iterations": iterations}
    train(TrainConfig(data=str(dataset), out=str(tmp_path / "straight"), **base))

    run = tmp_path / "killed"
    args = [
        "train",
        "--preset",
        "cifar10-tiny",
        "--data",
        str(dataset),
        "--out",
        str(run),
        "--batch",
        "8",
        "--iterations",
        str(iterations),
        "--tick-kimg",
        "0.016",
        "--snap",
        "1",
        "--dump",
        "1",
        "--lr-rampup-kimg",
        "0.016",
        "--ema-halflife-kimg",
        "0.05",
        "--augment",
        "0.12",
        "--dropout",
        "0.1",
        "-q",
    ]
    env = helpers.child_env({"OMP_NUM_THREADS": str(torch.get_num_threads())})
    proc = helpers.spawn(
        [*helpers.cli_argv(), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    try:
        while not list(run.glob("training-state-*.pt")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        stats = run / "stats.jsonl"
        while (
            proc.poll() is None
            and time.time() < deadline
            and (not stats.is_file() or len(stats.read_text().splitlines()) < 3)
        ):
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = torch.load(max(run.glob("training-state-*.pt")), weights_only=True)
    assert 0 < state["nimg"] < iterations * 8
    r = cli("train", "--resume", str(run), "-q")  # in-process: this process's thread count, as the killed run had
    assert r.returncode == 0, r.stderr
    assert snapshot_bytes(run) == snapshot_bytes(tmp_path / "straight")
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == iterations  # ticks after the state were dropped, not doubled


def test_refuses_another_config_a_used_folder_and_a_locked_one(dataset, tmp_path):
    from diffit_eval.run_folder import RunLock

    run = tmp_path / "run"
    train(TrainConfig(data=str(dataset), out=str(run), **{**QUICK, "iterations": 1}))
    r = cli("train", "--resume", str(run), "--lr", "0.5")
    assert r.returncode == 1 and "another configuration" in r.stderr and "lr: 0.001 -> 0.5" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    import shlex

    same = shlex.split(json.loads((run / "manifest.json").read_text())["command"])[1:]  # without --resume
    r = cli(*same)
    assert r.returncode == 1 and "already holds a training run; pass --resume" in r.stderr
    with RunLock(run):
        r = cli("train", "--resume", str(run))
    assert r.returncode == 1 and "being written by another" in r.stderr


def test_dry_run_prints_the_resolved_configuration(tmp_path):
    r = cli("train", "--preset", "cifar10", "--data", "sklearn-digits", "--dry-run", "--out", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    # Appendix I.1 and EDM's CIFAR-10 settings.
    assert (c["batch"], c["lr"], c["iterations"], c["dropout"], c["augment"], c["augment_dim"]) == (
        512,
        1e-3,
        200_000,
        0.13,
        0.12,
        9,
    )
    assert (c["lr_rampup_kimg"], c["ema_halflife_kimg"], c["ema_rampup_ratio"]) == (10_000, 500, 0.05)
    assert (c["P_mean"], c["P_std"], c["sigma_data"], c["adam_betas"], c["adam_eps"]) == (
        -1.2,
        1.2,
        0.5,
        [0.9, 0.999],
        1e-8,
    )
    assert c["num_images"] == 1500 and not (tmp_path / "x").exists()
    r = cli("train", "--preset", "ffhq64", "--data", "sklearn-digits", "--dry-run")
    assert r.returncode == 0 and json.loads(r.stdout)["resolution"] == 64  # built-ins render at the preset's size


def test_data_of_another_resolution_is_refused(dataset):
    r = cli("train", "--preset", "ffhq64", "--data", str(dataset), "--dry-run")
    assert r.returncode == 1 and "holds 32x32 images but the preset trains at 64x64" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "cifar10", "--data", "no/such.zip"], "--data no/such.zip: no such file or folder"),
        (["--preset", "nope", "--data", "sklearn-digits"], "unknown model 'nope'"),
        (["--preset", "latent-256", "--data", "sklearn-digits"], "latent model"),
        (["--preset", "cifar10", "--data", "sklearn-digits", "--batch", "0"], "--batch must be a positive integer"),
        (["--preset", "cifar10", "--data", "sklearn-digits", "--batch", "12", "--batch-gpu", "5"], "--batch-gpu 5"),
        (["--preset", "cifar10", "--data", "sklearn-digits", "--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (["--preset", "cifar10", "--data", "sklearn-digits", "--precision", "fp8"], "unknown --precision 'fp8'"),
        (["--preset", "cifar10", "--data", "sklearn-digits", "--metrics-kimg", "10"], "--metrics-kimg needs --ref"),
        (["--preset", "cifar10"], "--data is required"),
    ],
)
def test_bad_input_is_one_line(args, message):
    r = cli("train", *args, "--dry-run")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_fid_is_logged_with_the_standin(dataset, tmp_path, standin_weights):
    """--metrics-kimg samples from the EMA, extracts features on the fly and logs an FID (stand-in network)."""
    from PIL import Image

    ref = tmp_path / "ref"
    ref.mkdir()
    with np.load(dataset) as z:
        for i, im in enumerate(z["arr_0"][:4]):
            Image.fromarray(im).save(ref / f"{i}.png")
    run = tmp_path / "run"
    train(
        TrainConfig(
            data=str(dataset),
            out=str(run),
            metrics_kimg=0.016,
            metrics_num=2,
            ref=str(ref),
            inception_weights=str(standin_weights),
            **{**QUICK, "iterations": 2},
        )
    )
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["nimg"] for e in lines] == [8, 16] and all(math.isfinite(e["fid"]) and e["fid"] > 0 for e in lines)
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert [e.get("fid") for e in stats] == [e["fid"] for e in lines]
    assert lines[0]["fid"] != lines[1]["fid"]  # measured anew at each tick, from the EMA of that moment
    # The logged number is `sample` + `metrics` of the final snapshot with seeds 0 .. N-1 (quality.py).
    w = ["--inception-weights", str(standin_weights), "-q"]
    ckpt = run / "network-snapshot-latest.safetensors"
    r = cli("sample", "--model", "cifar10-tiny", "--ckpt", str(ckpt), "--seeds", "0-1", "--no-features",
            "--out", str(tmp_path / "s"), "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = cli(
        "metrics", str(tmp_path / "s"), "--ref", str(ref), "--metrics", "fid", "--json", str(tmp_path / "m.json"), *w
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["fid"] == pytest.approx(lines[-1]["fid"], rel=1e-9)
