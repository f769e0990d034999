"""`diffit-eval sweep`: points are ordinary runs scored like `sample` + `metrics`, finished points are
reused, bad input is one line before any sampling; and the class-conditional pieces it sweeps
(guided EDM denoiser, fixed class labels, label dropout, --transfer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import cli

from diffit_eval.report.sweep import parse_vary, point_name

# 16 samples per point with the digit network: the property (a point == the plain run, reuse) is
# exact at any size; the sampling is 2 x 16 digits-cond samples of 18 steps.
SEEDS = "0-15"
HELDOUT = None  # the held-out digits as an npz: the reference of every test here (set by the fixture)


@pytest.fixture(scope="module", autouse=True)
def heldout_npz(tmp_path_factory):
    from diffit_eval.io.sources import sklearn_digits

    global HELDOUT, DIGITS
    HELDOUT = tmp_path_factory.mktemp("ref") / "heldout.npz"
    np.savez(HELDOUT, arr_0=sklearn_digits("heldout", 16)[0])
    DIGITS = ["--model", "digits-cond", "--seeds", SEEDS, "--network", "digits", "--ref", str(HELDOUT)]
    return HELDOUT


DIGITS: list = []


@pytest.fixture(scope="module")
def digits_sweep(tmp_path_factory, heldout_npz):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    r = cli("sweep", "--vary", "cfg-scale=1,2", *DIGITS, "--metrics", "fid,pr", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    return out


def test_sweep_writes_rows_table_and_plot_and_a_point_equals_the_plain_run(digits_sweep, tmp_path):
    doc = json.loads((digits_sweep / "sweep.json").read_text())
    assert doc["option"] == "cfg-scale" and [r["value"] for r in doc["rows"]] == [1.0, 2.0]
    fids = [r["fid"] for r in doc["rows"]]
    assert doc["best"] == {"value": doc["rows"][int(np.argmin(fids))]["value"], "fid": min(fids)}
    assert (digits_sweep / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cfg-scale=2" in (digits_sweep / "sweep.md").read_text()

    # The same point by hand: `sample` then `metrics`.
    run = tmp_path / "by-hand"
    r = cli("sample", "--model", "digits-cond", "--seeds", SEEDS, "--cfg-scale", "2", "--out", run, "-q")
    assert r.returncode == 0, r.stderr
    rec = tmp_path / "plain.json"
    r = cli("metrics", run, "--ref", HELDOUT, "--network", "digits", "--metrics", "fid,pr", "--json", rec)
    assert r.returncode == 0, r.stderr
    plain = json.loads(rec.read_text())
    point = doc["rows"][1]
    for key in ("fid", "precision", "recall"):
        assert point[key] == pytest.approx(plain[key], rel=1e-9, abs=1e-12), key
    a = np.load(next(run.glob("samples_*.npz")))
    b = np.load(next((digits_sweep / "cfg-scale-2").glob("samples_*.npz")))
    assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["arr_1"], b["arr_1"])


def test_finished_points_are_reused_and_a_new_value_is_added(digits_sweep):
    before = (digits_sweep / "cfg-scale-1" / "metrics.json").stat().st_mtime_ns
    r = cli("sweep", "--vary", "cfg-scale=1,3", *DIGITS, "--metrics", "fid,pr", "--out", digits_sweep)
    assert r.returncode == 0, r.stderr
    assert "cfg-scale=1 (reused)" in r.stderr and "cfg-scale=3 (reused)" not in r.stderr
    assert (digits_sweep / "cfg-scale-1" / "metrics.json").stat().st_mtime_ns == before
    rows = json.loads((digits_sweep / "sweep.json").read_text())["rows"]
    assert [r["value"] for r in rows] == [1.0, 3.0]
    # Scored another way, a point is scored again (its images are reused by the run folder).
    r = cli("sweep", "--vary", "cfg-scale=1", *DIGITS, "--metrics", "fid", "--out", digits_sweep, "-q")
    assert r.returncode == 0 and (digits_sweep / "cfg-scale-1" / "metrics.json").stat().st_mtime_ns != before


@pytest.mark.parametrize(
    "vary, message",
    [
        ("cfg=1,2", "unknown option 'cfg'"),
        ("cfg-scale", "expected OPTION=V1,V2"),
        ("cfg-scale=", "empty value"),
        ("cfg-scale=1,,2", "empty value"),
        ("steps=10,x", "'x' is not a valid steps value"),
        ("cfg-scale=2,2", "a value is repeated"),
        ("cfg-scale=1,0.5", "--vary cfg-scale=0.5: --cfg-scale 0.5: the guidance scale must be at least 1"),
        ("steps=18,1", "--vary steps=1: --steps 1"),
        ("ckpt=digits-cond,/no/such.safetensors", "--vary ckpt=/no/such.safetensors"),
    ],
)
def test_bad_input_is_one_line_before_any_sampling(tmp_path, vary, message):
    out = tmp_path / "sw"
    r = cli("sweep", "--vary", vary, *DIGITS, "--out", out)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_a_guidance_sweep_of_a_latent_preset_with_standin_weights(tmp_path, standin_weights):
    """The use case of the latent presets (latent-256 with the released ramp), on latent-tiny."""
    common = ["--model", "latent-tiny", "--steps", "3", "--inception-weights", standin_weights]
    ref = tmp_path / "ref"
    r = cli("sample", *common[:4], "--seeds", "100-107", "--no-features", "--out", ref, "-q")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "sw"
    r = cli(
        "sweep",
        "--vary",
        "cfg-scale=1,4.4",
        *common,
        "--seeds",
        "0-5",
        "--ref",
        ref,
        "--metrics",
        "fid",
        "--out",
        out,
        "-q",
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["value"] for r in rows] == [1.0, 4.4] and all(r["fid"] > 0 for r in rows)
    # (random stand-in weights: the class embedding is too small for guidance to move a uint8 value)
    manifest = json.loads((out / "cfg-scale-4.4" / "manifest.json").read_text())
    assert manifest["config"]["guidance"] == {"scale": 4.4, "ramp": "power-cosine", "power": 4.0, "channels": 3}


def test_point_names_and_vary_parsing():
    assert parse_vary("cfg-scale=1, 1.5 ,2") == ("cfg-scale", [1.0, 1.5, 2.0])
    assert parse_vary("steps=10,18") == ("steps", [10, 18])
    assert point_name("cfg-scale", 1.5) == "cfg-scale-1.5"
    assert point_name("ckpt", "/r/network-snapshot-000064.safetensors") == "ckpt-network-snapshot-000064"


# ----------------------------------------------------------------------------------------------
# The conditional pieces.


def test_guided_denoiser_is_the_cfg_formula_on_one_doubled_batch():
    from diffit.edm import EDMPrecond
    from diffit.guidance import GuidedDenoiser, one_hot
    from diffit.models import create_model

    torch.manual_seed(0)
    net = create_model("digits-cond").eval()
    torch.nn.init.normal_(net.head[-1].weight, std=0.05)  # a non-zero output layer: D depends on the labels
    D = EDMPrecond(net)
    x, sigma = torch.randn(3, 1, 16, 16), torch.tensor(2.5)  # digits-cond is a grey model
    y = one_hot(torch.tensor([1, 7, 3]), 10)
    with torch.no_grad():
        cond, uncond = D(x, sigma, y), D(x, sigma, torch.zeros_like(y))
        for s in (1.0, 2.5):
            guided = GuidedDenoiser(D, s)(x, sigma, y)
            torch.testing.assert_close(guided, uncond + s * (cond - uncond), rtol=1e-5, atol=1e-5)
    assert (cond - uncond).abs().max() > 1e-4


def test_class_labels_are_dealt_to_seeds_and_keep_each_seeds_noise(tmp_path):
    drawn = tmp_path / "drawn"
    assert cli("sample", "--model", "digits-cond", "--seeds", "0-5", "--out", drawn, "-q").returncode == 0
    d = np.load(next(drawn.glob("samples_*.npz")))
    fixed = tmp_path / "fixed"
    labels = ",".join(str(v) for v in d["arr_1"])  # ask for exactly the classes the seeds drew
    r = cli("sample", "--model", "digits-cond", "--seeds", "0-5", "--class-labels", labels, "--out", fixed, "-q")
    assert r.returncode == 0, r.stderr
    f = np.load(next(fixed.glob("samples_*.npz")))
    assert np.array_equal(f["arr_0"], d["arr_0"]) and np.array_equal(f["arr_1"], d["arr_1"])
    dealt = tmp_path / "dealt"
    assert (
        cli(
            "sample", "--model", "digits-cond", "--seeds", "0-4", "--class-labels", "3,8", "--out", dealt, "-q"
        ).returncode
        == 0
    )
    assert np.load(next(dealt.glob("samples_*.npz")))["arr_1"].tolist() == [3, 8, 3, 8, 3]
    for bad, message in (("10", "classes of model digits-cond are 0 to 9"), ("a", "bad --class-labels 'a'")):
        r = cli("sample", "--model", "digits-cond", "--seeds", "0-1", "--class-labels", bad, "--out", tmp_path / "x")
        assert r.returncode == 1 and message in r.stderr
    r = cli("sample", "--model", "digits", "--seeds", "0-1", "--class-labels", "3", "--out", tmp_path / "x")
    assert r.returncode == 1 and "model digits is unconditional" in r.stderr


def test_label_dropout_zeroes_labels_in_training_only():
    from diffit.models import create_model

    net = create_model("digits-cond", label_dropout=0.5)
    seen = []
    net.label_embedder.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x, t, y = torch.zeros(400, 1, 16, 16), torch.zeros(400), torch.ones(400, 10)
    torch.manual_seed(0)
    with torch.no_grad():
        net.train()(x, t, y)
        net.eval()(x, t, y)
    kept_train, kept_eval = ((rows.sum(1) > 0).float().mean().item() for rows in seen)
    assert 0.4 < kept_train < 0.6 and kept_eval == 1.0


def test_transfer_copies_shared_tensors_and_reports_the_class_embedding(tmp_path):
    from diffit.checkpoint import read_state_dict
    from diffit.models import create_model
    from diffit.weights import shipped_weights

    from diffit_eval.train.state import transfer_weights

    net = create_model("digits-cond", in_channels=3, out_channels=3)  # the RGB digits network plus classes
    missing = transfer_weights(net, shipped_weights("digits"))
    assert missing == ["label_embedder.weight"]
    src = read_state_dict(shipped_weights("digits"))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in src.items())
    from diffit_eval.errors import UserError

    with pytest.raises(UserError, match="has shape \\(3, 32, 3, 3\\)|has shape"):  # grey digits-cond: one line
        transfer_weights(create_model("digits-cond"), shipped_weights("digits"))
    # A conditional preset on data without labels: one line at planning.
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "a.png")
    r = cli("train", "--preset", "digits-cond", "--data", folder, "--out", tmp_path / "run", "--dry-run")
    assert r.returncode == 1 and "has no class labels" in r.stderr, r.stderr


def test_shipped_conditional_digits_are_the_requested_classes(tmp_path):
    """The shipped digits-cond, 4 samples per class (--class-labels 0-9): a logistic regression fitted
    on the training digits (independent of the model) agrees with the requested class on >= 85% of
    them (measured: 98% of 100 in docs/DEMO.md; random labels would agree on ~10%)."""
    from diffit_eval.demo import sample_conditional

    c = sample_conditional(tmp_path / "cond", 4)
    assert c["labels"].tolist() == list(range(10)) * 4
    assert c["agreement"] >= 0.85, c["agreement"]
    grey = c["images"].astype(int)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 0] == grey[..., 2]).all()  # no tint

    # grid-cond.png: row k holds the samples of class k (left panel) and real digits of class k (right),
    # each tile the 16x16 image scaled 3x by nearest neighbour.
    from PIL import Image

    from diffit_eval.demo import DemoResult, write_conditional_grid

    grid = np.asarray(Image.open(write_conditional_grid(tmp_path / "grid-cond.png", DemoResult(conditional=c))))
    side, gap, caption, margin = 48, 2, 14, 6
    panel_w = 4 * side + 3 * gap
    assert grid.shape == (caption + 10 * side + 9 * gap + 2 * margin, 2 * panel_w + 3 * margin, 3)
    for digit in (0, 7):
        y = margin + caption + digit * (side + gap)
        for j, image in enumerate(c["images"][c["labels"] == digit]):
            x = margin + j * (side + gap)
            np.testing.assert_array_equal(
                grid[y : y + side, x : x + side], np.kron(image, np.ones((3, 3, 1), np.uint8))
            )
        real = c["train"][c["train_labels"] == digit][0]
        x = 2 * margin + panel_w
        np.testing.assert_array_equal(grid[y : y + side, x : x + side], np.kron(real, np.ones((3, 3, 1), np.uint8)))
