"""PGD/FGSM semantics: the eps-ball, the box, targets, eval mode, input-only gradients."""
import pytest
import torch

from attnrobust.attacks import Domain, fgsm, levels_to_input, pgd, random_targets
from attnrobust.units import whole_box_levels
from attnrobust.attacks.pgd import eval_no_param_grad


def test_budget_units():
    assert levels_to_input(8) == pytest.approx(8 / 255)
    assert levels_to_input(8, Domain.YT8M) == pytest.approx(8 * 4 / 255)
    assert whole_box_levels(Domain.IMAGE) == 255 and whole_box_levels(Domain.YT8M) == 255


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_in_eps_ball_and_box(tiny_model, tiny_batch, targeted):
    x, y = tiny_batch
    targets = random_targets(y, 5, torch.Generator().manual_seed(0)) if targeted else None
    eps = 8 / 255
    x_adv = pgd(tiny_model, x, y, eps=eps, steps=10, step_size=2 / 255, targets=targets, restarts=2)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_per_sample_eps_is_respected(tiny_model, tiny_batch):
    x, y = tiny_batch
    eps = torch.linspace(0, 16 / 255, len(y))
    x_adv = pgd(tiny_model, x, y, eps=eps, steps=5, step_size=eps / 2)
    assert ((x_adv - x).abs().flatten(1).max(1).values <= eps + 1e-6).all()
    assert torch.equal(x_adv[0], x[0])  # eps 0: untouched


def test_random_targets_never_equal_label():
    y = torch.arange(10).repeat(100)
    t = random_targets(y, 10, torch.Generator().manual_seed(0))
    assert (t != y).all() and t.min() >= 0 and t.max() <= 9
    assert len(set((t - y).remainder(10).tolist())) == 9  # every wrong class is reachable


def test_pgd_lowers_accuracy_and_whole_box_breaks_everything(tiny_model, tiny_batch):
    x, y = tiny_batch
    clean = (tiny_model(x).argmax(1) == y).float().mean()
    x_adv = pgd(tiny_model, x, y, eps=1.0, steps=20, step_size=0.25)
    assert (tiny_model(x_adv).argmax(1) == y).float().mean() == 0 < clean or clean == 0


def test_targeted_pgd_hits_targets_with_large_budget(tiny_model, tiny_batch):
    x, y = tiny_batch
    t = random_targets(y, 5, torch.Generator().manual_seed(3))
    x_adv = pgd(tiny_model, x, y, eps=1.0, steps=30, step_size=0.1, targets=t)
    assert (tiny_model(x_adv).argmax(1) == t).float().mean() >= 0.9


def _reference_pgd(model, x, y, eps, steps, step_size):
    """Textbook PGD without random start or early stopping (last iterate)."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x_adv), y, reduction="sum")
        grad, = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def test_early_stopping_never_weakens_the_attack(tiny_model, tiny_batch):
    x, y = tiny_batch
    kw = dict(eps=16 / 255, steps=10, step_size=4 / 255)
    ours = tiny_model(pgd(tiny_model, x, y, random_start=False, **kw)).argmax(1) != y
    ref = tiny_model(_reference_pgd(tiny_model, x, y, **kw)).argmax(1) != y
    assert ref.any()
    assert (ours | ~ref).all()  # every point the reference fools, ours fools too


def test_restarts_never_help_the_defender(tiny_model, tiny_batch):
    x, y = tiny_batch
    accs = []
    for restarts in (1, 4):
        x_adv = pgd(tiny_model, x, y, eps=4 / 255, steps=5, step_size=1 / 255, restarts=restarts,
                    generator=torch.Generator().manual_seed(0))
        accs.append((tiny_model(x_adv).argmax(1) == y).float().mean().item())
    assert accs[1] <= accs[0]


def test_attack_uses_eval_mode_and_leaves_params_alone(tiny_model, tiny_batch):
    x, y = tiny_batch
    tiny_model.train()
    running = tiny_model.net[1].running_mean.clone()
    pgd(tiny_model, x, y, eps=8 / 255, steps=3, step_size=2 / 255)
    assert torch.equal(running, tiny_model.net[1].running_mean)  # BN stats untouched: eval mode
    assert tiny_model.training  # mode restored
    assert all(p.grad is None for p in tiny_model.parameters())  # gradients w.r.t. the input only
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_eval_no_param_grad_restores_on_error(tiny_model):
    with pytest.raises(RuntimeError), eval_no_param_grad(tiny_model):
        raise RuntimeError
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_fgsm_is_one_full_step(tiny_model, tiny_batch):
    x, y = tiny_batch
    x = x.clamp(0.1, 0.9)  # away from the box so the step is not clipped
    x_adv = fgsm(tiny_model, x, y, eps=8 / 255)
    delta = (x_adv - x).abs()
    fooled_at_start = tiny_model(x).argmax(1) != y
    moved = delta[~fooled_at_start]
    assert torch.allclose(moved[moved > 0], torch.full_like(moved[moved > 0], 8 / 255), atol=1e-6)


def test_perturb_mask_restricts_perturbation(tiny_model, tiny_batch):
    x, y = tiny_batch
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    x_adv = pgd(tiny_model, x, y, eps=16 / 255, steps=5, step_size=4 / 255, perturb_mask=mask)
    assert ((x_adv - x) * (1 - mask)).abs().max() == 0


def test_pgd_is_deterministic_with_a_generator(tiny_model, tiny_batch):
    x, y = tiny_batch
    a = pgd(tiny_model, x, y, eps=8 / 255, steps=5, step_size=2 / 255, generator=torch.Generator().manual_seed(5))
    b = pgd(tiny_model, x, y, eps=8 / 255, steps=5, step_size=2 / 255, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_a_targeted_restart_never_undoes_a_misclassification(monkeypatch):
    """Restart 1 misses the target but misclassifies; restart 2 leaves the image correct: the
    kept point is restart 1's, so accuracy on the true label cannot rise with restarts."""
    import sys

    import torch.nn.functional as F

    pgd_module = sys.modules["attnrobust.attacks.pgd"]  # the module (attnrobust.attacks.pgd is the function)

    class ByValue(torch.nn.Module):  # predicts class round(x[0, 0, 0]) of 3
        def forward(self, x):
            return F.one_hot(x[:, 0, 0, 0].round().long().clamp(0, 2), 3).float() * 10

    runs = iter([2.0, 0.0])  # restart 1: class 2 (not the target 1); restart 2: the true class 0

    def fake_run(model, x0, *args, **kwargs):
        x_adv = torch.full_like(x0, next(runs))
        return x_adv, torch.zeros(len(x0), dtype=torch.bool)

    monkeypatch.setattr(pgd_module, "_pgd_run", fake_run)
    x, y, target = torch.zeros(1, 1, 2, 2), torch.tensor([0]), torch.tensor([1])
    out = pgd(ByValue(), x, y, eps=1.0, steps=1, step_size=1.0, targets=target, restarts=2, bounds=(0.0, 3.0))
    assert ByValue()(out).argmax(1).item() == 2


def test_training_attacks_run_every_step_for_every_sample(tiny_model, tiny_batch):
    """Madry PGD-AT: the task's attack takes all its steps even for points already fooled; an
    evaluation may stop them early (early_stop=True)."""
    from attnrobust.tasks import IMAGE

    class Counting(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.rows = net, 0

        def forward(self, x):
            self.rows += len(x)
            return self.net(x)

    x, y = tiny_batch
    wrong = (tiny_model(x).argmax(1) + 1) % 5  # every sample starts misclassified
    for early_stop, expected in ((False, 3 * len(x)), (True, len(x))):
        model = Counting(tiny_model)
        IMAGE.attack(model, x, wrong, eps=8, steps=3, step_size=2, random_start=False, early_stop=early_stop)
        assert model.rows == expected, early_stop
