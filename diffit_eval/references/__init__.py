"""Reference batches: the registry of published ADM batches and their cache
(:mod:`diffit_eval.references.registry`), inspection (:mod:`diffit_eval.references.inspect`), building from a
dataset (:mod:`diffit_eval.references.build`), and loading one for the metrics
(:mod:`diffit_eval.references.store`)."""
