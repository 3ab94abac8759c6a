"""iqa_kd (Feng & Cai): NSS features, detection metrics, distillation, the detector, and its two stages."""
import csv
import json
import math
import os
import sys

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from attnrobust.detect import nss
from attnrobust.detect.corruptions import corrupt, random_corruptions
from attnrobust.detect.detector import fit_logistic, training_labels
from attnrobust.errors import UserError
from attnrobust.metrics.detection import (auroc, detection_headline, read_detect_summaries, roc_curve,
                                          threshold_at_fpr, tpr_at_fpr, write_roc)
from conftest import ROOT

sys.path.insert(0, str(ROOT / "stages"))
import detect as detect_stage  # noqa: E402
import detector as detector_stage  # noqa: E402

runner = CliRunner()


# ---- NSS features ----------------------------------------------------------------------------

def _features(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return dict(zip(nss.FEATURE_NAMES, nss.brisque_features(x).T))


def test_constant_image_has_zero_mscn_and_degenerate_fits():
    x = torch.full((2, 3, 24, 24), 0.37)
    assert nss.mscn(nss.luminance(x)).abs().max() < 1e-9  # (I - mu) = 0 everywhere, borders included
    feats = _features(x)
    for name, value in feats.items():
        if name.endswith("shape"):  # moment ratio 0/0 -> 1: the grid's top, finite
            assert torch.allclose(value, torch.tensor(nss.SHAPE_GRID[1])), name
        else:  # variances and AGGD means of all-zero coefficients
            assert value.abs().max() < 1e-12, name


def test_white_noise_is_contrast_invariant_isotropic_and_uncorrelated():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 1, 96, 96, generator=g)
    high, shifted = _features(0.5 + 0.1 * noise), _features(0.4 + 0.1 * noise)
    low = _features(0.5 + 0.07 * noise)
    for name in nss.FEATURE_NAMES:  # mean-subtracted: brightness does not matter at all
        assert torch.allclose(high[name], shifted[name], rtol=1e-4, atol=1e-5), name
    for name in nss.FEATURE_NAMES:  # contrast-normalised: nearly the same at another contrast (up to C / sigma)
        assert torch.allclose(low[name], high[name], rtol=0.1, atol=0.02), name
    for s in (1, 2):  # no preferred direction
        for a, b in (("h", "v"), ("d1", "d2")):
            for p in ("shape", "mean", "left_var", "right_var"):
                first, second = high[f"s{s}_{a}_{p}"].mean(), high[f"s{s}_{b}_{p}"].mean()  # over 4 images
                assert torch.allclose(first, second, rtol=0.1, atol=0.03), (s, a, b, p)
    # independent pixels: MSCN near unit scale, neighbour products centred near 0 (the shared local mean
    # makes them slightly negative); blurring correlates neighbours and makes their products positive
    assert ((high["s1_mscn_var"] > 0.5) & (high["s1_mscn_var"] < 1.0)).all()
    assert (high["s1_h_mean"] < 0).all() and (high["s1_h_mean"] > -0.25).all()
    blurred = _features(corrupt(0.5 + 0.1 * noise.expand(-1, 3, -1, -1), "gaussian_blur", 1.0, g))
    assert (blurred["s1_h_mean"] > 0.1).all() and (blurred["s1_mscn_var"] < high["s1_mscn_var"]).all()


def test_fits_recover_known_distributions():
    g = torch.Generator().manual_seed(1)
    gauss = 0.7 * torch.randn(1, 200_000, generator=g)
    laplace = torch.distributions.Laplace(0.0, 1.0).sample((1, 200_000))
    shape, var = nss.ggd_fit(gauss)
    assert abs(shape.item() - 2.0) < 0.05 and abs(var.item() - 0.49) < 0.01
    assert abs(nss.ggd_fit(laplace)[0].item() - 1.0) < 0.05
    shape, mean, left, right = nss.aggd_fit(gauss)
    assert abs(shape.item() - 2.0) < 0.05 and abs(mean.item()) < 0.01 and abs(left.item() / right.item() - 1) < 0.02
    # an asymmetric Gaussian (AGGD, shape 2): half-normals of std 0.5 (left) and 2 (right), each side
    # weighted by its scale so the density is continuous at 0
    left_side = torch.rand(1, 200_000, generator=g) < 0.5 / (0.5 + 2.0)
    skewed = torch.where(left_side, -0.5 * gauss.abs() / 0.7, 2.0 * gauss.abs() / 0.7)
    shape, mean, left, right = nss.aggd_fit(skewed)
    assert abs(right.item() / left.item() - 16) < 0.5 and mean.item() > 0 and abs(shape.item() - 2.0) < 0.05


def test_shape_inversion_is_the_closed_form_inverse_and_differentiable():
    alphas = [0.3, 0.8, 1.0, 2.0, 5.0]
    rho = torch.tensor([nss.ggd_ratio(a) for a in alphas], requires_grad=True)
    shape = nss.shape_from_ratio(rho)
    assert torch.allclose(shape, torch.tensor(alphas), atol=1e-3)
    (grad,) = torch.autograd.grad(shape.sum(), rho)
    assert (grad < 0).all()  # r(alpha) decreases, so does its inverse


def _reference_brisque(gray: np.ndarray) -> np.ndarray:
    """An independent float64 numpy transcription of BRISQUE (brisque_feature.m: argmin lookup on the
    grid), with this project's documented conventions: reflect padding, in-image pairs, 2x2 box half scale."""
    grid = np.arange(0.2, 10.0005, 0.001)
    lg = np.vectorize(math.lgamma)
    r_gam = np.exp(lg(1 / grid) + lg(3 / grid) - 2 * lg(2 / grid))
    r = np.arange(7) - 3.0
    g = np.exp(-r ** 2 / (2 * (7 / 6) ** 2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def filt(a):
        p = np.pad(a, 3, mode="reflect")
        return sum(window[i, j] * p[i:i + a.shape[0], j:j + a.shape[1]] for i in range(7) for j in range(7))

    def aggd(v):
        left, right = np.sqrt(np.mean(v[v < 0] ** 2)), np.sqrt(np.mean(v[v > 0] ** 2))
        gh = left / right
        rhat = np.mean(np.abs(v)) ** 2 / np.mean(v ** 2)
        rhatnorm = rhat * (gh ** 3 + 1) * (gh + 1) / (gh ** 2 + 1) ** 2
        alpha = grid[np.argmin(np.abs(1 / r_gam - rhatnorm))]
        const = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
        return [alpha, (right - left) * math.gamma(2 / alpha) / math.gamma(1 / alpha) * const, left ** 2, right ** 2]

    feats = []
    for scale in range(2):
        if scale:
            h, w = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
            gray = gray[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        mu = filt(gray)
        m = (gray - mu) / (np.sqrt(np.abs(filt(gray * gray) - mu * mu)) + 1 / 255)
        v = m.ravel()
        feats += [grid[np.argmin(np.abs(np.mean(v ** 2) / np.mean(np.abs(v)) ** 2 - r_gam))], np.mean(v ** 2)]
        for pairs in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
            feats += aggd(pairs.ravel())
    return np.array(feats)


@pytest.mark.parametrize("size", [(32, 32), (29, 34)])
def test_features_match_a_numpy_reference_on_made_images(size):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size[0], 0:size[1]] / 8.0
    scene = 0.5 + 0.25 * np.sin(xx + 0.5 * yy) * np.cos(0.7 * yy) + 0.2 * (xx > 2)
    images = [np.clip(scene + s * rng.standard_normal(size), 0, 1) for s in (0.0, 0.01, 0.05)]
    x = torch.tensor(np.stack(images), dtype=torch.float32)[:, None].expand(-1, 3, -1, -1)
    ours = nss.brisque_features(x.contiguous()).double().numpy()
    ref = np.stack([_reference_brisque(nss.luminance(x[i:i + 1])[0, 0].double().numpy()) for i in range(len(x))])
    shapes = np.array([n.endswith("shape") for n in nss.FEATURE_NAMES])
    assert np.abs(ours[:, shapes] - ref[:, shapes]).max() < 2e-3  # interpolation vs argmin: within a grid step
    assert np.allclose(ours[:, ~shapes], ref[:, ~shapes], rtol=2e-3, atol=1e-5)


# ---- detection metrics -------------------------------------------------------------------------

def test_auroc_perfect_reversed_constant_and_ties():
    pos, neg = np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0])
    assert auroc(pos, neg) == 1.0 and auroc(neg, pos) == 0.0
    assert auroc(np.zeros(7), np.zeros(5)) == 0.5  # a constant score cannot rank
    rng = np.random.default_rng(0)
    p, n = rng.integers(0, 4, 40).astype(float), rng.integers(0, 4, 30).astype(float)  # many ties
    pairs = (p[:, None] > n[None, :]).mean() + 0.5 * (p[:, None] == n[None, :]).mean()  # Mann-Whitney
    assert auroc(p, n) == pytest.approx(pairs)
    fpr, tpr = roc_curve(p, n)
    assert np.trapezoid(tpr, fpr) == pytest.approx(pairs)  # ties: the diagonal segment is the half credit
    assert math.isnan(auroc(np.array([]), n))


def test_tpr_at_fpr_never_exceeds_the_false_positive_budget():
    neg = np.arange(100.0)
    t = threshold_at_fpr(neg, 0.05)
    assert (neg > t).sum() == 5
    assert tpr_at_fpr(np.array([93.5, 94.5, 200.0]), neg, 0.05) == pytest.approx(2 / 3)
    assert tpr_at_fpr(np.array([1000.0]), neg, 0.0) == 1.0 and tpr_at_fpr(neg, neg, 0.05) == pytest.approx(0.05)
    fpr, tpr = roc_curve(np.linspace(0, 1, 500), np.linspace(-0.5, 0.5, 500), max_points=41)
    assert len(fpr) <= 41 and (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()


# ---- corruptions, logistic fit, training labels ------------------------------------------------

def test_corruptions_keep_range_and_are_seeded():
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    spec = {"gaussian_noise": [0.1], "gaussian_blur": [1.0], "jpeg": [20]}
    a, conds = random_corruptions(x, spec, 2, torch.Generator().manual_seed(5))
    b, _ = random_corruptions(x, spec, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (12, 3, 16, 16) and len(conds) == 12
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a[:6], x)
    assert corrupt(x, "gaussian_blur", 1.0, torch.Generator()).std() < x.std()


def test_logistic_fit_separates_and_labels_follow_the_rule():
    g = torch.Generator().manual_seed(0)
    features = torch.cat([torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g) + torch.tensor([4, 0, 0])])
    labels = torch.cat([torch.zeros(50), torch.ones(50)])
    head = fit_logistic(features * torch.tensor([1.0, 1.0, 0.0]), labels, l2=1e-3)  # a constant column too
    scores = head(features * torch.tensor([1.0, 1.0, 0.0])).detach()
    assert auroc(scores[50:].numpy(), scores[:50].numpy()) > 0.99
    assert head.weight[0] > 1 and abs(float(head.weight[2])) < 1e-6
    y = torch.tensor([0, 1])
    right, wrong = torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    neg, pos = training_labels("misclassified", y, right, torch.cat([right, wrong]), y.repeat(2))
    assert neg.tolist() == [True, True] and pos.tolist() == [False, False, True, True]
    neg, pos = training_labels("all", y, wrong, right, y)
    assert neg.all() and pos.all()


# ---- the stages on a tiny dataset --------------------------------------------------------------

DETECTOR = {"teacher": "tiny", "dataset": "gtsrb", "seed": 0,
            "student": {"width": 4, "epochs": 12, "batch_size": 32, "lr": 0.02, "weight_decay": 0.0005,
                        "temperature": 2.0},
            "fit": {"holdout": 0.3, "copies": 2, "positives": "all", "features": "nss+kd", "l2": 0.01},
            "corruptions": {"gaussian_noise": [0.05, 0.15], "gaussian_blur": [1.0], "jpeg": [15]},
            "adaptive": {"weights": [1.0, 10.0], "steps": 5}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Prepared data (3 classes told by the colour of a central square, 16 px), a trained teacher,
    a params file with one detector, and the detector built by the stage."""
    from attnrobust.data.prepared import PreparedSplit, write_prepared
    from attnrobust.experiment import parse_experiment
    from attnrobust.training import TrainConfig, train_experiment

    root = tmp_path_factory.mktemp("iqa")
    rng = np.random.default_rng(0)

    def split(n):
        labels = np.arange(n) % 3
        images = rng.integers(0, 120, (n, 3, 16, 16), dtype=np.uint8)
        for c in range(3):  # a faint square, so that eps 8 can fool the teacher on some images
            images[labels == c, c, 4:12, 4:12] += 40
        return PreparedSplit(images, np.ones((n, 16, 16), np.uint8), labels, [f"i{i}" for i in range(n)])

    prepared = root / "prepared"
    prepared.mkdir()
    write_prepared(prepared, {"train": split(90), "test": split(30)}, dataset="gtsrb", classes=["a", "b", "c"],
                   shard_size=64)
    cwd = os.getcwd()
    os.chdir(root)  # dvclive inspects the repo around the cwd
    try:
        exp = parse_experiment("tiny", {"dataset": "gtsrb", "method": "standard", "model": "cnn",
                                        "model_args": {"width": 8}}, "test")
        train_experiment(exp, TrainConfig(epochs=4, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu",
                                          threads=1), prepared, root / "models" / "tiny" / "s0", root / "live")
    finally:
        os.chdir(cwd)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.pop("profile", None)  # no profiles/ folder here: params.yaml as it is
    params["train"] = {**params["train"], "device": "cpu", "threads": 1, "seeds": [0]}  # one teacher seed: s0/
    params["attack"] = {**params["attack"], "n_samples": 24, "steps": 3, "eps_sweep": [4], "device": "cpu"}
    params["detectors"] = {"tiny_iqa": DETECTOR}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    _ok(_build(root, "det"))
    return root


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _build(root, out, teacher="tiny"):
    return runner.invoke(detector_stage.app, ["--detector", "tiny_iqa", "--teacher", str(root / "models" / teacher),
                                              "--prepared", str(root / "prepared"), "--out", str(root / out),
                                              "--params", str(root / "params.yaml")])


def _detect(root, out, model="det"):
    return runner.invoke(detect_stage.app, ["--detector", "tiny_iqa", "--teacher", str(root / "models" / "tiny"),
                                            "--model", str(root / model), "--prepared", str(root / "prepared"),
                                            "--out", str(root / out), "--params", str(root / "params.yaml")])


def test_student_matches_the_teacher_on_clean_data(tiny):
    from attnrobust.checkpoint import load_model
    from attnrobust.data.prepared import load_prepared
    from attnrobust.detect.distill import agreement

    info = json.loads((tiny / "det" / "s0" / "detector.json").read_text())
    teacher, student = load_model(tiny / "models" / "tiny" / "s0"), load_model(tiny / "det" / "s0" / "student.pt")
    x, y, _ = load_prepared(tiny / "prepared", "test")
    assert agreement(teacher, student, x, "cpu") >= 0.9  # the stated bar: 90% top-1 agreement on unseen images
    assert info["student_agreement_heldout"] >= 0.9
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_detector_stage_fits_on_clean_vs_degraded_deterministically(tiny):
    info = json.loads((tiny / "det" / "s0" / "detector.json").read_text())
    assert info["n_negative"] == 27 and info["n_positive"] == 54  # 30% of 90 held out, 2 degraded copies each
    assert info["train_auroc"] > 0.9
    assert set(info["weights"]) == set(nss.FEATURE_NAMES) | {"kd_log_kl", "teacher_max_logp", "student_max_logp",
                                                             "student_logp_teacher_top1"}
    _ok(_build(tiny, "det_again"))
    for name in ("student.pt", "detector.pt", "detector.json"):
        assert (tiny / "det" / "s0" / name).read_bytes() == (tiny / "det_again" / "s0" / name).read_bytes(), name


def test_detect_stage_reports_every_condition_and_is_deterministic(tiny):
    _ok(_detect(tiny, "res"))
    s = json.loads((tiny / "res" / "s0" / "summary.json").read_text())
    assert s["n"] == 24 and s["eps"] == 8 and set(s["attacks"]) == {"fgsm", "pgd", "pgd_targeted", "pgd_full"}
    assert set(s["attacks"]["pgd_full"]) == {"8"}
    assert s["attacks"]["pgd"]["8"]["n_positive"] > 0 and s["attacks"]["pgd"]["8"]["auroc"] is not None
    assert set(s["attacks"]["pgd"]) == {"4", "8"} and set(s["corruptions"]["gaussian_noise"]) == {"0.05", "0.15"}
    for row in [*s["attacks"]["pgd"].values(), *s["corruptions"]["jpeg"].values(), s["adaptive"]]:
        assert row["auroc"] is None or 0 <= row["auroc"] <= 1
        assert 0 <= row["success"] <= 1 - row["teacher_acc"] + 1e-9  # success needs a misclassification
    assert s["clean"]["accepted"] >= 0.95 - 1e-9  # the threshold rejects at most 5% of clean inputs
    assert s["adaptive"]["success"] >= s["attacks"]["pgd"]["8"]["success"] - 0.1  # never much weaker
    assert set(s["sanity"]) == {"adaptive_no_weaker", "detector_gradients_nonzero", "deterministic"}
    with open(tiny / "res" / "s0" / "roc.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["attack", "fpr", "tpr"]
    assert {r["attack"] for r in rows} == {"fgsm@8", "pgd@8", "pgd_targeted@8", "pgd_full@8", "adaptive@8",
                                           "gaussian_noise@0.05",
                                           "gaussian_noise@0.15", "gaussian_blur@1", "jpeg@15"}
    _ok(_detect(tiny, "res_again"))
    again = json.loads((tiny / "res_again" / "s0" / "summary.json").read_text())
    assert s == again  # byte-identical: no wall-clock time in the outputs
    # the tables the metrics stage writes from it
    headline = detection_headline(read_detect_summaries(tiny, ["res"], [0]))
    assert headline["res"]["pgd_auroc"] == (None if s["attacks"]["pgd"]["8"]["auroc"] is None
                                            else round(s["attacks"]["pgd"]["8"]["auroc"], 4))
    write_roc(tiny / "plots" / "roc.csv", tiny, ["res"], 0)
    assert (tiny / "plots" / "roc.csv").read_text().startswith("curve,fpr,tpr\nres/fgsm@8,0.0000,0.0000")


def test_attack_nproc_reaches_the_detect_stage(tiny):
    """detect@ launches torchrun itself with attack.nproc 2: the processes share the attacks, and
    everything drawn outside the attacks (targets, corruptions, the clean scores) is as in one."""
    params = yaml.safe_load((tiny / "params.yaml").read_text())
    params["attack"]["nproc"] = 2
    (tiny / "params2.yaml").write_text(yaml.safe_dump(params))
    _ok(_detect(tiny, "res_one"))
    _ok(runner.invoke(detect_stage.app, ["--detector", "tiny_iqa", "--teacher", str(tiny / "models" / "tiny"),
                                         "--model", str(tiny / "det"), "--prepared", str(tiny / "prepared"),
                                         "--out", str(tiny / "res_two"), "--params", str(tiny / "params2.yaml")]))
    one, two = (json.loads((tiny / r / "s0" / "summary.json").read_text()) for r in ("res_one", "res_two"))
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["clean"] == two["clean"] and one["corruptions"] == two["corruptions"]
    tol = 2.0 / one["n"] + 1e-9
    for kind in ("fgsm", "pgd", "pgd_targeted", "pgd_full"):
        for eps, row in one["attacks"][kind].items():
            assert abs(row["success"] - two["attacks"][kind][eps]["success"]) <= tol, (kind, eps)
    assert abs(one["adaptive"]["success"] - two["adaptive"]["success"]) <= tol + 0.1
    assert one["attacks"]["fgsm"] == two["attacks"]["fgsm"]  # no random start: the shares change nothing
    assert sorted(p.name for p in (tiny / "res_two" / "s0").iterdir()) == \
        sorted(p.name for p in (tiny / "res_one" / "s0").iterdir())


def test_claims_for_a_detector():
    from attnrobust.metrics.claims import evaluate_claims

    row = {"auroc": 0.95, "tpr_at_5fpr": 0.7, "success": 0.1}
    s = {"eps": 8, "n": 100, "unreliable": False, "attacks": {"pgd": {"8": row}, "pgd_full": {"8": row}},
         "adaptive": {**row, "auroc": 0.6, "success": 0.9},
         "corruptions": {"jpeg": {"10": {**row, "auroc": 0.92}, "30": {**row, "auroc": None}}}}
    claims = evaluate_claims({"det": s}, {"iqa_kd": [{"detector": "det"}]})
    assert [c["direction"] for c in claims.values()] == [True, False, True]
    assert {c["verdict"] for c in claims.values()} == {"inconclusive"} and all(c["untested"] for c in claims.values())
    s["attacks"]["pgd_full"]["8"] = {**row, "auroc": 0.58}  # confidently wrong examples slip through
    assert not evaluate_claims({"det": s}, {"iqa_kd": [{"detector": "det"}]})["iqa_kd/0/0"]["direction"]
    assert "0.600" in claims["iqa_kd/0/1"]["ours"] and "0.950" in claims["iqa_kd/0/1"]["ours"]


def test_missing_or_foreign_teacher_is_a_clear_error(tiny):
    result = _build(tiny, "nope", teacher="absent")
    assert result.exit_code != 0 and "checkpoint not found" in str(result.exception)
    from attnrobust.checkpoint import read_checkpoint

    ckpt = read_checkpoint(tiny / "models" / "tiny" / "s0")
    ckpt["meta"]["dataset"] = "coco"
    (tiny / "models" / "coco_teacher" / "s0").mkdir(parents=True)
    torch.save({**ckpt, "meta": {**ckpt["meta"], "experiment": "tiny"}},
               tiny / "models" / "coco_teacher" / "s0" / "model.pt")
    result = _build(tiny, "nope", teacher="coco_teacher")
    assert isinstance(result.exception, UserError)
    assert "trained on 'coco'" in str(result.exception) and "gtsrb" in str(result.exception)
    assert not (tiny / "nope").exists()
    result = _detect(tiny, "nope", model="absent")  # no detector built
    assert "detector@tiny_iqa" in str(result.exception)


def test_bad_detector_params_name_the_key(tiny, tmp_path):
    params = yaml.safe_load((tiny / "params.yaml").read_text())
    params["detectors"]["tiny_iqa"] = {**DETECTOR, "corruptions": {"fog": [1.0]}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    result = runner.invoke(detector_stage.app, ["--detector", "tiny_iqa", "--teacher", "x", "--prepared", "y",
                                                "--out", str(tmp_path / "o"), "--params", str(tmp_path / "p.yaml")])
    assert "detectors.tiny_iqa" in str(result.exception) and "fog" in str(result.exception)


def test_an_auroc_undefined_in_one_seed_leaves_that_condition_untested():
    """A seed whose teacher is never fooled has no AUROC: the pooled test cannot run on it, so the
    condition is not tested (the pooled mean shown in `ours` averages the seeds that have one)."""
    from attnrobust.metrics.aggregate import pool_summaries
    from attnrobust.metrics.claims import evaluate_claims

    def seed(auroc):
        row = {"auroc": auroc, "tpr_at_5fpr": 0.5, "success": 0.1}
        return {"eps": 8, "n": 10, "unreliable": False, "attacks": {"pgd": {"8": row}, "pgd_full": {"8": row}},
                "adaptive": row, "corruptions": {"jpeg": {"10": row}}}

    per_seed = [seed(0.95), seed(None)]
    rng = np.random.default_rng(0)
    fooled = np.stack([rng.random(10) < 0.5, np.zeros(10, bool)])  # seed 1: the teacher is never fooled
    scores = {"clean_correct": np.ones((2, 10), bool), "clean_score": rng.random((2, 10))}
    for condition in ("pgd@8", "pgd_full@8", "adaptive@8", "jpeg@10"):
        scores |= {f"{condition}:fooled": fooled, f"{condition}:score": rng.random((2, 10)) + 1}
    pooled = {**pool_summaries(per_seed), "per_seed": per_seed, "detector_scores": scores}
    assert pooled["attacks"]["pgd"]["8"]["auroc"] == 0.95  # the mean of the seeds that have one
    claims = evaluate_claims({"det": pooled}, {"iqa_kd": [{"detector": "det"}]})  # no AUROC test crashes
    assert all(c["verdict"] == "inconclusive" and not c["tests"] for c in claims.values())
    per_seed[1] = seed(0.9)
    scores |= {f"{c}:fooled": np.stack([fooled[0], fooled[0]]) for c in ("pgd@8", "pgd_full@8", "adaptive@8", "jpeg@10")}
    pooled = {**pool_summaries(per_seed), "per_seed": per_seed, "detector_scores": scores}
    claims = evaluate_claims({"det": pooled}, {"iqa_kd": [{"detector": "det"}]})
    assert all(t["seeds"] == 2 for c in claims.values() for t in c["tests"]) and claims["iqa_kd/0/0"]["tests"]
