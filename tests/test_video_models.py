"""Video Transformer attention, the A-ART objective and the multi-label video attack suite."""
import math

import numpy as np
import pytest
import torch

from attnrobust.attacks.suite import AttackConfig
from attnrobust.attacks.video_suite import run_video_suite, video_average_precision, worst_per_video
from attnrobust.methods import Batch, get_method
from attnrobust.methods.a_art import AArtConfig, attention_divergence
from attnrobust.models import build_model
from attnrobust.tasks import VIDEO

C, D, T = 5, 6, 8


def _video_batch(n=12, seed=0):
    """(n, T, D + 1) features in the YT8M box with the flag last; row i has T - i % 4 valid frames."""
    g = torch.Generator().manual_seed(seed)
    lengths = T - torch.arange(n) % 4
    valid = (torch.arange(T)[None, :] < lengths[:, None]).float()  # (n, T)
    feats = (torch.rand(n, T, D, generator=g) * 3.8 - 1.9) * valid[..., None]
    y = (torch.rand(n, C, generator=g) < 0.4).float()
    y[torch.arange(n), torch.arange(n) % C] = 1.0  # every video has a label
    return torch.cat([feats, valid[..., None]], dim=-1), y


def _model(dropout=0.0):
    torch.manual_seed(0)
    return build_model("video_transformer", num_classes=C, feature_dim=D, max_frames=T, d_model=16, heads=2,
                       layers=2, dropout=dropout).eval()


def test_attention_is_a_distribution_over_valid_frames_only():
    x, _ = _video_batch()
    x[0, :, -1] = 0  # a video without any valid frame
    logits, attention = _model().forward_with_attention(x)
    assert torch.isfinite(logits).all() and len(attention) == 3  # two layers + the class pooling
    valid = x[..., -1] > 0.5
    for weights in attention:
        keys_padded = ~valid.view(len(x), *[1] * (weights.ndim - 2), T).expand_as(weights)
        assert (weights[keys_padded] == 0).all()
        row_sums = weights.sum(-1)  # (B, heads, T) per query, or (B, C) for the pooling
        rows_valid = valid.any(1).view(-1, *[1] * (row_sums.ndim - 1)).expand_as(row_sums)
        if weights.shape[-2] == T and weights.ndim == 4:  # self-attention: padded queries have zero rows
            rows_valid = rows_valid & valid[:, None, :].expand_as(row_sums)
        torch.testing.assert_close(row_sums[rows_valid], torch.ones(int(rows_valid.sum())))
        assert (row_sums[~rows_valid] == 0).all()


def test_padded_frames_do_not_change_the_logits():
    x, _ = _video_batch()
    noisy = x.clone()
    padded = noisy[..., -1] == 0
    noisy[..., :-1][padded] = torch.randn(int(padded.sum()), D) * 5
    model = _model()
    assert padded.any() and torch.equal(model(x), model(noisy))


def test_input_gradients_reach_every_valid_frame():
    x, y = _video_batch()
    x = x.requires_grad_(True)
    VIDEO.attack_loss(_model()(x), y).backward()
    frame_grad = x.grad[..., :-1].abs().sum(-1)  # (N, T)
    valid = x[..., -1].detach() > 0.5
    assert (frame_grad[valid] > 0).all() and (frame_grad[~valid] == 0).all()


def test_attention_divergence_is_zero_only_for_equal_attention():
    x, _ = _video_batch()
    model = _model()
    _, clean = model.forward_with_attention(x)
    _, same = model.forward_with_attention(x.clone())
    x_moved = x.clone()
    x_moved[..., :-1] += 0.3 * x[..., -1:]  # move the valid frames only
    _, moved = model.forward_with_attention(x_moved)
    for form in ("kl", "l2"):
        assert attention_divergence(clean, same, form).item() == 0.0
        assert attention_divergence(clean, moved, form).item() > 0.0


def test_a_art_loss_backpropagates_and_its_regulariser_vanishes_at_zero_budget():
    x, y = _video_batch()
    method, model = get_method("a_art"), _model().train()
    batch = Batch(x, y, x[..., -1], VIDEO)
    g = torch.Generator().manual_seed(0)
    no_attack = AArtConfig(train_eps=0, train_steps=2, reg_weight=5.0)
    with torch.no_grad():  # eps 0: x_adv == x, so the loss is exactly (1 + clean_weight) * BCE
        logits = model(x)
    loss = method.loss(model, batch, no_attack, g)
    assert loss.item() == pytest.approx(2 * VIDEO.loss(logits, y).item(), rel=1e-6)
    loss = method.loss(model, batch, AArtConfig(train_eps=16, train_steps=2, train_step_size=8.0), g)
    loss.backward()
    assert model.training and math.isfinite(loss.item())
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0


def test_video_attack_never_touches_the_flag_or_padded_frames():
    x, y = _video_batch()
    x_adv = VIDEO.attack(_model(), x, y, eps=64, steps=3, step_size=32.0, generator=torch.Generator().manual_seed(0))
    valid = x[..., -1] > 0.5
    assert torch.equal(x_adv[..., -1], x[..., -1]) and torch.equal(x_adv[~valid], x[~valid])
    assert (x_adv - x).abs().max() <= 64 * 4 / 255 + 1e-5 and not torch.equal(x_adv, x)


def test_video_average_precision_of_a_perfect_and_an_inverted_ranking():
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]]).numpy()
    perfect = torch.tensor([[0.9, 0.1, 0.8, 0.2], [0.1, 0.9, 0.2, 0.3]]).numpy()
    torch.testing.assert_close(torch.from_numpy(video_average_precision(perfect, labels)),
                               torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert video_average_precision(1 - perfect, labels)[1] == pytest.approx(0.25)  # the one positive ranks last


def test_worst_case_keeps_each_videos_lowest_ap_attack():
    y = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    good = torch.tensor([[3.0, 0, 0], [0, 3, 0]])  # both videos ranked perfectly
    first_fooled = torch.tensor([[0.0, 3, 0], [0, 3, 0]])
    second_fooled = torch.tensor([[3.0, 0, 0], [0, 0, 3]])
    worst = worst_per_video([good, first_fooled, second_fooled], y)
    assert torch.equal(worst, torch.tensor([[0.0, 3, 0], [0, 0, 3]]))  # per video, not per attack
    nudged = good - 0.5 * y  # same ranking (same AP), higher BCE: the tie goes to it
    assert torch.equal(worst_per_video([good, nudged], y), nudged)


def test_video_suite_reports_every_key_and_consistent_scores():
    x, y = _video_batch(16)
    cfg = AttackConfig(eps=8, steps=3, restarts=2, n_samples=0, batch_size=8, eps_sweep=[4], steps_sweep=[1],
                       device="cpu")
    summary, columns = run_video_suite(_model(), x, y, cfg, num_classes=C, device=torch.device("cpu"), task=VIDEO)
    for key in ("n", "eps", "steps", "clean_gap", "clean_hit1", "clean_map", "fgsm_gap", "pgd_gap", "pgd_hit1",
                "pgd_map", "robust_gap", "curves", "sanity", "unreliable"):
        assert key in summary
    gaps = [summary[k] for k in ("clean_gap", "fgsm_gap", "pgd_gap", "robust_gap")]
    assert all(0.0 <= g <= 1.0 for g in gaps + summary["curves"]["eps_gap"] + summary["curves"]["steps_gap"])
    curves = summary["curves"]
    assert curves["eps"] == [0, 4, 8, 255] and curves["steps"] == [1, 3]
    assert curves["eps_gap"][0] == summary["clean_gap"]
    assert summary["robust_gap"] <= min(summary["pgd_gap"], summary["fgsm_gap"]) + 1e-9
    per_video = {k: c for k, c in columns.items() if c.ndim == 1}
    assert all(c.dtype.name == "int64" and len(c) == 16 for c in per_video.values())
    assert {"clean_hit", "pgd_hit", "worst_hit"} <= set(per_video)
    scores = {k: c for k, c in columns.items() if c.ndim == 2}  # for the claims' GAP bootstrap (scores.npz)
    assert set(scores) == {"clean_scores", "pgd_scores", "worst_scores", "labels"}
    assert all(c.shape == (16, C) for c in scores.values()) and np.array_equal(scores["labels"], y.numpy())
    from attnrobust.metrics.multilabel import gap_at_k
    assert gap_at_k(scores["pgd_scores"], scores["labels"]) == pytest.approx(summary["pgd_gap"], abs=1e-6)


def test_margin_loss_ranks_every_non_label_above_every_label():
    """The pairwise margin is 0 at a perfect ranking's tie, grows as non-labels overtake labels, and is
    capped per pair; single-label is Carlini & Wagner's margin."""
    from attnrobust.tasks import MARGIN_CAP, TASKS

    y = torch.tensor([[1.0, 0, 1, 0]])
    assert float(VIDEO.margin_attack_loss(torch.tensor([[2.0, 0, 2, 0]]), y)) == -8.0  # 4 pairs, each -2
    assert float(VIDEO.margin_attack_loss(torch.tensor([[0.0, 1, 0, 1]]), y)) == 4.0  # every pair flipped by 1
    assert float(VIDEO.margin_attack_loss(torch.tensor([[0.0, 99, 0, 99]]), y)) == 4 * MARGIN_CAP
    image = TASKS["gtsrb"]
    assert float(image.margin_attack_loss(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([0]))) == -1.0


def test_video_suite_attacks_with_the_margin_loss_and_folds_it_into_the_worst_case():
    x, y = _video_batch(16)
    cfg = AttackConfig(eps=8, steps=3, n_samples=0, batch_size=8, eps_sweep=[], steps_sweep=[3], device="cpu")
    summary, columns = run_video_suite(_model(), x, y, cfg, num_classes=C, device=torch.device("cpu"), task=VIDEO)
    assert 0.0 <= summary["pgd_margin_gap"] < summary["clean_gap"]
    assert summary["robust_gap"] <= summary["pgd_margin_gap"] + 1e-9
    assert "pgd_margin_hit" in columns
