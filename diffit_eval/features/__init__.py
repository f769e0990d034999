"""Features and statistics: the feature networks by `--network` name (:mod:`diffit_eval.features.registry`;
the ADM protocol's InceptionV3 is :mod:`diffit_eval.features.network`), feature sets extracted from
a source (:mod:`diffit_eval.features.extract`) and their mean and covariance, accumulated exactly
(:mod:`diffit_eval.features.stats`)."""
