"""Metrics, one module each (as torch-fidelity): :mod:`diffit_eval.metrics.fid` (FID and sFID),
:mod:`diffit_eval.metrics.inception_score`, :mod:`diffit_eval.metrics.prc` (precision/recall), and
:mod:`diffit_eval.metrics.evaluate`, which computes them from a sample source and a reference."""
