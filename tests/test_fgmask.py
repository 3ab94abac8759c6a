"""fgmask (Vaishnavi et al.): the classifier sees mask ⊙ x; threat models A and B; random-mask control."""
import pytest
import torch

from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.pgd import pgd
from attnrobust.attacks.suite import AttackConfig
from attnrobust.checkpoint import read_checkpoint
from attnrobust.errors import UserError
from attnrobust.experiment import parse_experiment
from attnrobust.metrics.claims_fgmask import fgmask_claims
from attnrobust.models.cnn import SmallResNet
from attnrobust.models.masked import MaskedResNet, apply_mask, random_box_masks, with_mask_channel
from attnrobust.attacks.autoattack import NOTHING_PERTURBABLE
from attnrobust.attacks.suite import run_suite
from attnrobust.tasks import IMAGE, IMAGE_FG_MASK, IMAGE_MASK_ONLY, IMAGE_RANDOM_MASK, VIDEO, task_for
from attnrobust.training import TrainConfig, train_experiment

KWARGS = {"num_classes": 3, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "width": 4}


@pytest.fixture
def masked_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """x = [rgb, mask] (8, 4, 16, 16) with a box foreground of a different size per sample, labels y."""
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(8, 3, 16, 16, generator=g)
    mask = torch.zeros(8, 1, 16, 16)
    for i in range(8):
        mask[i, :, 2 + i % 3:10 + i % 4, 3:12] = 1
    return with_mask_channel(rgb, mask), torch.randint(0, 3, (8,), generator=g)


def _model(cls=MaskedResNet) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls(**KWARGS).eval()


def _exp(**kw):
    values = {"dataset": "gtsrb", "method": "fgmask", "model": "masked_cnn", "model_args": {"width": 4}, **kw}
    return parse_experiment("tiny_fgmask", values, "test")


def test_masked_input_is_exactly_zero_outside_the_mask(masked_batch):
    x, _ = masked_batch
    seen = apply_mask(x)  # (N, 3, H, W)
    background = (x[:, -1:] == 0).expand_as(seen)
    assert (seen[background] == 0).all()
    assert torch.equal(seen[~background], x[:, :3][~background])


def test_background_perturbation_is_wiped_by_the_model(masked_batch):
    """Threat model A: whatever the attacker writes outside the mask never reaches the classifier."""
    x, _ = masked_batch
    model = _model()
    noisy = x.clone()
    noisy[:, :3] = torch.where(x[:, -1:] == 1, x[:, :3], torch.rand_like(x[:, :3]))
    assert torch.equal(model(noisy), model(x))


def test_all_ones_mask_reproduces_the_unmasked_model(masked_batch):
    x, _ = masked_batch
    plain, masked = _model(SmallResNet), _model()
    masked.load_state_dict(plain.state_dict())  # same parameters: the mask adds none
    rgb = x[:, :3]
    assert torch.equal(masked(with_mask_channel(rgb, torch.ones_like(rgb[:, :1]))), plain(rgb))


def test_threat_model_a_never_changes_the_mask_channel(masked_batch):
    x, y = masked_batch
    x_adv = IMAGE_FG_MASK.attack(_model(), x, y, eps=16, steps=5, step_size=4)
    assert torch.equal(x_adv[:, -1], x[:, -1])
    assert (x_adv - x).abs().max() <= 16 / 255 + 1e-6


@pytest.mark.parametrize("task", [IMAGE, IMAGE_FG_MASK])
def test_threat_model_b_perturbation_is_zero_outside_the_mask(masked_batch, task):
    x, y = masked_batch
    foreground = x[:, -1:]
    if task is IMAGE:  # an unmasked model: B restricts the attacker, the model still sees the background
        x, model = x[:, :3], _model(SmallResNet)
    else:
        model = _model()
    allowed = task.foreground_perturb_mask(x, foreground)
    x_adv = pgd(model, x, y, eps=16 / 255, steps=5, step_size=4 / 255, perturb_mask=allowed,
                generator=torch.Generator().manual_seed(0))
    assert ((x_adv - x) * (1 - allowed)).abs().max() == 0
    assert ((x_adv - x)[:, :3] * (1 - foreground)).abs().max() == 0
    assert (x_adv - x).abs().max() > 0  # the foreground was attacked


def test_threat_models_a_and_b_coincide_for_an_oracle_masked_model(masked_batch):
    """With the mask inside the model, background perturbation is wiped (A) or never made (B): same attack."""
    x, y = masked_batch
    model = _model()
    kw = dict(eps=8 / 255, steps=5, step_size=2 / 255)
    a = pgd(model, x, y, perturb_mask=IMAGE_FG_MASK.perturb_mask(x), generator=torch.Generator().manual_seed(0), **kw)
    b = pgd(model, x, y, perturb_mask=IMAGE_FG_MASK.foreground_perturb_mask(x, x[:, -1:]),
            generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(model(a), model(b))


def test_random_masks_match_area_and_are_deterministic():
    areas = torch.tensor([0, 1, 7, 40, 97, 256])
    masks = random_box_masks(areas, 16, torch.Generator().manual_seed(0))
    assert masks.shape == (6, 1, 16, 16)
    assert torch.equal(masks.sum(dim=(1, 2, 3)).long(), areas)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(masks, random_box_masks(areas, 16, torch.Generator().manual_seed(0)))
    rows = masks[4, 0].any(1).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == len(rows)  # one box: contiguous rows


def test_random_mask_task_keeps_area_but_moves_the_mask(prepared_dir):
    fg, rnd = IMAGE_FG_MASK.load(prepared_dir, "train"), IMAGE_RANDOM_MASK.load(prepared_dir, "train")
    assert torch.equal(fg.x[:, :3], rnd.x[:, :3]) and torch.equal(fg.mask, rnd.mask)  # Tensors.mask: annotations
    assert torch.equal(fg.x[:, -1:], fg.mask)
    assert torch.equal(rnd.x[:, -1:].sum(dim=(1, 2, 3)), fg.mask.sum(dim=(1, 2, 3)))
    assert not torch.equal(rnd.x[:, -1:], fg.mask)
    assert torch.equal(rnd.x, IMAGE_RANDOM_MASK.load(prepared_dir, "train").x)  # same masks every time


def test_mask_only_inputs_carry_the_mask_and_no_pixels(prepared_dir):
    """The floor's classifier sees the binary mask in every channel; the attacker may change nothing."""
    fg, only = IMAGE_FG_MASK.load(prepared_dir, "test"), IMAGE_MASK_ONLY.load(prepared_dir, "test")
    assert torch.equal(only.x[:, -1:], fg.x[:, -1:]) and torch.equal(only.y, fg.y)
    assert torch.equal(only.x[:, :3], fg.mask.expand(-1, 3, -1, -1))  # no pixel of the image survives
    assert torch.equal(apply_mask(only.x), fg.mask.expand(-1, 3, -1, -1))  # what the classifier sees: the mask
    assert not IMAGE_MASK_ONLY.perturb_mask(only.x).any()
    assert IMAGE_FG_MASK.perturb_mask(fg.x)[0, :3].all()  # the image's pixels stay perturbable elsewhere


def test_mask_only_suite_leaves_clean_accuracy_and_passes_its_checks(prepared_dir):
    """No attack of threat model A moves the floor: every attack's accuracy is the clean one, the
    whole-box check asks for exactly that, and AutoAttack says why it did not run."""
    test = IMAGE_MASK_ONLY.load(prepared_dir, "test")
    model = _model()
    cfg = AttackConfig(eps=8, steps=3, n_samples=0, eps_sweep=[4, 8], steps_sweep=[2, 3], device="cpu",
                       suite="standard", head_eps=[])
    summary, cols = run_suite(model, test.x, test.y, cfg, num_classes=3, device=torch.device("cpu"),
                              domain=IMAGE_MASK_ONLY.domain, perturb_mask=IMAGE_MASK_ONLY.perturb_mask(test.x))
    for key in ("fgsm_acc", "pgd_acc", "pgd_targeted_acc", "robust_acc"):
        assert summary[key] == summary["clean_acc"], key
    assert set(summary["curves"]["eps_acc"]) == {summary["clean_acc"]}
    assert summary["autoattack"] == NOTHING_PERTURBABLE
    assert not summary["unreliable"], {k: c for k, c in summary["sanity"].items() if not c["passed"]}
    assert "nothing perturbable" in summary["sanity"]["whole_box_zero"]["rule"]
    # the same model on pixels it may attack: the whole box drives it to zero, as the check demands
    pixels = IMAGE_FG_MASK.load(prepared_dir, "test")
    summary, _ = run_suite(model, pixels.x, pixels.y, cfg, num_classes=3, device=torch.device("cpu"),
                           domain=IMAGE_FG_MASK.domain, perturb_mask=IMAGE_FG_MASK.perturb_mask(pixels.x))
    assert "below 1%" in summary["sanity"]["whole_box_zero"]["rule"]


def test_task_for_picks_the_input_and_refuses_mismatches():
    assert task_for(_exp()) is IMAGE_FG_MASK
    assert task_for(_exp(mask="random", adversarial=True)) is IMAGE_RANDOM_MASK
    assert task_for(_exp(mask="only")) is IMAGE_MASK_ONLY
    assert task_for(parse_experiment("s", {"dataset": "coco", "method": "standard", "model": "cnn"}, "t")) is IMAGE
    with pytest.raises(UserError, match="masked_cnn"):
        task_for(_exp(model="cnn"))
    with pytest.raises(UserError, match="expects \\[image, mask\\] inputs"):
        task_for(parse_experiment("s", {"dataset": "gtsrb", "method": "standard", "model": "masked_cnn"}, "t"))
    with pytest.raises(UserError, match="image dataset"):
        task_for(_exp(dataset="video"))
    assert VIDEO.perturb_mask(torch.ones(2, 3, 5)).shape == (2, 3, 5)  # video threat model untouched


def test_fgmask_trains_and_reports_both_threat_models(prepared_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu", threads=1)
    exp = _exp(adversarial=True, train_eps=8, train_steps=2, train_step_size=4.0)
    result = train_experiment(exp, cfg, prepared_dir, tmp_path / "m", tmp_path / "live")
    assert result["clean_acc"] > 0.5  # the class is the colour of the (masked-in) central square
    assert read_checkpoint(tmp_path / "m")["meta"]["task"] == "image_fg_mask"
    attack = AttackConfig(eps=8, steps=3, n_samples=0, eps_sweep=[4, 8], steps_sweep=[2, 3], device="cpu")
    summary = evaluate_checkpoint("tiny_fgmask", tmp_path / "m", prepared_dir, tmp_path / "attack", attack)
    assert summary["threat_model"].startswith("A: ") and summary["threat_model_fg_only"].startswith("B: ")
    assert len(summary["curves"]["eps_acc_fg_only"]) == len(summary["curves"]["eps_acc"])
    assert summary["robust_acc"] <= summary["robust_acc_fg_only"]  # B attacks are A attacks: folded into A's worst
    assert summary["sanity"]["nonzero_gradients"]["passed"]  # the background's gradient is zero, the input's is not
    header = (tmp_path / "attack" / "per_sample.csv").read_text().splitlines()[0]
    assert "pgd_fg_only_correct" in header and "worst_fg_only_correct" in header


def _summary(robust, robust_fg, n=200, eps=8):
    return {"robust_acc": robust, "robust_acc_fg_only": robust_fg, "n": n, "eps": eps, "unreliable": False}


def test_claims_measure_the_gain_over_adversarial_training():
    summaries = {"m": _summary(0.55, 0.60), "at": _summary(0.30, 0.50), "r": _summary(0.35, 0.52)}
    claims = fgmask_claims(summaries, "coco", "m", "at", "r")
    assert [c["holds"] for c in claims] == [True, False, True]  # +25 pp (A) > 20; +10 pp (B) is not; fg > random
    assert "+25.0 pp" in claims[0]["ours"] and "threat model A" in claims[0]["claim"]
    assert "increase of over 20% on MS-COCO" in claims[0]["paper"]
    assert fgmask_claims(summaries, "gtsrb", "m", "at")[1]["holds"]  # GTSRB: any gain beyond the tolerance
    with pytest.raises(UserError, match="no attack summary for nope"):
        fgmask_claims(summaries, "coco", "m", "nope")


def test_every_mask_claim_family_reports_its_gain_over_the_mask_only_floor():
    summaries = {"m": _summary(0.55, 0.60), "at": _summary(0.30, 0.50), "floor": _summary(0.54, 0.54)}
    claims = fgmask_claims(summaries, "coco", "m", "at", mask_only="floor")
    floor = claims[-1]
    assert "mask-only floor" in floor["claim"] and "no mask-only control" in floor["paper"]
    assert not floor["holds"]  # +1 pp over the floor is within the tie tolerance: the outline explains it
    assert floor["comparisons"] == [{"a": "m", "b": "floor", "column_a": "worst_correct",
                                     "column_b": "worst_correct", "threshold": 0.0,
                                     "label": "threat A, over the floor"}]
    assert fgmask_claims({**summaries, "floor": _summary(0.10, 0.10)}, "gtsrb", "m", "at",
                         mask_only="floor")[-1]["holds"]
    assert len(fgmask_claims(summaries, "coco", "m", "at")) == 2  # no floor named: no floor claim
