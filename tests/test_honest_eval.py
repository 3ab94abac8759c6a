"""Honest evaluation: oracles for our PGD and the AutoAttack adapter, gradient masking caught by
the sanity checks, BPDA and EOT, and the per-sample worst case (spec/attacks.md §2, §5)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnrobust.attacks import pgd
from attnrobust.attacks.adaptive import bpda
from attnrobust.attacks.autoattack import MULTILABEL, run_autoattack, skip_reason
from attnrobust.attacks.suite import AttackConfig, per_sample_worst, run_suite
from attnrobust.metrics.aggregate import headline_metrics
from attnrobust.units import tolerance

C, EPS_LEVELS = 5, 8
EPS = EPS_LEVELS / 255
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny; on a loaded 2-core runner, 2 OpenMP threads run ~100x slower than 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 8, 8) images in [0, 1]: a class prototype of +-0.045 around grey, plus noise.
    Tuned so that a trained model keeps about half its accuracy at eps 8/255."""
    prototypes = torch.randint(0, 2, (C, 3, 8, 8), generator=torch.Generator().manual_seed(123)).float() * 2 - 1
    y = torch.arange(n) % C
    noise = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return (0.5 + 0.045 * prototypes[y] + 0.09 * noise).clamp(0, 1), y


def quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.round(16 * x) / 16


class Quantise(nn.Module):
    """Input quantisation, a classic gradient-masking "defence": its gradient is zero everywhere."""

    def forward(self, x):
        return quantise(x)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = separable(500, seed=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, C))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):  # full batch
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def held_out():
    return separable(100, seed=1)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def config(**kw) -> AttackConfig:
    base = dict(eps=EPS_LEVELS, steps=20, n_samples=0, batch_size=128, eps_sweep=[4], steps_sweep=[10],
                race_steps=[], device="cpu", aa_square_queries=100, suite="fast")
    return AttackConfig(**{**base, **kw})


# --- BPDA and EOT ---------------------------------------------------------------------------------

def test_bpda_forward_is_exact_and_backward_is_the_approximation():
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    square = bpda(quantise, lambda z: z ** 2)
    out = square(x)
    assert torch.equal(out, quantise(x.detach()))  # the defence's own values, bit for bit
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, 2 * x.detach())  # d/dx of the approximation x**2
    (masked_grad,) = torch.autograd.grad(quantise(x).sum(), x)
    assert (masked_grad == 0).all()  # what an attack sees without BPDA


def test_eot_on_a_deterministic_model_is_plain_pgd(trained, held_out):
    x, y = held_out
    ce = lambda logits, t: F.cross_entropy(logits, t, reduction="sum")  # noqa: E731 (no early stop)
    plain = pgd(trained, x, y, eps=EPS, steps=5, step_size=EPS / 4, random_start=False, loss_fn=ce)
    eot = pgd(trained, x, y, eps=EPS, steps=5, step_size=EPS / 4, random_start=False, eot_samples=3)
    assert torch.allclose(plain, eot, atol=1e-6)


class CoinFlip(nn.Module):
    """A randomised model: each forward pass, each sample's logits are scrambled with probability 1/2."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        flip = torch.rand(len(x), 1) < 0.5
        return torch.where(flip, logits.roll(1, dims=1), logits)


def test_eot_never_trusts_a_lucky_random_pass(trained, held_out):
    x, y = held_out
    model = CoinFlip(trained)
    torch.manual_seed(0)
    single = pgd(model, x, y, eps=EPS, steps=5, step_size=EPS / 4, random_start=False)
    eot = pgd(model, x, y, eps=EPS, steps=5, step_size=EPS / 4, random_start=False, eot_samples=4)
    moved = lambda x_adv: (x_adv - x).flatten(1).abs().amax(1) > 0  # noqa: E731
    assert not moved(single).all()  # one-pass early stopping froze points that a lucky pass "fooled"
    assert moved(eot).all()  # under EOT no point stops on a single pass


def test_randomised_model_is_flagged_unless_attacked_with_eot(trained, held_out):
    x, y = held_out[0][:20], held_out[1][:20]
    cfg = dict(steps=2, steps_sweep=[1], eps_sweep=[])
    one_pass, _ = run_suite(CoinFlip(trained), x, y, config(**cfg), num_classes=C, device=CPU)
    with_eot, _ = run_suite(CoinFlip(trained), x, y, config(eot_samples=2, **cfg), num_classes=C, device=CPU)
    assert not one_pass["sanity"]["deterministic"]["passed"]
    assert with_eot["sanity"]["deterministic"]["passed"] and "EOT" in with_eot["sanity"]["deterministic"]["rule"]


# --- oracle: our PGD against ART -------------------------------------------------------------------

def test_pgd_matches_art_without_random_start(trained, held_out):
    art_evasion = pytest.importorskip("art.attacks.evasion")
    from art.estimators.classification import PyTorchClassifier

    x, y = held_out
    clf = PyTorchClassifier(model=trained, loss=nn.CrossEntropyLoss(), input_shape=(3, 8, 8), nb_classes=C,
                            clip_values=(0.0, 1.0), device_type="cpu")
    art = art_evasion.ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=EPS, eps_step=EPS / 4, max_iter=10,
                                                      num_random_init=0, batch_size=len(x), verbose=False)
    x_art = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    ce = lambda logits, t: F.cross_entropy(logits, t, reduction="sum")  # noqa: E731 (last iterate, as ART)
    ours = pgd(trained, x, y, eps=EPS, steps=10, step_size=EPS / 4, random_start=False, loss_fn=ce)
    ours_early_stop = pgd(trained, x, y, eps=EPS, steps=10, step_size=EPS / 4, random_start=False)
    acc_art, acc_ours = accuracy(trained, x_art, y), accuracy(trained, ours, y)
    assert 0.2 < acc_art < 0.9  # a non-trivial comparison
    assert abs(acc_ours - acc_art) <= 1 / len(y)
    assert ((ours - x_art).abs() > 1e-6).float().mean() < 1e-3
    assert accuracy(trained, ours_early_stop, y) <= acc_art + 1 / len(y)  # early stopping never weakens it


# --- gradient masking, caught and broken -----------------------------------------------------------

def test_gradient_masking_trips_the_checks_and_the_unmasked_model_passes(trained, held_out):
    x, y = held_out
    honest, _ = run_suite(trained, x, y, config(), num_classes=C, device=CPU)
    masked, _ = run_suite(nn.Sequential(Quantise(), trained), x, y, config(), num_classes=C, device=CPU)
    assert not honest["unreliable"], {k: c for k, c in honest["sanity"].items() if not c["passed"]}
    assert masked["pgd_acc"] > honest["pgd_acc"] + 0.3  # the masked model looks robust...
    assert masked["unreliable"]  # ...and the checks say not to believe it
    assert not masked["sanity"]["nonzero_gradients"]["passed"]
    assert not masked["sanity"]["whole_box_zero"]["passed"]


def test_black_box_square_beating_white_box_marks_the_masked_model(trained, held_out):
    x, y = held_out
    cfg = config(suite="standard", aa_from="clean", aa_attacks=["apgd_ce", "apgd_t", "fab_t", "square"], eps=12, eps_sweep=[], steps=5, steps_sweep=[],
                 aa_square_queries=1000)
    summary, cols = run_suite(nn.Sequential(Quantise(), trained), x, y, cfg, num_classes=C, device=CPU)
    assert summary["autoattack"]["acc_after"]["fab_t"] == summary["pgd_acc"] == 1.0  # gradients see nothing
    assert summary["autoattack_acc"] < 0.9  # random search does: ~24 of 100 broken
    assert not summary["sanity"]["square_no_stronger_than_white_box"]["passed"]
    assert summary["robust_acc"] == pytest.approx(cols["worst_correct"].mean()) == summary["autoattack_acc"]


def test_bpda_through_the_quantiser_breaks_the_masked_model(trained, held_out):
    x, y = held_out
    kw = dict(eps=EPS, steps=20, step_size=2.5 * EPS / 20, generator=torch.Generator().manual_seed(0))
    unmasked = accuracy(trained, pgd(trained, x, y, **kw), y)
    masked_model = nn.Sequential(Quantise(), trained)
    bpda_model = nn.Sequential(bpda(quantise), trained)  # same forward values, straight-through gradient
    masked = accuracy(masked_model, pgd(masked_model, x, y, **kw), y)
    broken = accuracy(bpda_model, pgd(bpda_model, x, y, **kw), y)
    assert masked > unmasked + 0.3
    assert abs(broken - unmasked) <= 0.08


# --- AutoAttack ------------------------------------------------------------------------------------

def test_standard_suite_runs_autoattack_per_sample(trained, held_out):
    x, y = held_out
    summary, cols = run_suite(trained, x, y, config(suite="standard", aa_from="clean",
                                                        aa_attacks=["apgd_ce", "apgd_t", "fab_t", "square"]), num_classes=C, device=CPU)
    names = ["clean_correct", "apgd_ce_correct", "apgd_t_correct", "fab_t_correct", "square_correct"]
    assert all(len(cols[k]) == len(y) and set(np.unique(cols[k])) <= {0, 1} for k in names + ["autoattack_correct"])
    stacked = np.stack([cols[k] for k in names])
    assert (np.diff(stacked, axis=0) <= 0).all()  # cumulative: a broken sample stays broken
    assert np.array_equal(cols["autoattack_correct"], cols["square_correct"])
    assert summary["autoattack_acc"] <= summary["pgd_acc"] + 0.01  # AutoAttack at least as strong as PGD-20
    assert summary["autoattack"]["n_target_classes"] == C - 1  # auto-attack #110
    assert (cols["worst_correct"] <= cols["autoattack_correct"]).all()
    assert (cols["worst_correct"] <= cols["pgd_correct"]).all()
    assert summary["robust_acc"] == pytest.approx(cols["worst_correct"].mean())
    assert summary["sanity"]["square_no_stronger_than_white_box"]["passed"]
    assert not summary["unreliable"]
    assert headline_metrics({"e": summary})["e"]["autoattack_acc"] == round(summary["autoattack_acc"], 4)


def test_adapter_matches_pyautoattack_autoattack(trained, held_out):
    from pyautoattack import AutoAttack

    x, y = held_out[0][:40], held_out[1][:40]
    _, cols = run_autoattack(trained, x, y, eps=EPS, num_classes=C, device=CPU, batch_size=16, seed=0,
                             square_queries=50)
    reference = AutoAttack(trained, eps=EPS, seed=0, version="standard")
    reference.verbose = False
    # pyautoattack fixes 9 targets, more than C - 1 = 4 (auto-attack #110), and 5000 Square queries
    reference.apgd_targeted.n_target_classes = reference.fab.n_target_classes = C - 1
    reference.square.n_queries = 50
    _, y_adv = reference.run_standard_evaluation(x, y, batch_size=16)
    assert torch.equal(cols["autoattack_correct"], y_adv == y)


def test_autoattack_subset_marks_unattacked_samples(trained, held_out):
    x, y = held_out[0][:30], held_out[1][:30]
    summary, cols = run_suite(trained, x, y, config(suite="standard", aa_n_samples=10, steps_sweep=[]),
                              num_classes=C, device=CPU)
    assert summary["autoattack"]["n"] == 10
    assert (cols["autoattack_correct"] == -1).sum() == 20  # -1: outside AutoAttack's subset
    outside = cols["autoattack_correct"] == -1
    assert (cols["worst_correct"][outside] <= cols["pgd_correct"][outside]).all()


def test_autoattack_skips_what_it_cannot_attack():
    video, multi_hot = torch.rand(4, 10, 9), torch.zeros(4, 7)
    assert skip_reason(video, multi_hot, num_classes=7, eps=EPS) == MULTILABEL
    assert skip_reason(video, torch.zeros(4, dtype=torch.long), num_classes=7, eps=EPS).startswith("skipped")
    images = torch.rand(4, 4, 8, 8)
    partial = torch.ones(1, 4, 8, 8)
    partial[..., :2, :] = 0  # the attacker may change part of a channel: AutoAttack cannot honour it
    assert skip_reason(images, torch.zeros(4, dtype=torch.long), num_classes=3, eps=EPS, perturb_mask=partial)


def test_autoattack_never_changes_a_fixed_mask_channel():
    """A model that reads only its mask channel cannot be broken when the mask is off limits."""
    class MaskReader(nn.Module):
        def forward(self, x):  # class 0 iff just over half of the mask is on
            score = 1000 * (x[:, 3].mean((1, 2)) - 0.5)
            return torch.stack([score, torch.zeros_like(score)], 1)

    mask = torch.zeros(6, 1, 8, 8)
    mask.view(6, -1)[:, :33] = 1  # 33 of 64 pixels
    x, y = torch.cat([torch.rand(6, 3, 8, 8), mask], 1), torch.zeros(6, dtype=torch.long)
    pixels_only = torch.tensor([1.0, 1, 1, 0]).view(1, 4, 1, 1)
    kw = dict(eps=EPS, num_classes=2, device=CPU, square_queries=20)
    guarded, _ = run_autoattack(MaskReader(), x, y, perturb_mask=pixels_only, **kw)
    unguarded, _ = run_autoattack(MaskReader(), x, y, **kw)
    assert guarded["acc"] == 1.0 and guarded["skipped_attacks"] == {"apgd_t": "targeted DLR loss needs >= 4 classes"}
    assert unguarded["acc"] == 0.0  # the mask channel was the whole attack surface


# --- the worst case is per sample ------------------------------------------------------------------

def test_worst_case_is_per_sample_not_the_min_of_means():
    # two attacks, each leaving half the samples standing, but different halves
    attack_a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    attack_b = torch.tensor([0, 0, 1, 1], dtype=torch.bool)
    min_of_means = min(attack_a.float().mean(), attack_b.float().mean())
    assert min_of_means == 0.5  # what a per-attack table would report
    assert per_sample_worst([attack_a, attack_b]).float().mean() == 0.0  # every sample is broken by one of them


def test_new_attack_params_are_validated():
    with pytest.raises(ValueError):
        config(eot_samples=0)
    with pytest.raises(ValueError):
        config(aa_square_queries=0)
    assert AttackConfig(eps=8, steps=10).suite == "standard"  # AutoAttack by default
    with pytest.raises(ValueError):
        config(aa_from="everything")
    with pytest.raises(ValueError):
        config(aa_attacks=["apgd_dlr"])
    assert AttackConfig(eps=8, steps=10).aa_attacks == ["apgd_ce", "apgd_t"]


def test_autoattack_on_the_survivors_gives_the_worst_case_of_running_it_on_every_point(trained, held_out):
    """``aa_from: survivors`` skips the points our attacks already broke: the per-sample worst case
    is an AND, so it may differ from ``clean`` only by AutoAttack's random starts (a sample's start
    depends on its batch), and ``attack_strength`` counts what AutoAttack added."""
    x, y = held_out
    cfg = dict(suite="standard", eps=12, steps=2, eps_sweep=[], steps_sweep=[1], aa_square_queries=50)
    survivors, s_cols = run_suite(trained, x, y, config(**cfg), num_classes=C, device=CPU)
    every, e_cols = run_suite(trained, x, y, config(**cfg, aa_from="clean"), num_classes=C, device=CPU)
    assert np.array_equal(s_cols["pgd_suite_correct"], e_cols["pgd_suite_correct"])  # the same PGD runs
    assert (s_cols["autoattack_correct"] <= s_cols["pgd_suite_correct"]).all()  # only survivors were attacked
    assert abs(survivors["robust_acc"] - every["robust_acc"]) <= tolerance(len(y))
    assert "autoattack_acc" not in survivors and "autoattack_acc" in every
    share, extra, n = survivors["attack_strength"]["value"]
    assert n == len(y) and extra == int(((s_cols["pgd_suite_correct"] == 1) & (s_cols["worst_correct"] == 0)).sum())
    assert survivors["robust_acc"] == pytest.approx(survivors["pgd_suite_acc"] - share)
    assert headline_metrics({"e": survivors})["e"]["aa_extra_broken"] == round(share, 4)


def test_tolerance_admits_exactly_two_samples_despite_float_rounding():
    from attnrobust.attacks.sanity import tolerance, trend_checks

    # 60/200 - 58/200 is 0.0100000x in float32: a 2-sample change must not fail `converged`
    hi, lo = float(torch.tensor(60 / 200)), float(torch.tensor(58 / 200))
    assert trend_checks([0.5, 0.4], [hi, hi, lo], 0.5, 0.3, tolerance(200))["converged"]["passed"]
    assert not trend_checks([0.5, 0.4], [hi, hi, lo - 0.005], 0.5, 0.3, tolerance(200))["converged"]["passed"]
