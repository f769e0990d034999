"""Features and statistics: the ADM protocol's InceptionV3 (:mod:`diffit_eval.features.network`),
feature sets extracted from a source (:mod:`diffit_eval.features.extract`) and their mean and
covariance, accumulated exactly (:mod:`diffit_eval.features.stats`)."""
