"""Plot tables in long format: one `experiment` column, so dvc.yaml never names an experiment."""
import csv

from attnrobust.metrics.aggregate import write_curve, write_training_curves
from attnrobust.report.inputs import read_curve


def test_curve_tables_are_long_and_read_back_per_experiment(tmp_path):
    summaries = {"a": {"curves": {"eps": [0, 8], "eps_acc": [0.9, 0.1]}},
                 "b": {"curves": {"eps": [0, 4], "eps_acc": [0.8, 0.5]}},
                 "v": {"curves": {"eps": [0, 8], "eps_gap": [0.7, 0.2]}}}  # video: another table
    write_curve(tmp_path / "c.csv", summaries, "eps", "eps_acc")
    rows = list(csv.reader(open(tmp_path / "c.csv")))
    assert rows[0] == ["experiment", "eps", "acc"] and {r[0] for r in rows[1:]} == {"a", "b"}
    curve = read_curve(tmp_path / "c.csv")
    assert curve.x_name == "eps" and curve.x == [0, 4, 8]
    assert curve.series["a"][0] == 0.9 and curve.series["a"][2] == 0.1 and curve.series["a"][1] != curve.series["a"][1]


def test_training_curves_gather_every_experiments_dvclive_files(tmp_path):
    for exp, losses in (("a", [2.0, 1.0]), ("b", [3.0])):
        folder = tmp_path / "live" / exp / "plots" / "metrics" / "train"
        folder.mkdir(parents=True)
        (folder / "loss.tsv").write_text("step\tloss\n" + "".join(f"{i + 1}\t{v}\n" for i, v in enumerate(losses)))
    written = write_training_curves(tmp_path, tmp_path / "live", ["a", "b", "missing"])
    assert [p.name for p in written] == ["training_loss.csv"]  # no clean-accuracy files: no table
    assert list(csv.reader(open(written[0]))) == [["experiment", "step", "loss"], ["a", "1", "2.0"], ["a", "2", "1.0"],
                                                 ["b", "1", "3.0"]]
