"""Issue 16: DINOv2 statistics in references and DINOv2 rows in run folders, from the same single pass.

- `ref build --dinov2-weights W` stores `mu_dinov2` / `sigma_dinov2` of the same images, and
  FD_DINOv2 against that file equals FD_DINOv2 against the images themselves to 1e-6.
- `sample --features inception,dinov2` keeps both networks' rows per shard, and `metrics RUN`
  replays them (the DINOv2 network never runs) to the same FD_DINOv2 as the run's npz, bit for bit.
- `--features` takes auto, none or a comma list; anything else is one line before any work.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import synthetic_images

from diffit_eval.errors import UserError
from diffit_eval.generate.sample import SampleConfig, parse_features


@pytest.fixture(scope="module")
def dinov2_standin(tmp_path_factory):
    from diffit_eval.testing import make_dinov2_standin_weights

    return make_dinov2_standin_weights(tmp_path_factory.mktemp("dinov2") / "dinov2-standin.pth", dim=8)


def test_reference_carries_dinov2_statistics_of_the_same_images(tmp_path, standin_weights, dinov2_standin):
    from diffit_eval.features.dinov2 import DINOv2Features
    from diffit_eval.metrics.evaluate import run_metrics
    from diffit_eval.references.build import build_reference
    from diffit_eval.references.store import load_reference

    ref_images, samples = synthetic_images(12, 7), synthetic_images(10, 8, shift=0.4)
    np.savez(tmp_path / "ref.npz", arr_0=ref_images)
    np.savez(tmp_path / "samples.npz", arr_0=samples)
    out = build_reference(
        tmp_path / "ref.npz",
        name="tiny-dinov2",
        resolution=32,
        crop="none",
        pr_images=12,
        out=tmp_path / "built.npz",
        weights=standin_weights,
        dinov2_weights=dinov2_standin,
        device="cpu",
        batch_size=5,
        chunk_size=7,
        workers=0,
        progress=False,
    )
    ref = load_reference(str(out))
    rows = DINOv2Features(dinov2_standin)(ref_images).double().numpy()
    np.testing.assert_allclose(ref.mu_dinov2, rows.mean(0), atol=1e-6)
    np.testing.assert_allclose(ref.sigma_dinov2, np.cov(rows, rowvar=False), atol=1e-6)
    with np.load(out) as z:
        meta = json.loads(str(z["meta"]))
    assert "fd_dinov2" in meta["holds"] and meta["dinov2_network"]["standin"] is True

    common = dict(
        metrics=["fd_dinov2"],
        weights=str(standin_weights),
        dinov2_weights=str(dinov2_standin),
        batch_size=4,
        progress=False,
    )
    from_file = run_metrics(tmp_path / "samples.npz", str(out), **common)["fd_dinov2"]
    from_images = run_metrics(tmp_path / "samples.npz", str(tmp_path / "ref.npz"), **common)["fd_dinov2"]
    assert from_file > 0 and abs(from_file - from_images) < 1e-6, (from_file, from_images)


def test_run_folder_keeps_dinov2_rows_and_metrics_replays_them(tmp_path, standin_weights, dinov2_standin, monkeypatch):
    from diffit_eval.features import dinov2 as dinov2_module
    from diffit_eval.generate.execute import generate
    from diffit_eval.generate.shards import dinov2_features_path
    from diffit_eval.metrics.evaluate import run_metrics

    run = generate(
        SampleConfig(
            model="cifar10-tiny",
            ckpt="random:0",
            seeds="0-9",
            steps=2,
            shard_size=4,
            out=tmp_path / "run",
            batch_size=5,
            precision="fp32",
            features=True,
            inception_weights=str(standin_weights),
            dinov2_features=True,
            dinov2_weights=str(dinov2_standin),
            device="cpu",
            verbose=False,
        )
    )
    manifest = json.loads((run / "manifest.json").read_text())
    digest = manifest["dinov2_features"]["sha256"]
    assert all(dinov2_features_path(run, k, digest).is_file() for k in range(3))  # shards of 4, 4, 2
    np.savez(tmp_path / "ref.npz", arr_0=synthetic_images(10, 9))
    common = dict(
        metrics=["fd_dinov2"],
        weights=str(standin_weights),
        dinov2_weights=str(dinov2_standin),
        batch_size=4,
        progress=False,
    )
    extracted = run_metrics(next(run.glob("samples_*.npz")), str(tmp_path / "ref.npz"), **common)["fd_dinov2"]

    # The reference side (an npz of images) still runs the network: count those calls instead.
    calls = []
    real_forward = dinov2_module.DINOv2Features.forward
    monkeypatch.setattr(
        dinov2_module.DINOv2Features, "forward", lambda self, x: calls.append(len(x)) or real_forward(self, x)
    )
    replayed = run_metrics(run, str(tmp_path / "ref.npz"), **common)["fd_dinov2"]
    assert replayed == extracted and sum(calls) == 10  # the 10 reference images only


@pytest.mark.parametrize(
    ("text", "none", "want"),
    [
        (None, False, (None, False)),
        ("auto", False, (None, False)),
        ("none", False, (False, False)),
        (None, True, (False, False)),
        ("inception", False, (True, False)),
        ("dinov2", False, (False, True)),
        ("inception, dinov2", False, (True, True)),
    ],
)
def test_features_option_values(text, none, want):
    assert parse_features(text, none) == want


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--features", "inceptoin"], "--features 'inceptoin': choose auto, none or a comma list of inception, dinov2"),
        (["--features", "inception", "--no-features"], "contradict each other"),
    ],
)
def test_bad_features_is_one_line_before_any_work(args, says, tmp_path, capsys):
    from diffit_eval.cli import main

    with pytest.raises(SystemExit) as e:
        main(["sample", "--model", "cifar10-tiny", "--seeds", "0-3", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and says in err and not (tmp_path / "r").exists()
    with pytest.raises(UserError):
        parse_features(",")
