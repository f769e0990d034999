"""Issue 24: density and coverage (Naeem et al. 2020), per-class metrics, FID_inf/IS_inf (Chong &
Forsyth 2020). Each against an independent computation: a float64 brute force of the paper's
formulas, a plain `metrics` run on one class's subset, scipy's `linregress` over the schedule's
subset FIDs; and from the CLI on the shipped digits network (no Inception forwards)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import cli, one_error
from scipy import stats as sps

from diffit_eval.features.stats import RunningStats
from diffit_eval.metrics.density_coverage import density_coverage
from diffit_eval.metrics.fid import frechet_distance
from diffit_eval.metrics.fid_inf import fid_infinity, inception_score_infinity, schedule, subsets
from diffit_eval.metrics.inception_score import inception_score
from diffit_eval.metrics.per_class import per_class_metrics
from diffit_eval.metrics.prc import membership, precision_recall_literal
from diffit_eval.protocol import DENSITY_K, FID_INF_MIN_SAMPLES, FID_INF_POINTS, FID_INF_SEED


def density_coverage_brute_force(real, fake, k: int = DENSITY_K) -> tuple[float, float]:
    """Naeem et al.'s formulas in float64, full matrices, as clovaai's `prdc` writes them: Euclidean
    distances by differences, NND_k the (k+1)-th smallest of a row (the point itself is the first),
    open balls (d < r)."""
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    nnd = np.sort(np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)), axis=1)[:, k]
    d = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))  # [N real, M fake]
    density = (d < nnd[:, None]).sum() / (k * len(y))
    coverage = (d.min(axis=1) < nnd).mean()
    return float(density), float(coverage)


@pytest.mark.parametrize("seed", [0, 1])
def test_density_coverage_equal_float64_brute_force(seed):
    rng = np.random.default_rng(seed)
    # Inception-like: non-negative, sparse, a shifted sample set with outliers
    ref = np.maximum(rng.standard_normal((240, 24)), 0).astype(np.float32)
    sam = np.maximum(rng.standard_normal((180, 24)) * 1.2 + 0.15, 0).astype(np.float32)
    sam[:10] += 4.0  # outliers: no ball of their own, so density/coverage ignore them
    want = density_coverage_brute_force(ref, sam)
    got = density_coverage(ref, sam, device="cpu")
    assert (got.density, got.coverage) == pytest.approx(want, abs=1e-15)
    assert got.density != pytest.approx(got.coverage)  # two different numbers
    # from P/R's own pass (one pass over its blocks, small blocks too): the same counts, P/R unchanged
    m = membership(ref, sam, arith="exact", ball_k=DENSITY_K, device="cpu", block=50)
    from diffit_eval.metrics.density_coverage import from_balls

    both = from_balls(m.balls)
    assert (both.density, both.coverage) == pytest.approx(want, abs=1e-15)
    assert (m.precision, m.recall) == pytest.approx(precision_recall_literal(ref, sam), abs=0)


def _subset_fid(rows, idx, mu, sigma) -> float:
    x = rows[idx].astype(np.float64)
    return frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu, sigma)


def test_fid_inf_is_the_linregress_intercept_and_near_zero_on_one_distribution():
    """Samples drawn from the reference population: FID_N carries the whole 1/N bias, FID_inf is the
    intercept of scipy's regression of the schedule's subset FIDs (recomputed with numpy's cov) and
    sits within a few standard errors of the true 0, far nearer than FID_N."""
    rng = np.random.default_rng(0)
    d, n = 64, 3000
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    sigma = a @ a.T + 0.5 * np.eye(d)
    mu = rng.standard_normal(d)
    rows = (rng.standard_normal((n, d)) @ np.linalg.cholesky(sigma).T + mu).astype(np.float32)
    got = fid_infinity(rows, mu, sigma, device="cpu")
    sizes = schedule(n)
    assert len(sizes) == FID_INF_POINTS and sizes[0] == 300 and sizes[-1] == n
    values = [_subset_fid(rows, idx, mu, sigma) for idx in subsets(n, FID_INF_SEED)]
    assert got.values == pytest.approx(values, rel=1e-9)
    fit = sps.linregress(1.0 / sizes, values)
    assert got.value == pytest.approx(fit.intercept, rel=1e-9, abs=1e-12)
    assert got.stderr == pytest.approx(fit.intercept_stderr, rel=1e-9)
    assert got.slope == pytest.approx(fit.slope, rel=1e-9)
    fid_n = values[-1]  # the whole set
    assert fid_n > 0.4 and abs(got.value) < fid_n / 10 and abs(got.value) < 4 * got.stderr
    boot = fid_infinity(rows, mu, sigma, device="cpu", bootstrap=8)
    assert boot.value == got.value and boot.interval[0] < got.value < boot.interval[1]
    # IS_inf likewise, each subset one split
    logits = rng.standard_normal((n, 10)) * 2
    is_inf = inception_score_infinity(logits)
    is_values = [inception_score(logits[idx], split_size=len(idx))[0] for idx in subsets(n, FID_INF_SEED)]
    assert is_inf.value == pytest.approx(sps.linregress(1.0 / sizes, is_values).intercept, rel=1e-12)
    with pytest.raises(ValueError, match=f"at least {FID_INF_MIN_SAMPLES}"):
        schedule(FID_INF_MIN_SAMPLES - 1)


def test_per_class_numbers_equal_the_subset_computation():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((90, 8)).astype(np.float32)
    ref_labels = np.repeat([0, 1, 2], 30)
    ref[ref_labels == 1] += 1.5
    sam = rng.standard_normal((70, 8)).astype(np.float32)
    labels = np.array([0] * 30 + [1] * 36 + [2] * 3 + [5])
    got = per_class_metrics(sam, labels, ref, ref_labels, density=True, device="cpu")
    assert list(got) == ["0", "1", "2", "5"]
    for c in (0, 1):
        s, r = sam[labels == c], ref[ref_labels == c]
        e = got[str(c)]
        # the subset's statistics as a plain run forms them (RunningStats of the rows): bit for bit
        ss, rs = RunningStats(8).update(s), RunningStats(8).update(r)
        assert e["fid"] == frechet_distance(ss.mean, ss.cov, rs.mean, rs.cov)
        s64, r64 = s.astype(np.float64), r.astype(np.float64)
        want = frechet_distance(s64.mean(0), np.cov(s64.T), r64.mean(0), np.cov(r64.T))
        assert e["fid"] == pytest.approx(want, rel=1e-9)
        assert (e["precision_exact"], e["recall_exact"]) == precision_recall_literal(r, s)
        assert (e["density"], e["coverage"]) == pytest.approx(density_coverage_brute_force(r, s), abs=1e-15)
        assert (e["num_samples"], e["num_reference"]) == (len(s), 30)
    assert got["1"]["fid"] > got["0"]["fid"]  # the shifted class is the worse one
    assert got["2"]["precision"] is None and "pr" in got["2"]["unavailable"] and got["2"]["density"] is not None
    assert got["5"]["fid"] is None and got["5"]["num_reference"] == 0


# --- from the CLI, on the shipped digits network -----------------------------------------------


@pytest.fixture(scope="module")
def digit_sets(tmp_path_factory):
    """Held-out digits (297, labelled) as samples; the training digits (1,500, labelled) built into a
    reference by `ref build --network digits`, which keeps the label of each P/R row."""
    from diffit_eval.io.sources import sklearn_digits

    root = tmp_path_factory.mktemp("beyond")
    held, held_y = sklearn_digits("heldout", 16)
    train, train_y = sklearn_digits("train", 16)
    np.savez(root / "heldout.npz", arr_0=held, arr_1=held_y)
    np.savez(root / "unlabelled.npz", arr_0=held)
    np.savez(root / "train.npz", arr_0=train, arr_1=train_y)
    ref = root / "train-ref.npz"
    proc = cli(
        "ref", "build", root / "train.npz", "--name", "digits-train", "--resolution", "16", "--crop", "none",
        "--network", "digits", "--pr-images", "1500", "--out", ref, "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root, ref


def test_density_coverage_fid_inf_and_per_class_from_the_cli(digit_sets, isolated_cache):
    from diffit_eval.features.digits import DigitFeatures  # noqa: F401  (the network the CLI runs)
    from diffit_eval.features.extract import batch_features
    from diffit_eval.features.registry import load_feature_network

    root, ref = digit_sets
    out = root / "all.json"
    proc = cli(
        "metrics", root / "heldout.npz", "--ref", ref, "--network", "digits", "--quiet", "--per-class",
        "--metrics", "fid,pr,density,coverage,fid_inf,is_inf", "--json", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(out.read_text())
    with np.load(ref) as z:
        ref_rows, ref_labels, ref_images = z["pr_pool"], z["pr_labels"], z["arr_0"]
    net = load_feature_network(None, device="cpu", network="digits")
    held = np.load(root / "heldout.npz")
    rows = batch_features(net, held["arr_0"]).pool.numpy()
    assert (rec["density"], rec["coverage"]) == pytest.approx(density_coverage_brute_force(ref_rows, rows), abs=1e-12)
    assert rec["density_coverage_protocol"]["k"] == DENSITY_K
    # FID_inf: two sets of real digits, one distribution. The fit is scipy's over the schedule's
    # subset FIDs against the reference's statistics; removing the samples' 1/N bias takes it well
    # below FID-297 (the reference's own finite-N bias and the split's noise remain: the
    # Gaussian test above shows the unbiased case)
    fit = rec["fid_inf_fit"]
    assert fit["sizes"] == schedule(297).tolist() and rec["is_inf"] is not None
    with np.load(ref) as z:
        mu, sigma = z["mu"], z["sigma"]
    values = [_subset_fid(rows, idx, mu, sigma) for idx in subsets(297, FID_INF_SEED)]
    assert fit["values"] == pytest.approx(values, rel=1e-6)
    line = sps.linregress(1.0 / np.array(fit["sizes"]), values)
    assert rec["fid_inf"] == pytest.approx(line.intercept, rel=1e-6)
    assert rec["fid_inf_se"] == pytest.approx(line.intercept_stderr, rel=1e-6)
    assert 0 < rec["fid_inf"] < 0.6 * rec["fid"] and rec["fid"] == pytest.approx(values[-1], rel=1e-6)
    # per class: the labels came with the built reference's rows
    assert sorted(map(int, rec["per_class"])) == list(range(10)) and "highest FID" in proc.stdout
    # rows in `table`, each with its value
    filed = root / "filed.json"  # filed under a view's dataset and size (digits have no view of their own)
    filed.write_text(json.dumps({**rec, "dataset": "cifar10", "resolution": 32}))
    proc = cli("table", filed, "--dataset", "cifar10", "--metrics", "fid,density,coverage,fid_inf", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert repr(rec["density"]) in proc.stdout and repr(rec["fid_inf"]) in proc.stdout, proc.stdout
    # a class's numbers equal a plain `metrics` run on that class's samples and reference images
    c = 3
    np.savez(root / "held3.npz", arr_0=held["arr_0"][held["arr_1"] == c])
    np.savez(root / "ref3.npz", arr_0=ref_images[ref_labels == c])
    plain = root / "plain3.json"
    proc = cli(
        "metrics", root / "held3.npz", "--ref", root / "ref3.npz", "--network", "digits", "--quiet",
        "--metrics", "fid,pr,density,coverage", "--json", plain,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    p, e = json.loads(plain.read_text()), rec["per_class"][str(c)]
    assert e["num_samples"] == p["num_samples"]
    for key in ("fid", "precision", "recall", "precision_exact", "recall_exact", "density", "coverage"):
        assert e[key] == pytest.approx(p[key], rel=1e-9, abs=1e-12), key


def test_bad_combinations_are_one_line_before_any_work(digit_sets, isolated_cache, tmp_path):
    root, ref = digit_sets
    stats_only = tmp_path / "stats.npz"
    with np.load(ref) as z:
        np.savez(stats_only, mu=z["mu"], sigma=z["sigma"], meta=z["meta"])
    common = ("--network", "digits", "--quiet")
    line = one_error(cli("metrics", root / "unlabelled.npz", "--ref", ref, "--per-class", *common), 1)
    assert "--per-class needs labelled samples" in line
    line = one_error(cli("metrics", root / "heldout.npz", "--ref", stats_only, "--per-class", *common), 1)
    assert "--per-class needs a reference with labelled rows" in line
    line = one_error(cli("metrics", root / "heldout.npz", "--ref", stats_only, "--metrics", "density", *common), 1)
    assert "need the reference's rows" in line
    proc = cli("metrics", root / "heldout.npz", "--ref", ref, "--metrics", "fid_inf", "--num-samples", "100", *common)
    assert f"at least {FID_INF_MIN_SAMPLES} samples" in one_error(proc, 1)
