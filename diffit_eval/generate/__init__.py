"""Generation: the sampling plan, the run folder and its shards, manifest and lock, and the runner
that fills it (:mod:`diffit_eval.generate.sample`, :mod:`diffit_eval.generate.shards`)."""
