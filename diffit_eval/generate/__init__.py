"""Generation: the sampling plan, a sample run folder's shards and manifest, and the execution
that fills it (:mod:`diffit_eval.generate.plan`, :mod:`diffit_eval.generate.sample`,
:mod:`diffit_eval.generate.shards`, :mod:`diffit_eval.generate.execute`); what every run folder
shares (manifest, lock, cleanup) is :mod:`diffit_eval.run_folder`."""
