"""Measure the golden-cpu suite's spread (machine variations) and sensitivity (real changes).

Spread: the stage values of `diffit-eval regress --suite golden-cpu` when only the machine
changes: CPU kernel level (`ATEN_CPU_CAPABILITY=default|avx2|avx512` where the CPU has it), 1 or
2 threads, and sampling / feature batch sizes. Each variant runs in a fresh process (the kernel
level is read when torch loads). Sensitivity: the same values under small real changes, applied
in-process with patches: EDM rho 7 -> 7.001, sigma_max 80 -> 80.01, guidance 4.4 -> 4.41, one
respaced DDPM timestep off by one, the resize mode, P/R k 3 -> 4. The tolerances in
results/suites.toml must sit above every spread value and below every sensitivity value; this
prints, per stage value, the worst spread, the smallest change and their ratio.

    python benchmarks/golden_spread.py                    # everything (~15 min on 2 cores)
    python benchmarks/golden_spread.py --only spread      # or: --only sensitivity
    python benchmarks/golden_spread.py --variant rho      # one variant, prints its JSON (used by the above)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from unittest import mock  # benchmarks may patch; production code never does

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPREAD = {  # name -> (environment, settings overrides); the recorded run is avx2, 2 threads, batch 64
    "default": ({"ATEN_CPU_CAPABILITY": "default"}, {}),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, {}),
    "avx512": ({"ATEN_CPU_CAPABILITY": "avx512"}, {}),
    "native-1thread-batch8": ({"OMP_NUM_THREADS": "1"}, {"batch_size": 8, "feature_batch": 8}),
    "default-1thread-batch8": (
        {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
        {"batch_size": 8, "feature_batch": 8},
    ),
}
SENSITIVITY = ("rho", "sigma_max", "guidance", "timestep", "resize", "pr_k")


def cpu_has(capability: str) -> bool:
    """Whether this CPU runs `ATEN_CPU_CAPABILITY=capability` (kernels it lacks die of SIGILL)."""
    flag = {"avx2": " avx2", "avx512": "avx512f"}.get(capability)
    try:
        return flag is None or flag in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _patches(variant: str, settings: dict) -> list:
    import diffit.ddpm
    import diffit.edm

    import diffit_eval.metrics.prc

    if variant == "rho":
        return [mock.patch.object(diffit.edm, "edm_sampler", functools.partial(diffit.edm.edm_sampler, rho=7.001))]
    if variant == "sigma_max":
        return [
            mock.patch.object(diffit.edm, "edm_sampler", functools.partial(diffit.edm.edm_sampler, sigma_max=80.01))
        ]
    if variant == "guidance":
        settings["sets"]["ddpm"] = {**settings["sets"]["ddpm"], "cfg_scale": 4.41}
    elif variant == "timestep":
        original = diffit.ddpm.space_timesteps

        def off_by_one(num_timesteps: int, num_steps: int) -> list[int]:
            t = list(original(num_timesteps, num_steps))
            t[len(t) // 2] += 1  # one kept timestep moves by one
            return t

        return [mock.patch.object(diffit.ddpm, "space_timesteps", off_by_one)]
    elif variant == "resize":
        settings["resize"] = "clean"
    elif variant == "pr_k":
        import diffit_eval.metrics.evaluate

        pr = functools.partial(diffit_eval.metrics.prc.precision_recall, k=4)
        return [
            mock.patch.object(diffit_eval.metrics.prc, "precision_recall", pr),
            mock.patch.object(diffit_eval.metrics.evaluate, "precision_recall", pr),
        ]
    return []


SAMPLER_CHANGES = ("rho", "sigma_max", "guidance", "timestep")


def run_variant(variant: str, overrides: dict) -> dict:
    """The stage values of one golden run against the recorded golden (this process).

    Spread variants ("none") run every stage. A sensitivity variant runs only the stages its change
    reaches first, since that is where the suite catches it: sampler changes stages 0-1 (sampler output, guidance gain, images),
    the resize mode stage 2 (features), P/R's k stage 3 (metrics from the recorded images).
    """
    from diffit_eval.report import golden, runners, suites

    suite = suites.get_suite("golden-cpu")
    settings = json.loads(json.dumps(suite.settings))
    settings.update(overrides)
    expected = {e.metric: e.value for e in suite.expected.values()}
    images, sketches = golden.load_arrays(golden.arrays_file(settings, suite.suites_file))
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="golden-spread-") as wd:
        for p in _patches(variant, settings):
            stack.enter_context(p)
        if variant == "none":
            values = runners.run_golden_cpu(wd, settings, suite.suites_file)
        elif variant in SAMPLER_CHANGES:
            drawn = {
                s.name: golden.sample_set(s, Path(wd) / s.name, int(settings["batch_size"]))
                for s in golden.golden_sets(settings)
            }
            values = {f"images.{n}": float(np.count_nonzero(a != images[n])) for n, a in drawn.items()}
            for st in golden.golden_sets(settings):
                if st.ref:
                    ref = sketches[st.name][golden.SAMPLER_KEY]
                    state, gains = golden.sampler_state(st)
                    values[f"sampler.{st.name}"] = float(np.abs(state - ref).max() / np.abs(ref).max())
                    if gains is not None:
                        values[f"guidance.{st.name}"] = float(np.abs(gains - sketches[st.name][golden.GAIN_KEY]).max())
        else:
            from diffit_eval.features.registry import load_feature_network
            from diffit_eval.testing import make_standin_weights

            weights = make_standin_weights(Path(wd) / "w.pth", seed=int(settings["standin_seed"]))
            net = load_feature_network(weights, device="cpu", resize=settings["resize"], allow_download=False)
            feats = {n: golden.extract(net, a, int(settings["feature_batch"])) for n, a in images.items()}
            measured = {"images": images, "sketch": {n: golden.sketch(f) for n, f in feats.items()}}
            values = {
                k: v for k, v in golden.stage_values(measured, images, sketches).items() if k.startswith("features.")
            }
            for s in golden.golden_sets(settings):
                if s.ref:
                    values.update(
                        {
                            f"metrics.{s.name}.{k}": v
                            for k, v in golden.metrics_from_features(feats[s.name], feats[s.ref]).items()
                        }
                    )
    return {k: abs(float(v) - expected.get(k, 0.0)) for k, v in values.items() if isinstance(v, (int, float))}


def _subprocess(variant: str, env: dict, overrides: dict) -> dict | None:
    cmd = [sys.executable, __file__, "--variant", variant, "--overrides", json.dumps(overrides)]
    r = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        print(f"  {variant}: failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("spread", "sensitivity"))
    ap.add_argument("--variant")
    ap.add_argument("--overrides", default="{}")
    ap.add_argument("--json", type=Path, help="write the table here as JSON")
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, json.loads(args.overrides))))
        return
    spread, sens = {}, {}
    if args.only != "sensitivity":
        for name, (env, overrides) in SPREAD.items():
            if not cpu_has(env.get("ATEN_CPU_CAPABILITY", "")):
                print(f"  {name}: skipped, this CPU cannot run {env['ATEN_CPU_CAPABILITY']}", file=sys.stderr)
                continue
            print(f"spread {name} ...", file=sys.stderr, flush=True)
            spread[name] = _subprocess("none", env, overrides)
    if args.only != "spread":
        for name in SENSITIVITY:
            print(f"sensitivity {name} ...", file=sys.stderr, flush=True)
            sens[name] = _subprocess(name, {}, {})
    from diffit_eval.report import suites

    suite = suites.get_suite("golden-cpu")
    rows = []
    for key, e in suite.expected.items():
        worst = max((v.get(key, 0.0) for v in spread.values() if v), default=float("nan"))
        moved = {n: v.get(key, 0.0) for n, v in sens.items() if v}
        rows.append((key, worst, e.bound, moved))
    print(f"{'value':24s} {'spread':>10s} {'bound':>10s}  " + " ".join(f"{n:>10s}" for n in SENSITIVITY))
    for key, worst, bound, moved in rows:
        print(
            f"{key:24s} {worst:10.3g} {bound:10.3g}  "
            + " ".join(f"{moved.get(n, float('nan')):10.3g}" for n in SENSITIVITY)
        )
    caught = {n: any(v.get(k, 0) > suite.expected[k].bound for k in suite.expected) for n, v in sens.items() if v}
    passed = {n: all(v.get(k, 0) <= suite.expected[k].bound for k in suite.expected) for n, v in spread.items() if v}
    print("spread within bounds: " + ", ".join(f"{n}={'yes' if ok else 'NO'}" for n, ok in passed.items()))
    print("changes caught:       " + ", ".join(f"{n}={'yes' if ok else 'NO'}" for n, ok in caught.items()))
    if args.json:
        args.json.write_text(
            json.dumps({"spread": spread, "sensitivity": sens, "passed": passed, "caught": caught}, indent=1)
        )


if __name__ == "__main__":
    main()
