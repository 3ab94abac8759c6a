"""The report stage on small fixture results, examples.npz from evaluate, and the claims' `unreliable` flag."""
import json
import re
import sys

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import ROOT
from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.examples import adversarial_examples
from attnrobust.attacks.race import attention_examples
from attnrobust.attacks.suite import AttackConfig
from attnrobust.checkpoint import save_checkpoint
from attnrobust.io import save_npz, write_json
from attnrobust.metrics.aggregate import headline_metrics, write_curves, write_race
from attnrobust.metrics.claims import UNRELIABLE_TEXT, evaluate_claims
from attnrobust.models import build_model
from attnrobust.report.figures import amplified

sys.path.insert(0, str(ROOT / "stages"))
import report as report_stage  # noqa: E402

runner = CliRunner()
KW = {"num_classes": 5, "mean": [0.5] * 3, "std": [0.25] * 3}
CFG = AttackConfig(eps=8, steps=2, n_samples=0, batch_size=16, eps_sweep=[4], steps_sweep=[1], race_steps=[2],
                   race_glances=[1, 2], attention_examples=3, device="cpu")


def check(passed: bool) -> dict:
    return {"passed": passed, "rule": "a rule", "value": [0.5, 0.25]}


def _image_summary(acc: float, unreliable: bool = False, glances: list[int] | None = None) -> dict:
    s = {"n": 20, "eps": 8, "steps": 10, "restarts": 1, "suite": "fast", "clean_acc": acc, "fgsm_acc": acc / 2,
         "pgd_acc": acc / 3, "pgd_targeted_acc": acc / 2, "targeted_success": 0.1, "robust_acc": acc / 4,
         "curves": {"eps": [0, 4, 8, 255], "eps_acc": [acc, acc / 2, acc / 3, 0.0], "steps": [5, 10],
                    "steps_acc": [acc / 3, acc / 3]},
         "sanity": {"eps_monotone": check(True), "converged": check(not unreliable)}, "unreliable": unreliable}
    g = glances or [0]
    s["race"] = {"n": 20, "glances": g, "steps": [10, 50], "trained_glances": g[-1],
                 "acc": [[acc / 2, acc / 3]] * len(g), "worst_acc": [[acc / 3, acc / 4]] * len(g)}
    return s


def _video_summary() -> dict:
    return {"n": 12, "eps": 8, "steps": 10, "restarts": 1, "clean_gap": 0.9, "fgsm_gap": 0.5, "pgd_gap": 0.4,
            "robust_gap": 0.35, "curves": {"eps": [0, 8, 255], "eps_gap": [0.9, 0.4, 0.2], "steps": [5, 10],
                                           "steps_gap": [0.4, 0.4]},
            "sanity": {"eps_monotone": check(True)}, "unreliable": False}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A repository-shaped folder: params.yaml, metrics/ (written by the real metrics code) and
    results/attack/<exp>/s0/ with summaries, and for S3TA attention.npz and examples.npz from the real producers."""
    root = tmp_path_factory.mktemp("ws")
    experiments = {"gtsrb_base": {"dataset": "gtsrb", "method": "pgd_at", "model": "cnn"},
                   "gtsrb_s3ta": {"dataset": "gtsrb", "method": "pgd_at", "model": "s3ta"},
                   "video_plain": {"dataset": "video", "method": "standard", "model": "video_transformer"}}
    claims = {"s3ta": [{"s3ta": "gtsrb_s3ta", "baseline": "gtsrb_base"}]}
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "synthetic"}, "experiments": experiments,
                                                      "train": {"epochs": 2}, "claims": claims}))
    summaries = {"gtsrb_base": _image_summary(0.6), "gtsrb_s3ta": _image_summary(0.5, True, [1, 2]),
                 "video_plain": _video_summary()}
    metrics = root / "metrics"
    write_json(metrics / "robustness.json", headline_metrics(summaries))
    write_json(metrics / "claims.json", evaluate_claims(summaries, claims))
    write_curves(metrics / "plots", summaries)
    write_race(metrics / "plots" / "race.csv", summaries)
    (metrics / "plots" / "roc.csv").write_text("curve,fpr,tpr\ndet/pgd@8,0,0\ndet/pgd@8,0.1,0.6\ndet/pgd@8,1,1\n"
                                               "det/noise@0.1,0,0\ndet/noise@0.1,1,1\n")
    write_json(root / "results" / "detect" / "det" / "s0" / "summary.json", {
        "eps": 8, "n": 20, "clean": {"acc": 0.9, "accepted_acc": 0.92, "student_agreement": 0.8},
        "attacks": {"pgd": {"8": {"auroc": 0.875, "tpr_at_5fpr": 0.5, "success": 0.1}}},
        "adaptive": {"auroc": 0.625, "tpr_at_5fpr": 0.2, "success": 0.4},
        "corruptions": {"noise": {"0.1": {"auroc": 0.5}}}, "sanity": {"nonzero_gradients": check(False)},
        "unreliable": True})
    torch.manual_seed(0)
    model = build_model("s3ta", **KW, width=4, key_dim=4, value_dim=4, hidden=8, glances=2).eval()
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6) % 5
    for exp, s in summaries.items():
        write_json(root / "results" / "attack" / exp / "s0" / "summary.json", s)  # train.seeds absent: [0]
    folder = root / "results" / "attack" / "gtsrb_s3ta" / "s0"
    save_npz(folder / "examples.npz", **adversarial_examples(model, x, y, CFG, num_classes=5, device="cpu",
                                                             classes=list("abcde")))
    save_npz(folder / "attention.npz", **attention_examples(model, x[:3], y[:3], (y[:3] + 1) % 5, CFG, device="cpu"))
    return root


def _run(root, out, **paths):
    args = {"metrics": root / "metrics" / "robustness.json", "claims": root / "metrics" / "claims.json",
            "plots": root / "metrics" / "plots", "results": root / "results" / "attack", "out": out,
            "detect": root / "results" / "detect",
            "params": root / "params.yaml", **paths}
    result = runner.invoke(report_stage.app, [a for k, v in args.items() for a in (f"--{k}", str(v))])
    assert result.exit_code == 0, (result.output, result.exception)
    return (out / "report.md").read_text()


def test_report_has_the_claims_table_and_every_figure_it_references(workspace, tmp_path):
    text = _run(workspace, tmp_path / "reports")
    claims = json.loads((workspace / "metrics" / "claims.json").read_text())
    assert "| paper | claim | paper's number | ours | direction | test | verdict | unreliable |" in text
    for c in claims.values():
        row = next(line for line in text.splitlines() if line.startswith("| Zoran") and c["claim"] in line)
        assert row.rstrip(" |").endswith("UNRELIABLE")  # gtsrb_s3ta failed a check, so every S3TA claim is flagged
        assert UNRELIABLE_TEXT not in row  # shown once, as the column
    assert "**gtsrb_s3ta**: `converged` failed" in text  # the sanity failure, listed plainly
    assert "gtsrb_base | 0.600 |" in text and "### video" in text  # headline tables per dataset
    referenced = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", text)
    written = sorted(p.relative_to(tmp_path / "reports").as_posix() for p in (tmp_path / "reports").rglob("*.png"))
    assert sorted(referenced) == written
    assert {"figures/curves_gtsrb.png", "figures/curves_video.png", "figures/race_gtsrb_s3ta.png",
            "figures/glances_gtsrb_s3ta.png", "figures/attention_gtsrb_s3ta.png", "figures/gallery_gtsrb_s3ta.png",
            "figures/roc_det.png", "figures/gap_video.png"} <= set(written)
    assert "| det | 0.900 | 0.920 | 0.875 | 0.500 | 0.100 |" in text  # the detector's headline row
    assert "**detector det**: `nonzero_gradients` failed" in text
    for name in written:
        assert (tmp_path / "reports" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"Software" not in (tmp_path / "reports" / written[0]).read_bytes()


def test_a_second_run_is_byte_identical_and_replaces_the_folder(workspace, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _run(workspace, first)
    (second / "figures").mkdir(parents=True)
    (second / "figures" / "stale.png").write_bytes(b"old")  # a figure of a removed experiment must go
    _run(workspace, second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for f in files:
        assert (first / f).read_bytes() == (second / f).read_bytes(), f


def test_missing_inputs_give_sections_that_say_so(workspace, tmp_path):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["experiments"]["gtsrb_gone"] = {"dataset": "gtsrb", "method": "standard", "model": "cnn"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    empty = tmp_path / "empty"
    empty.mkdir()
    text = _run(workspace, tmp_path / "reports", metrics=empty / "robustness.json", claims=empty / "claims.json",
                plots=empty, results=empty, params=tmp_path / "params.yaml", detect=empty / "detect")
    for needle in ("the claims table (`", "headline metrics (`", "no plot table in `metrics/plots/`",
                   "no S3TA experiment", "`metrics/plots/roc.csv` not found", "detector results (`",
                   "no `results/attack/<exp>/examples.npz`"):
        assert needle in text, needle
    assert "## Inputs not found" in text and "gtsrb_gone/s0/summary.json" in text
    assert not list((tmp_path / "reports" / "figures").iterdir())


def test_evaluate_writes_examples_npz(prepared_dir, tmp_path):
    torch.manual_seed(0)
    kwargs = {"num_classes": 3, "mean": [0.3] * 3, "std": [0.3] * 3, "width": 4}
    save_checkpoint(tmp_path / "m" / "model.pt", build_model("cnn", **kwargs), {"name": "cnn", "kwargs": kwargs},
                    {"experiment": "tiny", "dataset": "gtsrb", "task": "image"})
    cfg = AttackConfig(eps=8, steps=2, n_samples=8, batch_size=16, eps_sweep=[4], steps_sweep=[1], race_steps=[],
                       attention_examples=4, device="cpu")
    evaluate_checkpoint("tiny", tmp_path / "m", prepared_dir, tmp_path / "out", cfg)
    with np.load(tmp_path / "out" / "examples.npz", allow_pickle=False) as z:
        ex = {k: z[k] for k in z.files}
    assert ex["x_clean"].shape == (4, 3, 16, 16) and list(ex["classes"]) == ["a", "b", "c"]
    assert "attention_clean" not in ex  # a plain CNN has no attention maps
    for kind in ("adv", "targeted"):
        assert np.abs(ex[f"x_{kind}"] - ex["x_clean"]).max() <= 8 / 255 + 1e-6
        assert 0 <= ex[f"x_{kind}"].min() and ex[f"x_{kind}"].max() <= 1
    assert (ex["target"] != ex["label"]).all()
    assert (ex["x_target_example"][ex["has_target_example"]].any(axis=(1, 2, 3))).all()
    predicted = build_model("cnn", **kwargs)
    predicted.load_state_dict(torch.load(tmp_path / "m" / "model.pt", weights_only=True)["state_dict"])
    with torch.no_grad():  # the stored predictions are the model's on the stored inputs
        assert np.array_equal(predicted.eval()(torch.from_numpy(ex["x_adv"])).argmax(1).numpy(), ex["pred_adv"])


def test_examples_of_s3ta_carry_its_attention_on_every_input():
    torch.manual_seed(0)
    model = build_model("s3ta", **KW, width=4, key_dim=4, value_dim=4, hidden=8, glances=2).eval()
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6) % 5
    ex = adversarial_examples(model, x, y, CFG, num_classes=5, device="cpu")
    for kind in ("clean", "adv", "targeted"):
        maps = ex[f"attention_{kind}"]  # glances and heads averaged: (k, h, w), each scaled to max 1
        assert maps.shape == (3, 4, 4) and maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1)
    assert np.array_equal(ex["x_clean"], x[ex["index"]].numpy())


def test_examples_of_a_mask_model_keep_its_mask_and_show_it_as_attention(prepared_dir):
    from attnrobust.tasks import IMAGE_FG_MASK

    torch.manual_seed(0)
    model = build_model("masked_cnn", num_classes=3, mean=[0.3] * 3, std=[0.3] * 3, width=4)
    test = IMAGE_FG_MASK.load(prepared_dir, "test")
    ex = adversarial_examples(model, test.x, test.y, CFG, num_classes=3, device="cpu",
                              perturb_mask=IMAGE_FG_MASK.perturb_mask(test.x))
    for kind in ("adv", "targeted"):
        assert np.array_equal(ex[f"x_{kind}"][:, 3], ex["x_clean"][:, 3])  # the attacker never changes the mask
        assert np.array_equal(ex[f"attention_{kind}"], ex["x_clean"][:, 3])  # a mask model's attention is its mask


def test_claims_carry_an_explicit_unreliable_flag():
    video = {"n": 100, "unreliable": False, "clean_gap": 0.9}
    summaries = {"a": {**video, "pgd_gap": 0.8}, "at": {**video, "pgd_gap": 0.6}, "plain": {**video, "pgd_gap": 0.3}}
    config = {"a_art": [{"a_art": "a", "pgd_at": "at", "plain": "plain"}]}
    (claim,) = evaluate_claims(summaries, config).values()
    assert claim["unreliable"] is False and UNRELIABLE_TEXT not in claim["ours"]
    summaries["plain"]["unreliable"] = True
    (claim,) = evaluate_claims(summaries, config).values()
    assert claim["unreliable"] is True and claim["ours"].count(UNRELIABLE_TEXT) == 1 and claim["direction"]


def test_perturbation_display_maps_minus_eps_to_black_and_plus_eps_to_white():
    x = np.full((3, 1, 3), 0.5, np.float32)
    x_adv = x + np.array([-8, 0, 8], np.float32)[None, None, :] / 255
    shown = amplified(x_adv, x, 8)  # (1, 3, 3) HWC
    assert np.allclose(shown[0, :, 0], [0.0, 0.5, 1.0], atol=1e-6)


def _beside_run(workspace, folder, profile="real-cpu"):
    """runs/<name>/ as bench/save_run.py keeps it: run.json and metrics/ of a run of another profile,
    here the workspace's own metrics with gtsrb_base's accuracy changed and one verdict flipped."""
    from metrics import verdict_row

    robustness = json.loads((workspace / "metrics" / "robustness.json").read_text())
    robustness["gtsrb_base"] = {**robustness["gtsrb_base"], "clean_acc": 0.8125, "robust_acc": 0.0625}
    claims = json.loads((workspace / "metrics" / "claims.json").read_text())
    first = next(iter(claims))
    verdicts = {k: verdict_row(c) for k, c in claims.items()}
    verdicts[first] = {**verdicts[first], "verdict": "holds" if claims[first]["verdict"] != "holds" else "contradicted"}
    write_json(folder / "metrics" / "robustness.json", robustness)
    write_json(folder / "metrics" / "verdicts.json", verdicts)
    write_json(folder / "metrics" / "claims.json", claims)
    write_json(folder / "metrics" / "detection.json", {})
    write_json(folder / "metrics" / "env.json", {"evaluation": {"git_commit": "abc123"}})
    write_json(folder / "run.json", {"profile": profile, "command": "make run-real", "about": "Real data.",
                                     "wall_min": 41.5})
    return first


def test_a_committed_run_of_another_profile_is_shown_beside_this_one(workspace, tmp_path):
    first = _beside_run(workspace, tmp_path / "runs" / "real-cpu")
    text = _run(workspace, tmp_path / "reports", beside=tmp_path / "runs" / "real-cpu")
    section = text.split("## Beside: profile `real-cpu`", 1)[1].split("\n## ", 1)[0]
    assert "commit abc123 with `make run-real` in 41.5 min" in section
    assert "| gtsrb_base | 0.600 | 0.812 |" in section  # clean: this run, then the other
    assert "| 0.150 | 0.062 |" in section  # robust (worst case): both
    row = next(line for line in section.splitlines() if line.startswith(f"| `{first}`"))
    assert row.rstrip(" |").endswith("yes")  # the flipped verdict is marked
    assert "video_plain" not in section  # image experiments only (the video has no accuracy)
    (tmp_path / "runs" / "real-cpu" / "metrics" / "verdicts.json").unlink()  # a half-kept run: said, not shown
    text = _run(workspace, tmp_path / "again", beside=tmp_path / "runs" / "real-cpu")
    assert "## Beside" not in text and "real-cpu/metrics/verdicts.json" in text.split("## Inputs not found")[1]


def test_the_beside_section_of_a_run_of_that_same_profile_points_at_the_committed_one(workspace, tmp_path):
    _beside_run(workspace, tmp_path / "runs" / "default", profile="default")
    text = _run(workspace, tmp_path / "reports", beside=tmp_path / "runs" / "default")
    assert "_This is a run of that profile;" in text and "| gtsrb_base | 0.600 | 0.812 |" not in text
