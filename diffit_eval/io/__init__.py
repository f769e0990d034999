"""Image and sample sources: every way images enter an evaluation (npz, image folder, run folder,
EDM dataset zip, built-in datasets) behind one :func:`diffit_eval.io.sources.open_samples`, read by
the one reader per input kind of :mod:`diffit_eval.io.readers`, and the ADM-style preprocessing of
a dataset into a reference batch (:mod:`diffit_eval.io.preprocess`)."""
