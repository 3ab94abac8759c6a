"""The report stage's library: load results (:mod:`.inputs`), draw figures (:mod:`.figures`),
write markdown (:mod:`.markdown`), and put them together (:mod:`.build`)."""
from attnrobust.report.build import build_report
from attnrobust.report.inputs import ReportInputs, RunInfo, load_inputs

__all__ = ["ReportInputs", "RunInfo", "build_report", "load_inputs"]
