"""The golden CPU suite: seeded tiny runs checked stage by stage, so a failure says where drift began.

Four seeded sample sets are drawn through the library (`diffit_eval.generate.execute.generate`): `edm`
(cifar10-tiny, EDM Heun) scored against `edm_ref` (the same model on other seeds), and `ddpm`
(latent-tiny: respaced DDPM, classifier-free guidance, tiny VAE) against `ddpm_ref`. A set is never
scored against itself, which would give FID 0 and exercise nothing. Each stage is
compared with arrays and values recorded in `results/golden-cpu.npz` / `golden-cpu.json`:

0. `sampler.<set>`: the sampler's float output (before VAE and uint8) for the set's first 4 seeds,
   max |difference| relative to its scale: sub-pixel changes (schedule, rho) show here.
   `guidance.<set>`: for a guided set, the guidance gain realised at each sampler step (the
   ramp's s_t, measured through the guided model; :class:`GainProbe`), max |difference|. A random
   model's cond and uncond outputs are nearly equal, so a scale change shows here, not in pixels.
1. `images.<set>`: uint8 pixels that differ from the recorded images (sampler, model, VAE, pixels).
2. `features.<pool|spatial|logits>`: the feature network on the *recorded* images, through a fixed
   16-d random projection (a "sketch"), max |difference| relative to the sketch's scale. Feeding
   the recorded images isolates the feature stage from any drift in stage 1.
3. `metrics.<set>.<metric>`: FID, sFID, IS, P/R computed from the stage-2 features, plus `fid16`,
   FID on the sketches: 64 samples in 16 dimensions give full-rank covariances, so it is
   well-conditioned and a tight tolerance on it means something (2048-d FID on 64 samples
   amplifies last-bit differences through its rank-deficient covariances).
4. `e2e.<set>.<metric>`: `diffit-eval metrics RUN --ref REF_RUN` on this run's own images, the
   path a user takes.

Tolerances come from a measured spread (CPU kernel level, threads, batch sizes) and a measured
sensitivity (small changes to the sampler, guidance, schedule, resize and P/R); both are recorded
in `benchmarks/README.md` (`benchmarks/golden_spread.py`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffit_eval.errors import UserError
from diffit_eval.protocol import DEFAULT_RESIZE, METRIC_KEYS

SKETCH_DIM = 16
SKETCH_SEED = 1_000_003  # the projection's PCG64 seed; fixed, so sketches recorded once stay comparable
FEATURE_KINDS = ("pool", "spatial", "logits")
STAGE_METRICS = (*METRIC_KEYS, "fid16")


@dataclass(frozen=True)
class GoldenSet:
    """One seeded sample set of the golden suite."""

    name: str
    model: str
    seeds: str
    steps: int
    cfg_scale: float | None = None
    ref: str | None = None  # the set it is scored against; None: it is a reference itself


def golden_sets(settings: dict[str, Any]) -> list[GoldenSet]:
    sets = settings.get("sets") or {}
    out = [
        GoldenSet(
            name,
            str(s["model"]),
            str(s["seeds"]),
            int(s["steps"]),
            None if s.get("cfg_scale") is None else float(s["cfg_scale"]),
            s.get("ref"),
        )
        for name, s in sets.items()
    ]
    for s in out:
        if s.ref is not None and s.ref not in sets:
            raise UserError(f"golden set {s.name} is scored against {s.ref!r}, which is not a set")
    return out


def sketch_matrix(dim: int) -> np.ndarray:
    """[dim, SKETCH_DIM] float64 N(0, 1/dim) from PCG64: the same matrix on every machine."""
    from diffit import seeded

    return seeded.normal(seeded.rng(SKETCH_SEED, dim), (dim, SKETCH_DIM), dim**-0.5).double().numpy()


# ---------------------------------------------------------------------------------------------
# Measuring


def sample_set(s: GoldenSet, out: Path, batch_size: int) -> np.ndarray:
    """The set's images (uint8 NHWC), drawn afresh into `out` (a resumable run is never reused)."""
    from diffit_eval.generate.execute import generate
    from diffit_eval.generate.sample import SampleConfig
    from diffit_eval.io.sources import open_samples

    shutil.rmtree(out, ignore_errors=True)
    run = generate(
        SampleConfig(
            model=s.model,
            seeds=s.seeds,
            steps=s.steps,
            cfg_scale=s.cfg_scale,
            out=out,
            batch_size=batch_size,
            precision="fp32",
            features=False,
            verbose=False,
            device="cpu",
        )
    )
    return np.concatenate(list(open_samples(run).iter_batches(256)))


SAMPLER_KEY = "sampler_state"
GAIN_KEY = "guidance_gain"
SAMPLER_SEEDS = 4  # samples whose float sampler output (before the VAE and uint8) stage 0 records


class GainProbe:
    """The guided model as the sampler sees it, recording the guidance gain each guided call realises.

    The gain of one call is the least-squares s in guided = uncond + s (cond - uncond) over the
    guided channels, with cond and uncond from the same network on the same inputs. It equals the
    guidance scale at that step (the ramp's s_t) up to float rounding, whatever the network: a
    seeded random model's cond and uncond outputs differ by ~1e-3 relative, so a scale change
    (4.4 -> 4.41) moves its samples by less than the machine spread, but moves the gain by 0.01.
    """

    def __init__(self, model) -> None:
        self.model, self.guidance, self.gains = model, model.guidance, []

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def forward_with_cfg(self, x, t, y, cfg_scale=None):
        import torch

        guided = self.model.forward_with_cfg(x, t, y, cfg_scale)
        if cfg_scale is not None:
            half, k = len(x) // 2, self.guidance.channels
            both = self.model(torch.cat([x[:half], x[:half]]), t, y)[:, :k].double()
            cond, uncond = both[:half], both[half:]
            d = cond - uncond
            self.gains.append(float(((guided[:half, :k].double() - uncond) * d).sum() / (d * d).sum()))
        return guided


def sampler_state(s: GoldenSet) -> tuple[np.ndarray, np.ndarray | None]:
    """Stage 0: the sampler's final float state (latents or pixels) for the set's first seeds, and
    for a guided set the guidance gain realised at each step (:class:`GainProbe`).

    uint8 pixels hide changes below one level (a guidance scale 4.4 -> 4.41 on a random tiny
    model moves no pixel), so the sampler's own output is compared before any rounding.
    """
    import torch

    from diffit.presets import MODEL_PRESETS, create_model, resolve_preset
    from diffit.random import StackedRandomGenerator

    from diffit_eval.generate.sample import SAMPLERS, PreparedModel, state_shape
    from diffit_eval.generate.shards import parse_seeds
    from diffit_eval.standins import randomize_weights

    p = MODEL_PRESETS[resolve_preset(s.model)]
    net = randomize_weights(create_model(s.model), seed=0).eval().requires_grad_(False)
    model = PreparedModel(net)
    probe = GainProbe(model) if p.guidance is not None else None
    seeds = parse_seeds(s.seeds)[:SAMPLER_SEEDS]
    rnd = StackedRandomGenerator("cpu", seeds)
    labels = rnd.randint(p.num_classes, size=[len(seeds)]) if p.num_classes else None
    noise = rnd.randn([len(seeds), *state_shape(p)])
    cfg = s.cfg_scale if s.cfg_scale is not None else (p.guidance.scale if p.guidance is not None else None)
    with torch.no_grad():
        x = SAMPLERS[p.sampler](probe or model, noise, labels, s.steps, cfg, rnd.randn_like)
    gains = np.array(probe.gains, dtype=np.float64) if probe is not None and probe.gains else None
    return x.double().cpu().numpy(), gains


def extract(net, images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """pool / spatial / logits (float32 rows) of `images` through the feature network."""
    import torch

    out: dict[str, list[np.ndarray]] = {k: [] for k in FEATURE_KINDS}
    for i in range(0, len(images), batch_size):
        f = net(torch.from_numpy(images[i : i + batch_size]).permute(0, 3, 1, 2).contiguous())
        for k in FEATURE_KINDS:
            out[k].append(getattr(f, k).cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _fid(a: np.ndarray, b: np.ndarray) -> float:
    from diffit_eval.metrics import fid

    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(fid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))


def metrics_from_features(feats: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Stage 3: the ADM metrics of one set against the reference set, from features."""
    from diffit_eval.metrics import prc
    from diffit_eval.metrics.inception_score import inception_score

    precision, recall = prc.precision_recall(ref["pool"], feats["pool"])[:2]
    return {
        "fid": _fid(feats["pool"], ref["pool"]),
        "sfid": _fid(feats["spatial"], ref["spatial"]),
        "is": float(inception_score(feats["logits"])[0]),
        "precision": float(precision),
        "recall": float(recall),
        "fid16": _fid(
            feats["pool"] @ sketch_matrix(feats["pool"].shape[1]), ref["pool"] @ sketch_matrix(ref["pool"].shape[1])
        ),
    }


def sketch(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: feats[k].astype(np.float64) @ sketch_matrix(feats[k].shape[1]) for k in FEATURE_KINDS}


def e2e_metrics(run: Path, ref_run: Path, weights: Path, settings: dict[str, Any], out_json: Path) -> dict[str, float]:
    """Stage 4: `diffit-eval metrics RUN --ref REF_RUN --json OUT`, in this process."""
    from diffit_eval.cli import main

    args = [
        "metrics",
        str(run),
        "--ref",
        str(ref_run),
        "--json",
        str(out_json),
        "--metrics",
        "fid,sfid,is,pr",
        "--inception-weights",
        str(weights),
        "--batch-size",
        str(settings.get("feature_batch", 64)),
        "--resize",
        str(settings.get("resize", DEFAULT_RESIZE)),
        "--device",
        "cpu",
        "--quiet",
    ]
    try:
        main(args)
    except SystemExit as e:
        if e.code not in (0, None):
            raise UserError(f"`diffit-eval {' '.join(args)}` exited with {e.code}") from None
    obj = json.loads(out_json.read_text())
    return {m: float(obj[m]) for m in METRIC_KEYS}


def measure(
    settings: dict[str, Any],
    workdir: Path,
    golden_images: dict[str, np.ndarray] | None = None,
    inception_weights: Path | None = None,
) -> dict[str, Any]:
    """Run every stage; features (stage 2-3) come from `golden_images` when given, else this run's."""
    from diffit_eval.features.registry import load_feature_network
    from diffit_eval.testing import make_standin_weights

    workdir.mkdir(parents=True, exist_ok=True)
    sets = golden_sets(settings)
    weights = inception_weights or make_standin_weights(
        workdir / "standin-inception.pth", seed=int(settings.get("standin_seed", 0))
    )
    batch = int(settings.get("batch_size", 64))
    images = {s.name: sample_set(s, workdir / s.name, batch) for s in sets}
    probed = {s.name: sampler_state(s) for s in sets if s.ref is not None}
    states = {name: state for name, (state, _) in probed.items()}
    gains = {name: g for name, (_, g) in probed.items() if g is not None}
    net = load_feature_network(
        weights, device="cpu", resize=str(settings.get("resize", DEFAULT_RESIZE)), allow_download=False
    )
    fb = int(settings.get("feature_batch", 64))
    source = golden_images if golden_images is not None else images
    feats = {name: extract(net, source[name], fb) for name in images}
    scored = [s for s in sets if s.ref is not None]
    stage3 = {s.name: metrics_from_features(feats[s.name], feats[s.ref]) for s in scored}
    stage4 = {
        s.name: e2e_metrics(workdir / s.name, workdir / s.ref, weights, settings, workdir / f"{s.name}-metrics.json")
        for s in scored
    }
    return {
        "images": images,
        "states": states,
        "gains": gains,
        "sketch": {name: sketch(f) for name, f in feats.items()},
        "metrics": stage3,
        "e2e": stage4,
        "weights": weights,
    }


# ---------------------------------------------------------------------------------------------
# Recording and comparing


def arrays_file(settings: dict[str, Any], suites_file: Path) -> Path:
    return suites_file.parent / str(settings.get("arrays_file", "golden-cpu.npz"))


def save_arrays(path: Path, measured: dict[str, Any]) -> None:
    from diffit_eval.assets.cache import atomic_path

    arrays = {f"images/{n}": a for n, a in measured["images"].items()}
    arrays.update({f"sketch/{n}/{k}": v for n, sk in measured["sketch"].items() for k, v in sk.items()})
    # stage 0's float sampler output rides with the set's sketches (same per-set layout)
    arrays.update({f"sketch/{n}/{SAMPLER_KEY}": v for n, v in measured["states"].items()})
    arrays.update({f"sketch/{n}/{GAIN_KEY}": v for n, v in measured.get("gains", {}).items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    try:
        with np.load(path) as z:
            images = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("images/")}
            sketches: dict[str, dict[str, np.ndarray]] = {}
            for k in z.files:
                if k.startswith("sketch/"):
                    _, name, kind = k.split("/")
                    sketches.setdefault(name, {})[kind] = z[k]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"golden arrays {path} are unreadable ({e}); re-record them with --update-golden") from None
    return images, sketches


def stage_values(
    measured: dict[str, Any], golden_images: dict[str, np.ndarray], golden_sketch: dict[str, dict[str, np.ndarray]]
) -> dict[str, float]:
    """Stage 0-2 numbers: relative sampler-output difference and differing pixels per set, relative
    sketch difference per feature kind."""
    out: dict[str, float] = {}
    for name, state in measured.get("states", {}).items():
        ref = golden_sketch.get(name, {}).get(SAMPLER_KEY)
        out[f"sampler.{name}"] = (
            float("inf")
            if ref is None or ref.shape != state.shape
            else float(np.abs(state - ref).max() / np.abs(ref).max())
        )
    for name, gain in measured.get("gains", {}).items():
        ref = golden_sketch.get(name, {}).get(GAIN_KEY)
        out[f"guidance.{name}"] = (
            float("inf") if ref is None or ref.shape != gain.shape else float(np.abs(gain - ref).max())
        )
    for name, img in measured["images"].items():
        ref = golden_images.get(name)
        out[f"images.{name}"] = float(
            img.size if ref is None or ref.shape != img.shape else np.count_nonzero(img != ref)
        )
    for kind in FEATURE_KINDS:
        worst = 0.0
        for name, sk in measured["sketch"].items():
            ref = golden_sketch.get(name, {}).get(kind)
            if ref is None or ref.shape != sk[kind].shape:
                worst = float("inf")
                continue
            worst = max(worst, float(np.abs(sk[kind] - ref).max() / np.abs(ref).max()))
        out[f"features.{kind}"] = worst
    return out
