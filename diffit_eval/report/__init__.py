"""Reports: the Table S.1 comparison (:mod:`diffit_eval.report.table`), the regression suites
(:mod:`~diffit_eval.report.suites` the file, :mod:`~diffit_eval.report.runners` running one,
:mod:`~diffit_eval.report.regress` comparing) and the golden CPU suite (:mod:`diffit_eval.report.golden`)."""
