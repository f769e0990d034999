"""Reference batches: the registry of published ADM batches, their cache, inspection and building
from a dataset (:mod:`diffit_eval.references.registry`), and loading one for the metrics
(:mod:`diffit_eval.references.store`)."""
