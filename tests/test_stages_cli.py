"""Each stage script, driven as a user drives it: options in, files out, clear errors on bad input."""
import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT

sys.path.insert(0, str(ROOT / "stages"))
import attack as attack_stage  # noqa: E402
import fetch as fetch_stage  # noqa: E402
import masks as masks_stage  # noqa: E402
import metrics as metrics_stage  # noqa: E402
import train as train_stage  # noqa: E402

runner = CliRunner()
BASE = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def params(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the repo around the cwd
    p = {k: v for k, v in BASE.items() if k != "profile"}  # no profiles/ here: the params as they are
    p["data"] = {**BASE["data"], "gtsrb": {"local_dir": str(tmp_path / "raw"), "train_per_class": 2,
                                           "test_per_class": 1, "min_size": 20, "max_size": 28}}
    p["masks"] = {**BASE["masks"], "gtsrb": {"image_size": 16, "shard_size": 64}}
    p["train"] = {**BASE["train"], "epochs": 1, "batch_size": 32, "device": "cpu", "seeds": [0, 1]}
    p["attack"] = {**BASE["attack"], "n_samples": 8, "steps": 2, "eps_sweep": [4], "steps_sweep": [1]}
    p["experiments"] = {"tiny": {"dataset": "gtsrb", "method": "standard", "model": "cnn", "model_args": {"width": 4}}}
    p["detectors"] = {}  # tests/test_iqa_kd.py runs the detector stages
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_stages_chain_fetch_masks_train_attack_metrics(params, tmp_path):
    t = tmp_path
    _ok(runner.invoke(fetch_stage.app, ["--dataset", "gtsrb", "--out", str(t / "raw"), "--params", str(params)]))
    assert (t / "raw" / "GT-final_test.csv").is_file()
    _ok(runner.invoke(masks_stage.app, ["--dataset", "gtsrb", "--raw", str(t / "raw"), "--out", str(t / "prep"),
                                        "--params", str(params)]))
    meta = json.loads((t / "prep" / "meta.json").read_text())
    assert meta["splits"] == {"train": 86, "test": 43} and meta["image_size"] == 16
    (t / "prepared").mkdir()
    (t / "prep").rename(t / "prepared" / "gtsrb")  # what dvc.yaml passes: --prepared-root, the dataset's folder below
    for seed in (0, 1):
        _ok(runner.invoke(train_stage.app, ["--experiment", "tiny", "--seed", str(seed), "--prepared-root",
                                            str(t / "prepared"), "--out", str(t / "models" / "tiny" / f"s{seed}"),
                                            "--live", str(t / "live" / "tiny" / f"s{seed}"), "--resume",
                                            str(t / "resume.pt"), "--params", str(params)]))
        assert (t / "models" / "tiny" / f"s{seed}" / "model.pt").is_file() and not (t / "resume.pt").exists()
        _ok(runner.invoke(attack_stage.app, ["--experiment", "tiny", "--model", str(t / "models" / "tiny" / f"s{seed}"),
                                             "--prepared-root", str(t / "prepared"),
                                             "--out", str(t / "results" / "tiny" / f"s{seed}"), "--params", str(params)]))
    summaries = [json.loads((t / "results" / "tiny" / f"s{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert [s["n"] for s in summaries] == [8, 8] and [s["train_seed"] for s in summaries] == [0, 1]
    assert summaries[0]["clean_acc"] != summaries[1]["clean_acc"] or summaries[0]["pgd_acc"] != summaries[1]["pgd_acc"] \
        or (t / "models" / "tiny" / "s0" / "model.pt").read_bytes() != (t / "models" / "tiny" / "s1" / "model.pt").read_bytes()
    _ok(runner.invoke(metrics_stage.app, ["--results", str(t / "results"), "--out", str(t / "m.json"), "--claims",
                                          str(t / "c.json"), "--plots", str(t / "plots"), "--live", str(t / "live"),
                                          "--params", str(params)]))
    metrics = json.loads((t / "m.json").read_text())
    assert set(metrics) == {"tiny"} and metrics["tiny"]["seeds"] == 2
    assert metrics["tiny"]["clean_acc"] == round((summaries[0]["clean_acc"] + summaries[1]["clean_acc"]) / 2, 4)
    assert "clean_acc_seed_sd" in metrics["tiny"]
    assert json.loads((t / "c.json").read_text()) == {}  # no configured claim has all its experiments here
    assert (t / "plots" / "robustness_vs_eps.csv").read_text().startswith("experiment,eps,acc\ntiny,0,")
    assert (t / "plots" / "training_loss.csv").read_text().startswith("experiment,step,loss\ntiny,")
    assert json.loads((t / "verdicts.json").read_text()) == {} and (t / "env.json").is_file()  # beside c.json
    result = runner.invoke(train_stage.app, ["--experiment", "tiny", "--seed", "7", "--prepared-root",
                                             str(t / "prepared"), "--out", str(t / "m7"), "--live", str(t / "l7"),
                                             "--params", str(params)])
    assert "seed 7 is not in train.seeds" in str(result.exception) and not (t / "m7").exists()
    # a checkpoint from another experiment is refused by name
    result = runner.invoke(attack_stage.app, ["--experiment", "other", "--model", str(t / "models" / "tiny" / "s0"),
                                              "--prepared", str(t / "prepared" / "gtsrb"), "--out", str(t / "r2"),
                                              "--params", str(params)])
    assert result.exit_code != 0 and "belongs to experiment 'tiny'" in str(result.exception)


def test_typo_in_params_fails_before_work_with_key_and_file(params, tmp_path):
    bad = yaml.safe_load(params.read_text())
    bad["attack"]["stepz"] = bad["attack"].pop("steps")
    params.write_text(yaml.safe_dump(bad))
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "attack.py"), "--experiment", "tiny", "--model",
                           str(tmp_path / "nope"), "--prepared", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                           "--params", str(params)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and str(params) in proc.stderr and "stepz" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_unknown_method_names_the_key(params):
    bad = yaml.safe_load(params.read_text())
    bad["experiments"]["tiny"]["method"] = "magic"
    params.write_text(yaml.safe_dump(bad))
    result = runner.invoke(train_stage.app, ["--experiment", "tiny", "--prepared", "x", "--out", "y", "--live", "z",
                                             "--params", str(params)])
    assert "experiments.tiny.method" in str(result.exception) and "magic" in str(result.exception)


def test_bad_data_source_is_refused(params, tmp_path):
    bad = yaml.safe_load(params.read_text())
    bad["data"]["source"] = "internet"
    params.write_text(yaml.safe_dump(bad))
    result = runner.invoke(fetch_stage.app, ["--dataset", "gtsrb", "--out", str(tmp_path / "raw"),
                                             "--params", str(params)])
    assert "data.source" in str(result.exception) and not (tmp_path / "raw").exists()


def test_fetch_makes_nothing_when_local_dir_names_another_copy(params, tmp_path):
    """With data.gtsrb.local_dir at an existing copy, fetch@gtsrb neither downloads nor generates (for
    either data.source): its output is a note, and masks@gtsrb refuses that folder with the fix."""
    values = yaml.safe_load(params.read_text())
    values["data"]["gtsrb"]["local_dir"] = str(tmp_path / "shared-copy")
    params.write_text(yaml.safe_dump(values))
    out = tmp_path / "raw"
    _ok(runner.invoke(fetch_stage.app, ["--dataset", "gtsrb", "--out", str(out), "--params", str(params)]))
    assert [p.name for p in out.iterdir()] == ["NOT_USED.txt"]
    assert "shared-copy" in (out / "NOT_USED.txt").read_text()
    result = runner.invoke(masks_stage.app, ["--dataset", "gtsrb", "--raw", str(out), "--out", str(tmp_path / "prep"),
                                             "--params", str(params)])
    assert "dvc repro fetch@gtsrb" in str(result.exception) and not (tmp_path / "prep").exists()
