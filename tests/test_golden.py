"""Issue 10: golden values and stand-ins that hold on any CPU; the staged golden suite.

- The seeded stand-ins (Inception, random DiffiT, tiny VAE) are the same bytes under every
  `ATEN_CPU_CAPABILITY` this CPU can run, and under 1 or 2 threads.
- The golden suite records, passes on a re-run, and fails at the stage where a change begins.
The spread and sensitivity that set the tolerances are measured by benchmarks/golden_spread.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, run_argv

from diffit_eval.protocol import METRIC_KEYS
from diffit_eval.report import golden
from diffit_eval.report import suites as rs

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "results" / "suites.toml"

DIGESTS = r"""
import hashlib, json, sys, tempfile, torch
from pathlib import Path
from diffit.models import create_model
from diffit.testing import randomize_weights, tiny_vae
from diffit_eval.testing import make_standin_weights

def digest(module):
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode()); h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()

def digests(threads, inception=True):
    torch.set_num_threads(threads)
    rest = [digest(randomize_weights(create_model("cifar10-tiny"), 0)),
            digest(randomize_weights(create_model("latent-tiny"), 3)), digest(tiny_vae(0))]
    if not inception:
        return rest
    with tempfile.TemporaryDirectory() as d:
        return [hashlib.sha256(make_standin_weights(Path(d) / "w.pth", seed=0).read_bytes()).hexdigest(), *rest]

def randn_sum():
    return torch.randn(64, generator=torch.Generator().manual_seed(0)).sum().item()

if __name__ == "__main__":
    print(json.dumps({"level": torch.backends.cpu.get_cpu_capability(), "randn": randn_sum(),
                      "digests": {t: digests(int(t)) for t in sys.argv[1:]}}))
"""


def cpu_capabilities() -> list[str]:
    """The kernel levels this CPU can run (AVX-512 kernels on a CPU without it die of SIGILL)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return ["default", *(["avx2"] if " avx2" in flags else []), *(["avx512"] if "avx512f" in flags else [])]


def digests_in_process() -> dict:
    """DIGESTS's functions, defined in this process (at this process's kernel level)."""
    namespace: dict = {}
    exec(DIGESTS.replace('if __name__ == "__main__":', "if False:"), namespace)
    return namespace


@pytest.fixture(scope="module")
def other_levels() -> dict[str, dict]:
    """DIGESTS in one fresh interpreter per kernel level other than this process's (the switch is
    read when torch loads), at 1 and 2 threads: {level: its JSON}."""
    import torch

    here = torch.backends.cpu.get_cpu_capability().lower()
    out = {}
    for cap in cpu_capabilities():
        if cap != here:
            r = run_argv(
                [sys.executable, "-c", DIGESTS, "1", "2"], env={"ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": "2"}
            )
            assert r.returncode == 0, r.stderr
            out[cap] = json.loads(r.stdout)
    return out


@pytest.mark.slow
def test_standins_are_the_same_bytes_on_every_kernel_level_and_thread_count(standin_weights, other_levels):
    """Every kernel level x 1 and 2 threads: the level this process runs at in-process, every other
    level in one fresh interpreter each (the switch is read when torch loads), both thread counts
    inside it (torch.set_num_threads sets the same intra-op pool as OMP_NUM_THREADS). At this
    level and this run's thread count the Inception stand-in is the session's own file, made by
    `make_standin_weights(seed=0)` in a worker like this one (same level, same threads)."""
    import hashlib

    import torch

    here = torch.backends.cpu.get_cpu_capability().lower()
    namespace = digests_in_process()
    saved = torch.get_num_threads()
    session = hashlib.sha256(standin_weights.read_bytes()).hexdigest()
    try:
        runs = {}
        for threads in (1, 2):
            if threads == saved:  # the other stand-ins are cheap; the Inception one costs a forward pass
                runs[(here, str(threads))] = [session, *namespace["digests"](threads, inception=False)]
            else:
                runs[(here, str(threads))] = namespace["digests"](threads)
    finally:
        torch.set_num_threads(saved)
    for cap, out in other_levels.items():
        assert out["level"].lower() == cap  # the switch really took effect
        runs.update({(cap, t): d for t, d in out["digests"].items()})
    assert len(runs) >= 4, runs  # at least default and avx2 (or default twice on odd CPUs)
    first = next(iter(runs.values()))
    assert all(d == first for d in runs.values()), runs
    assert len(set(first)) == 4  # four different stand-ins, not one digest repeated


def test_torch_randn_really_differs_between_kernel_levels(other_levels):
    """Why the stand-ins avoid torch.randn: if this stops failing, torch made randn portable. The
    same seeded draw at the default and the AVX2 kernel level (this process's own level, or the
    interpreters of `other_levels`)."""
    import torch

    if "avx2" not in cpu_capabilities():
        pytest.skip("needs a CPU with AVX2 to compare kernel levels")
    here = torch.backends.cpu.get_cpu_capability().lower()
    out = {cap: run["randn"] for cap, run in other_levels.items()}
    out[here] = digests_in_process()["randn_sum"]()
    assert out["default"] != out["avx2"]


def test_sketch_matrix_is_fixed_and_well_scaled():
    a, b = golden.sketch_matrix(2048), golden.sketch_matrix(2048)
    assert a.shape == (2048, golden.SKETCH_DIM) and np.array_equal(a, b)
    # N(0, 1/dim) columns: squared norms ~1 (chi-square with 2048 dof / 2048: within 15%)
    assert np.allclose((a**2).sum(0), 1.0, atol=0.15)
    assert not np.array_equal(golden.sketch_matrix(2023)[:16], a[:16])


def test_golden_tolerance_lookup():
    tol = {"images": 3, "features": {"tol": 1e-5}, "metrics": {"rtol": 1e-4}, "metrics.precision": {"tol": 0.02}}
    assert rs.golden_tolerance("images.edm", tol) == (3.0, 0.0)
    assert rs.golden_tolerance("features.pool", tol) == (1e-5, 0.0)
    assert rs.golden_tolerance("metrics.edm.fid", tol) == (0.0, 1e-4)
    assert rs.golden_tolerance("metrics.ddpm.precision", tol) == (0.02, 0.0)
    with pytest.raises(rs.CouldNotRun, match="no tolerance for golden value 'e2e.edm.fid'"):
        rs.golden_tolerance("e2e.edm.fid", tol)


def test_repo_golden_is_recorded_for_the_suites_sets():
    suite = rs.get_suite("golden-cpu", SUITES)
    names = set(suite.expected)
    sets = golden.golden_sets(suite.settings)
    assert {f"images.{s.name}" for s in sets} <= names
    assert {f"sampler.{s.name}" for s in sets if s.ref} <= names
    assert "guidance.ddpm" in names and "guidance.edm" not in names  # the guided set's gain stage only
    assert {
        f"{stage}.{s.name}.{m}" for stage in ("metrics", "e2e") for s in sets if s.ref for m in METRIC_KEYS
    } <= names
    images, sketches = golden.load_arrays(golden.arrays_file(suite.settings, SUITES))
    assert sketches["ddpm"][golden.GAIN_KEY].shape == (25,)  # one gain per respaced step
    assert set(images) == {s.name for s in sets} and set(sketches) == {s.name for s in sets}
    assert images["edm"].shape == (32, 32, 32, 3) and images["ddpm"].shape == (32, 64, 64, 3)
    # every recorded tolerance is finite and the stage 1/2 values are differences (expected 0)
    assert all(suite.expected[n].value == 0 for n in names if n.split(".")[0] in ("sampler", "images", "features"))


def test_guidance_gain_is_the_ramped_scale_at_each_step():
    """Stage 0's gain probe reads back s_t of the power-cosine ramp at every respaced timestep,
    from a random network whose cond and uncond outputs differ by ~1e-3 only; the scales 4.4 and
    4.41 differ at the last step by 0.01, beyond the suite's tolerance."""
    from diffit.ddpm import space_timesteps
    from diffit.guidance import cfg_scale_at

    tol = rs.golden_tolerance("guidance.ddpm", rs.get_suite("golden-cpu", SUITES).settings["tolerances"])[0]
    gains = {}
    for scale in (4.4, 4.41):
        state, gains[scale] = golden.sampler_state(golden.GoldenSet("ddpm", "latent-tiny", "0-3", 5, scale, "ddpm_ref"))
        expected = [cfg_scale_at(float(t), scale, ramp=True, power=4.0) for t in reversed(space_timesteps(1000, 5))]
        assert state.shape == (4, 4, 8, 8) and np.isfinite(state).all()
        np.testing.assert_allclose(gains[scale], expected, atol=tol / 5)
    assert np.abs(gains[4.41] - gains[4.4]).max() > 5 * tol
    # an unguided preset records no gain
    assert golden.sampler_state(golden.GoldenSet("edm", "cifar10-tiny", "0-1", 2, None, "edm_ref"))[1] is None


def small_suite(tmp_path: Path) -> Path:
    """golden-cpu cut to 4 samples a set (the same code path as CI's 32; P/R's k = 3 needs 4), in a
    scratch suites file."""
    text = SUITES.read_text()
    for old, new in (('"0-31"', '"0-3"'), ('"32-63"', '"4-7"'), ("steps = 25", "steps = 5")):
        assert old in text, old
        text = text.replace(old, new)
    dst = tmp_path / "suites" / "suites.toml"
    dst.parent.mkdir()
    dst.write_text(text)
    return dst


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`diffit-eval ARGS` in-process (the stages and the stage-4 metrics CLI are the same code as a
    fresh process runs; `regress`'s exit codes as a real process are in tests/test_table_regress.py)."""
    return cli(*args, cwd=REPO)


@pytest.mark.slow
def test_golden_records_passes_and_names_the_stage_that_drifted(tmp_path, standin_weights):
    suites = small_suite(tmp_path)
    # the session's stand-in (seed 0, the suite's standin_seed), not a new one per run
    common = ["--suite", "golden-cpu", "--suites", str(suites), "--inception-weights", str(standin_weights)]
    r = run_cli("regress", *common, "--update-golden")
    assert r.returncode == 0, r.stderr
    recorded = json.loads((suites.parent / "golden-cpu.json").read_text())["values"]
    assert recorded["images.edm"] == 0 and recorded["metrics.edm.fid"] > 0
    # stage 3 (features of the recorded images) and stage 4 (the CLI on this run) agree here
    for key in ("fid", "sfid", "is", "precision", "recall"):
        assert recorded[f"e2e.ddpm.{key}"] == pytest.approx(recorded[f"metrics.ddpm.{key}"], rel=1e-9, abs=1e-12)

    # One checking run against the record with one recorded value moved beyond its tolerance
    # (metrics.edm.fid by 1e-3 relative, tolerance 1e-4): that check fails alone, the error line
    # names it, and every other stage of the re-run passes, stages 0-2 with the same bits. (A
    # changed recorded image fails stage 1 and, through the features of the recorded images, stages
    # 2-3: `test_stage_values_count_changed_pixels_per_set`; a run with nothing changed is CI's regress --suite golden-cpu.)
    record = suites.parent / "golden-cpu.json"
    patched = json.loads(record.read_text())
    patched["values"]["metrics.edm.fid"] *= 1 + 1e-3
    record.write_text(json.dumps(patched))
    rep = tmp_path / "rep.json"
    r = run_cli("regress", *common, "--json", str(rep))
    assert r.returncode == 1, r.stdout + r.stderr
    checks = {c["metric"]: c for c in json.loads(rep.read_text())["checks"]}
    assert set(checks) == set(recorded)
    failed = [m for m, c in checks.items() if c["verdict"] == "FAIL"]
    assert failed == ["metrics.edm.fid"], failed
    assert checks["images.edm"]["measured"] == 0 and checks["features.pool"]["measured"] == 0
    assert checks["sampler.ddpm"]["measured"] == 0  # same process kind, same bits
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("diffit-eval: error:")]
    assert len(errors) == 1 and "metrics.edm.fid" in errors[0] and "Traceback" not in r.stderr

    # --measured cannot stand in for the staged run
    r = run_cli("regress", *common, "--measured", str(rep))
    assert r.returncode == 2 and "drop --measured" in r.stderr


def test_stage_values_count_changed_pixels_per_set():
    """Stage 1 counts differing uint8 values per set against the recorded images (the patch the
    record test used to make: 75 values of one set), and only that set; a missing record is all
    of them; stage 2 is the worst relative sketch difference."""
    from diffit_eval.report.golden import FEATURE_KINDS, stage_values

    rng = np.random.default_rng(0)
    images = {n: rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8) for n in ("edm", "ddpm")}
    sketch = {n: {k: rng.normal(size=(4, 16)) for k in FEATURE_KINDS} for n in images}
    recorded = {n: im.copy() for n, im in images.items()}
    recorded["ddpm"][3, :5, :5, :] ^= 0x10
    moved = {n: {k: v * (1 + 1e-3 * (n == "edm")) for k, v in d.items()} for n, d in sketch.items()}
    out = stage_values({"images": images, "sketch": moved}, recorded, sketch)
    assert out["images.ddpm"] == 75 and out["images.edm"] == 0
    assert all(out[f"features.{k}"] == pytest.approx(1e-3) for k in FEATURE_KINDS)
    assert stage_values({"images": images, "sketch": sketch}, {}, sketch)["images.edm"] == images["edm"].size
