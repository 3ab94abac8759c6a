"""Bad input, tried on purpose through the stage CLIs: one clear message, and nothing computed is lost.

Each stage runs through its real entry point (``run_app``, as ``python stages/<stage>.py`` does)
in this process, on a small workspace built by the stages themselves. Two kinds of bad input:

* damaged data (a truncated PPM or JPEG, broken COCO segmentations, a clip that is not a video):
  the stage skips the item, names it, and writes complete output without it;
* input that makes the stage pointless (an empty class folder, a typo'd params key, a
  checkpoint from another experiment): exit status 2 with one ``error:`` line naming the file
  and the fix, and the previous output left byte for byte as it was.

Library-level variants live in test_gtsrb.py, test_coco.py, test_video_data.py and test_config.py.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from attnrobust.cli import run_app
from attnrobust.data.prepared import read_split

from conftest import ROOT
from tiny import write_params

sys.path.insert(0, str(ROOT / "stages"))
import attack as attack_stage  # noqa: E402
import features as features_stage  # noqa: E402
import fetch as fetch_stage  # noqa: E402
import masks as masks_stage  # noqa: E402
import train as train_stage  # noqa: E402

pytestmark = pytest.mark.slow
EXPERIMENTS = ["gtsrb_standard", "gtsrb_pgd_at"]


def stage(module, *args: str | Path) -> tuple[int, str]:
    """Run a stage script's app as its ``__main__`` does; returns (exit status, its stderr then its stdout)."""
    err, out, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = [f"{module.__name__}.py", *map(str, args)]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            run_app(module.app)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, err.getvalue() + out.getvalue()


def ok(module, *args) -> str:
    code, err = stage(module, *args)
    assert code == 0, err
    return err


def tree(top: Path) -> dict[str, bytes]:
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def one_error_line(err: str) -> str:
    """The user-facing failure: exactly one line, ``error: ...``, no traceback (and nothing on stdout)."""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A workspace the stages built on the tiny profile: raw and prepared data, two models, one attack."""
    w = tmp_path_factory.mktemp("bad_input")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(w)  # dvclive inspects the git repo around the cwd
        params = write_params(w, experiments=EXPERIMENTS, params={
            "train": {"device": "cpu", "threads": 1}, "attack": {"device": "cpu"},
            "data": {d: {"local_dir": f"raw/{d}"} for d in ("gtsrb", "coco")}})  # fetch@'s output below
        p = ["--params", params]
        for dataset in ("gtsrb", "coco", "video"):
            ok(fetch_stage, "--dataset", dataset, "--out", w / "raw" / dataset, *p)
        for dataset in ("gtsrb", "coco"):
            ok(masks_stage, "--dataset", dataset, "--raw", w / "raw" / dataset, "--out", w / "prep" / dataset, *p)
        ok(features_stage, "--raw", w / "raw" / "video", "--out", w / "prep" / "video", *p)
        for exp in EXPERIMENTS:
            ok(train_stage, "--experiment", exp, "--prepared", w / "prep" / "gtsrb", "--out", w / "models" / exp,
               "--live", w / "live" / exp, *p)
        ok(attack_stage, "--experiment", "gtsrb_pgd_at", "--model", w / "models" / "gtsrb_pgd_at", "--prepared",
           w / "prep" / "gtsrb", "--out", w / "results" / "gtsrb_pgd_at", *p)
        yield w


@pytest.fixture
def scratch(work, tmp_path, monkeypatch):
    """A private copy of the workspace that a test may damage."""
    monkeypatch.chdir(tmp_path)
    for name in ("raw", "prep", "models", "results", "profiles"):
        shutil.copytree(work / name, tmp_path / name)
    shutil.copy(work / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def _prepare(w: Path, dataset: str) -> tuple[int, str]:
    return stage(masks_stage, "--dataset", dataset, "--raw", w / "raw" / dataset, "--out", w / "prep" / dataset,
                 "--params", w / "params.yaml")


# --------------------------------------------------------------------------- damaged data: skipped and named


def test_truncated_ppm_is_skipped_by_name(scratch):
    before = json.loads((scratch / "prep" / "gtsrb" / "meta.json").read_text())
    victim = sorted((scratch / "raw" / "gtsrb" / "GTSRB" / "Training" / "00007").glob("*.ppm"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    code, err = _prepare(scratch, "gtsrb")
    name = victim.relative_to(scratch / "raw" / "gtsrb").as_posix()
    assert code == 0 and f"skipped 1 corrupt or unusable file(s): {name}: " in err
    meta = json.loads((scratch / "prep" / "gtsrb" / "meta.json").read_text())
    assert meta["splits"] == {"train": before["splits"]["train"] - 1, "test": before["splits"]["test"]}
    assert name not in read_split(scratch / "prep" / "gtsrb", "train").ids  # complete output, without it


def test_truncated_jpeg_is_skipped_by_name(scratch):
    before = json.loads((scratch / "prep" / "coco" / "meta.json").read_text())
    test_ids = read_split(scratch / "prep" / "coco", "test").ids
    victim = scratch / "raw" / "coco" / test_ids[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    code, err = _prepare(scratch, "coco")
    meta = json.loads((scratch / "prep" / "coco" / "meta.json").read_text())
    assert code == 0 and f"{test_ids[0]}: unreadable image" in "\n".join(meta["skipped"])
    assert f"skipped {len(before['skipped']) + 1} corrupt or unusable" in err and "meta.json" in err
    assert meta["splits"]["test"] == before["splits"]["test"] - 1
    assert test_ids[0] not in read_split(scratch / "prep" / "coco", "test").ids


def test_broken_segmentations_are_skipped_by_annotation(scratch):
    path = scratch / "raw" / "coco" / "annotations" / "instances_val2017.json"
    coco = json.loads(path.read_text())
    polygons = [a for a in coco["annotations"] if isinstance(a["segmentation"], list) and a["segmentation"]]
    broken = {polygons[0]["id"]: [], polygons[1]["id"]: [[1.0, 1.0, 5.0, 5.0]], polygons[2]["id"]: "garbage"}
    for ann in coco["annotations"]:
        ann["segmentation"] = broken.get(ann["id"], ann["segmentation"])
    path.write_text(json.dumps(coco))
    code, err = _prepare(scratch, "coco")
    skipped = json.loads((scratch / "prep" / "coco" / "meta.json").read_text())["skipped"]
    assert code == 0 and "corrupt or unusable" in err
    for ann_id in broken:
        assert any(s.startswith(f"annotation {ann_id} of image ") and " skipped: " in s for s in skipped), ann_id
    assert len(read_split(scratch / "prep" / "coco", "test").ids) > 0


def test_clip_that_is_not_a_video_is_skipped_by_name(scratch, caplog):
    victim = sorted((scratch / "raw" / "video").rglob("*.avi"))[0]
    victim.write_text("this is a text file, not a video\n")
    with caplog.at_level(logging.WARNING):
        code, err = stage(features_stage, "--raw", scratch / "raw" / "video", "--out", scratch / "prep" / "video",
                          "--params", scratch / "params.yaml")
    meta = json.loads((scratch / "prep" / "video" / "meta.json").read_text())
    assert code == 0 and len(meta["skipped"]) == 1 and "1 skipped" in err
    clip_id = meta["skipped"][0]
    assert victim.stem in clip_id and f"skipped 1 unreadable clip(s): {clip_id}" in caplog.text


# --------------------------------------------------------------------------- pointless runs: refused, nothing lost


def test_empty_class_folder_is_refused_and_prepared_data_survives(scratch):
    folder = scratch / "raw" / "gtsrb" / "GTSRB" / "Training" / "00012"
    for path in folder.glob("*.ppm"):
        path.unlink()
    before, siblings = tree(scratch / "prep" / "gtsrb"), sorted((scratch / "prep").iterdir())
    code, err = _prepare(scratch, "gtsrb")
    assert code == 2 and "00012" in one_error_line(err) and "no .ppm images" in err
    assert tree(scratch / "prep" / "gtsrb") == before and sorted((scratch / "prep").iterdir()) == siblings


def test_params_typo_is_refused_before_work_and_the_model_survives(scratch):
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    params["train"]["epochz"] = params["train"].pop("epochs")
    (scratch / "params.yaml").write_text(yaml.safe_dump(params))
    before = tree(scratch / "models")
    code, err = stage(train_stage, "--experiment", "gtsrb_standard", "--prepared", scratch / "prep" / "gtsrb",
                      "--out", scratch / "models" / "gtsrb_standard", "--live", scratch / "live",
                      "--params", scratch / "params.yaml")
    assert code == 2 and str(scratch / "params.yaml") in one_error_line(err)
    assert "unknown key(s) epochz" in err and "allowed: " in err
    assert tree(scratch / "models") == before and not (scratch / "live").exists()


def test_checkpoint_from_another_experiment_is_refused_and_results_survive(scratch):
    target = scratch / "models" / "gtsrb_pgd_at"
    shutil.rmtree(target)
    shutil.copytree(scratch / "models" / "gtsrb_standard", target)  # e.g. copied by hand into the wrong folder
    before = tree(scratch / "results")
    code, err = stage(attack_stage, "--experiment", "gtsrb_pgd_at", "--model", target, "--prepared",
                      scratch / "prep" / "gtsrb", "--out", scratch / "results" / "gtsrb_pgd_at",
                      "--params", scratch / "params.yaml")
    assert code == 2 and "belongs to experiment 'gtsrb_standard', not 'gtsrb_pgd_at'" in one_error_line(err)
    assert "dvc repro train@gtsrb_pgd_at" in err
    assert tree(scratch / "results") == before
