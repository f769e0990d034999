"""Periodic quality during training: FID of samples from the EMA network, features on the fly.

The samples are made exactly as `diffit-eval sample` makes them (the preset's sampler and steps,
seeds 0 .. N-1, the release's truncating uint8 rule; :func:`diffit_eval.generate.sample.sample_batch`) and
scored by the metrics library against the reference given with --ref, so a number logged during
training is the number `sample` + `metrics` would give for that snapshot with the same seeds.
"""

from __future__ import annotations

import torch

from diffit_eval.errors import UserError

SAMPLE_BATCH = 64  # images per sampler call
FEATURE_BATCH = 64  # images per feature-network forward


class FIDProbe:
    """Loads the feature network and the reference once (before training starts), then measures on request."""

    def __init__(self, preset: str, ref: str, num_samples: int, weights: str | None, device: str) -> None:
        from diffit_eval.features.registry import load_feature_network
        from diffit_eval.references.store import load_reference

        self.preset, self.num_samples, self.device = preset, num_samples, device
        self.net = load_feature_network(weights, device=device)
        self.ref = load_reference(ref, net=self.net, batch_size=FEATURE_BATCH, keep_rows=False, progress=False)
        if self.ref.resize != self.net.resize:
            raise UserError(
                f"--ref {ref} was built with the {self.ref.resize} resize, the features use {self.net.resize}"
            )
        reason = self.ref.unsupported("fid")
        if reason:
            raise UserError(f"--ref {ref} cannot give an FID: {reason}")
        built_with = (self.ref.meta.get("feature_network") or {}).get("sha256")
        if built_with and built_with != self.net.weights_sha256:
            raise UserError(
                f"--ref {ref} was built with another feature network (sha256 {built_with[:12]}) than "
                f"{self.net.weights_path.name}; rebuild it or pass the same --inception-weights"
            )

    def describe(self) -> dict:
        return {
            "reference": self.ref.describe(),
            "feature_network": self.net.describe(),
            "num_samples": self.num_samples,
        }

    @torch.no_grad()
    def measure(self, ema: torch.nn.Module) -> float:
        """FID of `num_samples` EMA samples (seeds 0 .. N-1) against the reference."""
        from diffit_eval.features.extract import FeatureSet, extract_batch
        from diffit_eval.generate.sample import sample_batch
        from diffit_eval.metrics.evaluate import evaluate

        was_training = ema.training
        ema.eval()
        fs = FeatureSet()
        for start in range(0, self.num_samples, SAMPLE_BATCH):
            seeds = list(range(start, min(start + SAMPLE_BATCH, self.num_samples)))
            images, _ = sample_batch(ema, self.preset, seeds, device=self.device)
            for i in range(0, len(images), FEATURE_BATCH):
                extract_batch(self.net, images[i : i + FEATURE_BATCH], fs, keep_rows=False)
        ema.train(was_training)
        return float(evaluate(fs, self.ref, ["fid"], progress=False).values["fid"])
