"""Per-class metrics of a class-conditional run (docs/METRICS.md, "Per-class metrics").

For each class c of the samples: the samples labelled c against the reference rows labelled c,
each number computed exactly as a plain `metrics` run computes it on that pair of subsets:

- FID: float64 running statistics of the class's sample rows (:class:`RunningStats`, the sums a
  plain run forms) against those of the class's reference rows, by the same `--fid-method`;
- precision/recall: :func:`~diffit_eval.metrics.prc.membership` on the two subsets, in ADM's
  float16 arithmetic and in float64 (`precision_exact`, `recall_exact`);
- density/coverage (when asked for): from the float64 pass, k = 5.

So a class's numbers equal those of `metrics` run on that class's samples with that class's
reference images as `--ref` (`tests/test_beyond.py` checks it through the CLI). They are
small-sample numbers: ~50 samples a class in 2048-d make FID rank-deficient and biased upward
(compare classes with each other, not with FID-50K).
"""

from __future__ import annotations

import numpy as np

from diffit_eval.features.stats import RunningStats
from diffit_eval.metrics.density_coverage import from_balls
from diffit_eval.metrics.fid import frechet_distance_by
from diffit_eval.metrics.prc import K, membership
from diffit_eval.protocol import DENSITY_K

__all__ = ["class_key", "per_class_metrics", "worst_classes"]


def class_key(label) -> str:
    """The JSON key of a class: its integer label as text."""
    return str(int(label))


def _stats(rows: np.ndarray) -> RunningStats:
    return RunningStats(rows.shape[1]).update(rows)


def per_class_metrics(
    rows: np.ndarray,
    labels: np.ndarray,
    ref_rows: np.ndarray,
    ref_labels: np.ndarray,
    *,
    density: bool = False,
    fid_method: str = "eigh",
    device=None,
) -> dict[str, dict]:
    """{class: {num_samples, num_reference, fid, precision, recall, precision_exact, recall_exact,
    [density, coverage], unavailable}} for every class present among the samples, in label order."""
    out: dict[str, dict] = {}
    for c in np.unique(labels):
        s, r = rows[labels == c], ref_rows[ref_labels == c]
        entry: dict = {"num_samples": len(s), "num_reference": len(r)}
        entry.update(dict.fromkeys(("fid", "precision", "recall", "precision_exact", "recall_exact"), None))
        if density:
            entry.update(density=None, coverage=None)
        why: dict[str, str] = {}
        if len(s) < 2 or len(r) < 2:
            why["fid"] = f"{len(s)} sample(s) and {len(r)} reference row(s) of this class; statistics need 2 of each"
        else:
            ss, rs = _stats(s), _stats(r)
            entry["fid"] = frechet_distance_by(fid_method)(ss.mean, ss.cov, rs.mean, rs.cov)
        if len(s) <= K or len(r) <= K:
            why["pr"] = f"precision/recall need more than {K} samples and reference rows, got {len(s)} and {len(r)}"
        else:
            adm = membership(r, s, device=device)
            entry["precision"], entry["recall"] = adm.precision, adm.recall
            ball_k = DENSITY_K if density and len(r) > DENSITY_K else None
            exact = membership(r, s, arith="exact", device=device, ball_k=ball_k)
            entry["precision_exact"], entry["recall_exact"] = exact.precision, exact.recall
            if exact.balls is not None:
                dc = from_balls(exact.balls)
                entry["density"], entry["coverage"] = dc.density, dc.coverage
        if density and entry["density"] is None:
            if len(r) <= DENSITY_K:
                why["density"] = f"density/coverage need more than {DENSITY_K} reference rows, got {len(r)}"
            elif len(s) <= K:
                # computed in P/R's pass, which this class's few samples skip
                from diffit_eval.metrics.density_coverage import density_coverage

                dc = density_coverage(r, s, device=device)
                entry["density"], entry["coverage"] = dc.density, dc.coverage
        entry["unavailable"] = why
        out[class_key(c)] = entry
    return out


def worst_classes(per_class: dict[str, dict], count: int = 5) -> list[tuple[str, dict]]:
    """The `count` classes of highest FID (those with a FID), worst first."""
    scored = [(c, e) for c, e in per_class.items() if e.get("fid") is not None]
    return sorted(scored, key=lambda ce: -ce[1]["fid"])[:count]
