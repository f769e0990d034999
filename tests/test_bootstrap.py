"""Issue 16: bootstrap intervals (diffit_eval/metrics/bootstrap.py).

- The eigenvalue route of a replicate equals scipy's sqrtm FID of the resampled rows themselves,
  both for N > d (d x d route) and N <= d (Gram route).
- Coverage: on Gaussians with a closed-form FID (the reference is the population itself), the
  95% interval covers the true FID in >= 90% of 100 seeded repetitions (B = 200, N = 400, d = 3).
- precision's replicate is precision of the resampled multiset (literal definition); recall's is
  the documented rule (sample radii fixed, a reference point recalled when a drawn sample's ball
  holds it), checked by brute force; KID's identity replicate is the point estimate.
- CLI: --bootstrap 0 is one line before any work.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from diffit_eval.metrics.bootstrap import (
    BootstrapInputs,
    FrechetToReference,
    bootstrap_intervals,
    percentile_interval,
    replicate_indices,
)
from diffit_eval.metrics.fid import frechet_distance, frechet_distance_sqrtm


def _gaussian_case(d: int = 3):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(d, d))
    mu1, s1 = np.linspace(1.0, 0.0, d), a @ a.T / d + 0.5 * np.eye(d)
    mu2, s2 = np.zeros(d), np.diag(np.linspace(1.0, 2.0, d))
    return mu1, s1, mu2, s2


def _closed_form_fid(mu1, s1, mu2, s2) -> float:
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


@pytest.mark.parametrize("n, d", [(300, 20), (16, 64)])
def test_eigenvalue_route_equals_sqrtm_of_resampled_rows(n, d):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, d)) + 0.3
    sigma_ref = np.cov(rng.normal(size=(4 * d, d)), rowvar=False)
    mu_ref = np.full(d, 0.1)
    fd = FrechetToReference(x, mu_ref, sigma_ref)
    for idx in replicate_indices(n, 3, seed=7):
        xb = x[idx]
        want = frechet_distance_sqrtm(xb.mean(0), np.cov(xb, rowvar=False), mu_ref, sigma_ref)
        got = fd.value(np.bincount(idx, minlength=n))
        assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (got, want)
    # no resampling: the plain FID of the rows
    want = frechet_distance_sqrtm(x.mean(0), np.cov(x, rowvar=False), mu_ref, sigma_ref)
    assert abs(fd.value() - want) <= 1e-6 * max(1.0, abs(want))


REPETITIONS, REPLICATES, N = 100, 200, 400


def test_interval_covers_the_closed_form_fid():
    mu1, s1, mu2, s2 = _gaussian_case()
    truth = _closed_form_fid(mu1, s1, mu2, s2)
    hits = 0
    for r in range(REPETITIONS):
        x = np.random.default_rng(100 + r).multivariate_normal(mu1, s1, size=N)
        fid = frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu2, s2)  # the value metrics reports
        ci = bootstrap_intervals(
            N, BootstrapInputs(fid=(x, mu2, s2)), REPLICATES, seed=r, device="cpu", estimates={"fid": fid}
        )
        lo, hi = ci["fid_ci"]
        hits += lo <= truth <= hi
    assert hits >= 0.9 * REPETITIONS, f"{hits}/{REPETITIONS} intervals cover FID {truth}"


def test_interval_is_centred_on_the_reported_value_where_the_raw_one_misses_it():
    """N = 60 in 12-d: FID's bias enters every replicate once more, so the raw percentile interval
    lies above the FID it should bracket; centred on it, the interval holds it and keeps its width."""
    x = np.random.default_rng(5).normal(size=(60, 12))
    mu2, s2 = np.zeros(12), np.eye(12)
    fid = frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu2, s2)
    inputs = BootstrapInputs(fid=(x, mu2, s2))
    raw = bootstrap_intervals(60, inputs, 200, seed=0, device="cpu")["fid_ci"]
    centred = bootstrap_intervals(60, inputs, 200, seed=0, device="cpu", estimates={"fid": fid})["fid_ci"]
    assert raw[0] > fid, (raw, fid)
    assert centred[0] < fid < centred[1], (centred, fid)
    assert centred[1] - centred[0] == pytest.approx(raw[1] - raw[0], rel=1e-9)
    assert percentile_interval([1.0, 2.0, 3.0], estimate=12.0) == pytest.approx([11.05, 12.95])


def test_a_centred_interval_stays_inside_the_metric_range():
    """Recall 1.0 of a small set: the replicates' mean is below 1, so the shift onto the reported
    value carries the upper quantile past 1; the interval is clipped to recall's range [0, 1]."""
    rng = np.random.default_rng(0)
    cover = torch.as_tensor(rng.random((40, 12)) < 0.15)  # reference i covered by sample j
    cover[np.arange(40), rng.integers(0, 12, 40)] = True  # every reference row covered: recall 1.0
    inputs = BootstrapInputs(cover=cover)
    raw = bootstrap_intervals(12, inputs, 200, seed=0, device="cpu")["recall_ci"]
    lo, hi = bootstrap_intervals(12, inputs, 200, seed=0, device="cpu", estimates={"recall": 1.0})["recall_ci"]
    assert raw[0] < raw[1] < 1.0  # replicates miss samples, so some reference rows go uncovered
    assert hi == 1.0 and raw[0] < lo < 1.0  # shifted up by the replicates' shortfall, clipped at 1
    assert percentile_interval([0.5, 0.9], estimate=0.95, bounds=(0.0, 1.0))[1] == 1.0
    assert percentile_interval([-0.2, 0.1], bounds=(0.0, 1.0))[0] == 0.0


def test_intervals_are_seeded_and_bracket_the_replicates():
    x = np.random.default_rng(0).normal(size=(50, 2))
    inputs = BootstrapInputs(fid=(x, np.zeros(2), np.eye(2)))
    a = bootstrap_intervals(50, inputs, 30, seed=3, device="cpu")
    assert a == bootstrap_intervals(50, inputs, 30, seed=3, device="cpu")
    assert a != bootstrap_intervals(50, inputs, 30, seed=4, device="cpu")
    assert percentile_interval(np.arange(101)) == pytest.approx([2.5, 97.5])


def _sq(u, v):
    return ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)


def test_precision_and_recall_replicates_follow_their_definitions():
    from diffit_eval.metrics.prc import K, membership

    rng = np.random.default_rng(2)
    ref = rng.normal(size=(40, 5)).astype(np.float32)
    sam = (rng.normal(size=(30, 5)) * 1.2 + 0.3).astype(np.float32)
    m = membership(ref, sam, arith="exact", device="cpu", keep_cover=True)
    r_ref = np.sort(_sq(ref.astype(np.float64), ref.astype(np.float64)), axis=1)[:, K]
    r_sam = np.sort(_sq(sam.astype(np.float64), sam.astype(np.float64)), axis=1)[:, K]
    d = _sq(ref.astype(np.float64), sam.astype(np.float64))
    inputs = BootstrapInputs(sample_in=m.sample_in, cover=m.cover)
    (idx,) = list(replicate_indices(30, 1, seed=11))
    ci = bootstrap_intervals(30, inputs, 1, seed=11, device="cpu")
    # one replicate: the interval collapses onto its value
    precision = (d[:, idx] <= r_ref[:, None]).any(axis=0).mean()  # the multiset's precision, literally
    drawn = np.unique(idx)
    recall = (d[:, drawn] <= r_sam[None, drawn]).any(axis=1).mean()  # full-set radii, drawn samples only
    assert ci["precision_ci"] == [pytest.approx(precision)] * 2
    assert ci["recall_ci"] == [pytest.approx(recall)] * 2


def test_kid_replicates_use_torch_fidelity_subsets():
    from diffit_eval.metrics.kid import KIDTerms, kid, kid_subset_indices

    rng = np.random.default_rng(3)
    x, y = rng.random((40, 16)).astype(np.float32), (rng.random((30, 16)) + 0.05).astype(np.float32)
    a, b = kid_subset_indices(40, 30, 30)
    import torch

    terms = KIDTerms(torch.from_numpy(y.astype(np.float64)), b)
    identity = terms.value(torch.from_numpy(x.astype(np.float64)), np.arange(40)[a])
    assert abs(identity - kid(x, y)[0]) < 1e-6

    # The interval (centred on the reported value, as `metrics` reports it) holds that value, and
    # narrows with N: 4x the samples of one distribution, against one larger reference (subsets of
    # min(N, reference) rows, as torch-fidelity sizes them). Measured widths: 0.0256 -> 0.0160.
    ref = (rng.random((200, 16)) + 0.05).astype(np.float32)
    widths = []
    for n in (40, 160):
        s = rng.random((n, 16)).astype(np.float32)
        value, _, m = kid(s, ref)
        assert m == n
        lo, hi = bootstrap_intervals(n, BootstrapInputs(kid=(s, ref, m)), 50, device="cpu", estimates={"kid": value})[
            "kid_ci"
        ]
        assert lo < value < hi, (lo, value, hi)
        widths.append(hi - lo)
    assert widths[1] < 0.8 * widths[0], widths


def test_bootstrap_zero_is_one_line_before_work(capsys, tmp_path):
    from diffit_eval.cli import main

    for value in ("0", "-3"):
        with pytest.raises(SystemExit) as e:
            main(["metrics", str(tmp_path / "nothing.npz"), "--ref", "x", "--bootstrap", value])
        err = capsys.readouterr().err
        assert e.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("diffit-eval: error:") and f"--bootstrap {value}" in err


def _measured_json(path, **extra):
    import json

    rec = {
        "fid": 1.75,
        "sfid": 4.6,
        "is": 270.0,
        "precision": 0.8,
        "recall": 0.6,
        "num_samples": 50000,
        "unavailable": {},
        "label": "ours",
        "dataset": "imagenet",
        "resolution": 256,
        "feature_network": {"name": "inception-v3-compat", "standin": False},
        **extra,
    }
    path.write_text(json.dumps(rec))
    return path


def test_table_shows_intervals_and_the_new_metrics(tmp_path):
    from diffit_eval.report.table import make_table

    p = _measured_json(tmp_path / "m.json", fid_ci=[1.70, 1.79], kid=0.00123, kid_ci=[0.001, 0.0015], fd_dinov2=52.5)
    t = make_table([p], metrics=["fid", "kid", "fd_dinov2"])
    row = t.display[t.display["model"] == "ours"].iloc[0]
    assert row["256_fid"] == "1.750 [1.700, 1.790]"
    assert row["256_kid"] == "0.00123 [0.00100, 0.00150]" and row["256_fd_dinov2"] == "52.50"


def test_regress_overlaps_passes_when_the_interval_holds_the_value(tmp_path):
    from diffit_eval.report.regress import compare
    from diffit_eval.report.suites import _expectation

    e = {"fid": _expectation("fid", {"overlaps": 1.73}, "suite.x")}
    assert compare({"fid": 1.75, "fid_ci": [1.70, 1.79]}, e)[0].verdict == "pass"
    failed = compare({"fid": 1.85, "fid_ci": [1.80, 1.90]}, e)[0]
    assert failed.verdict == "FAIL" and "outside [1.8, 1.9]" in failed.reason
    missing = compare({"fid": 1.75}, e)[0]
    assert missing.verdict != "pass" and "--bootstrap" in missing.reason
    assert _expectation("kid", {"value": 0.001, "tol": 1e-4}, "s").bound == 1e-4  # the new keys are known
