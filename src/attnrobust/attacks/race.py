"""The S3TA "computational race": robust accuracy over (model glances) × (attack steps).

Zoran et al. report top-1 accuracy on the true label under random-targeted PGD of growing
strength, for models unrolled for more or fewer attention steps (spec/methods.md §0.1, §1).
:func:`run_race` measures that grid on a seeded subset (``race_samples``) of the suite's samples:

* glances come from ``attack.race_glances`` for models with a ``glances`` attribute (set at test
  time, no retraining); a model without one (the ``pgd_at`` baseline) gets one row, glances 0;
* attack steps come from ``attack.race_steps``; the step size follows Xie et al.,
  ``max(race_step_size, eps / steps)`` levels, so a longer attack also travels further;
* one random target per sample, shared by every cell, and random starts seeded per steps value,
  so cells at the same steps differ only in the model's glances;
* a transfer check: the examples made against the model as trained are also evaluated at every
  other glances. A model unrolled longer than in training can hide its gradients (white-box
  accuracy above the transferred one): ``race_whitebox_beats_transfer`` then fails, and
  ``worst_acc`` (per sample, the stronger of the two) is the honest figure.

For models with ``forward_with_attention`` it also measures how much the maps depend on the
input (``race["attention"]``: between images and under attack, per glance) and captures them on a
few clean and adversarial examples (``attention.npz`` for the report).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from attnrobust import distributed
from attnrobust.units import Domain
from attnrobust.attacks.engine import Engine, ThreatModel, top1
from attnrobust.attacks.pgd import random_targets
from attnrobust.attacks.sanity import check, monotone, tolerance
from attnrobust.metrics.attention import map_shift, map_variation, peak_mass
from attnrobust.runtime import progress

NO_GLANCES = 0  # the glances value recorded for a model without attention steps


@contextlib.contextmanager
def with_glances(model: nn.Module, glances: int) -> Iterator[nn.Module]:
    """Unroll ``model`` for ``glances`` attention steps inside the block; its own count is restored."""
    if glances < 1:
        raise ValueError(f"glances must be >= 1, not {glances}")
    trained = model.glances
    model.glances = glances
    try:
        yield model
    finally:
        model.glances = trained


def race_step_size(eps: float, steps: int, min_step: float) -> float:
    """Xie et al.'s step size in levels: ``min_step``, raised to ``eps/steps`` for short attacks."""
    return max(min_step, eps / steps)


def _rate(hits: Tensor) -> float:
    return float(hits.float().mean())


def _unroll(model: nn.Module, glances: int):
    return with_glances(model, glances) if glances != NO_GLANCES else contextlib.nullcontext(model)


def race_grid(model: nn.Module, x: Tensor, y: Tensor, targets: Tensor, cfg, *, device,
              domain: Domain = Domain.IMAGE, strongest: dict | None = None) -> dict:
    """Accuracy on the true label for every (glances, steps) cell, white-box and transferred.

    ``cfg`` is the :class:`~attnrobust.attacks.suite.AttackConfig`. ``acc`` is the white-box
    attack on the model unrolled for that many glances; ``transfer_acc`` evaluates there the
    examples made against the model as trained (a white-box attack weaker than this transfer is
    a gradient-masking sign); ``worst_acc`` is the per-sample worst of the two. All are nested
    lists indexed ``[glances][steps]``, as is ``target_hit`` (white-box); ``worst_correct`` holds
    the per-sample outcomes behind ``worst_acc`` (``[glances][steps][sample]``, 0/1, the race's
    samples in order), for the paired test of the race's trend. ``strongest``, if given, receives
    the examples of the longest attack on the model as trained (``"x_adv"``).
    """
    trained = getattr(model, "glances", NO_GLANCES)
    glances = list(cfg.race_glances) if hasattr(model, "glances") else [NO_GLANCES]
    cells: dict[str, list[list[float]]] = {k: [[] for _ in glances] for k in
                                            ("acc", "transfer_acc", "worst_acc", "target_hit", "worst_correct")}
    engine = Engine(model, x, y, cfg, device=device, threat=ThreatModel(domain), desc="race")
    for steps in progress(cfg.race_steps, desc="race", unit="attack steps"):
        adv = {g: _race_attack(engine, g, targets, steps) for g in {*glances, trained}}
        if strongest is not None and steps == max(cfg.race_steps):
            strongest["x_adv"] = adv[trained]
        for i, g in enumerate(glances):
            with _unroll(model, g):
                pred, pred_transfer = (engine.read(adv[s], top1) for s in (g, trained))
            cells["acc"][i].append(_rate(pred == y))
            cells["transfer_acc"][i].append(_rate(pred_transfer == y))
            cells["worst_acc"][i].append(_rate((pred == y) & (pred_transfer == y)))
            cells["worst_correct"][i].append(((pred == y) & (pred_transfer == y)).int().tolist())
            cells["target_hit"][i].append(_rate(pred == targets))
    return {"glances": glances, "steps": list(cfg.race_steps), "trained_glances": trained, **cells}


def _race_attack(engine: Engine, glances: int, targets: Tensor, steps: int) -> Tensor:
    """The race's random-targeted attack on the model unrolled for ``glances``: x_adv (CPU). The same
    random starts for every glances (a generator seeded per steps value), Xie et al.'s step size."""
    cfg = engine.cfg
    with _unroll(engine.target, glances):
        return engine.attack(eps=cfg.eps, steps=steps, step_size=race_step_size(cfg.eps, steps, cfg.race_step_size),
                             targets=targets,
                             generator=torch.Generator().manual_seed(distributed.rank_seed(cfg.seed + steps)))


def race_sanity(race: dict, n: int) -> dict[str, dict]:
    """More attack steps never help the defender, and white-box beats transfer from the trained
    glances, at every glances (tol as in attacks.sanity)."""
    tol = tolerance(n)
    pairs = [(a, t) for row_a, row_t in zip(race["acc"], race["transfer_acc"]) for a, t in zip(row_a, row_t)]
    return {
        "race_steps_monotone": check(all(monotone(row, tol) for row in race["acc"]), race["acc"],
                                      f"race: accuracy non-increasing in attack steps at every glances "
                                      f"(tol {tol:.3f})"),
        "race_whitebox_beats_transfer": check(all(a <= t + tol for a, t in pairs), race["transfer_acc"],
                                               "race: white-box accuracy <= accuracy under examples transferred "
                                               f"from the trained glances + tol, in every cell (tol {tol:.3f})"),
    }


def attention_examples(model: nn.Module, x: Tensor, y: Tensor, targets: Tensor, cfg, *, device,
                       domain: Domain = Domain.IMAGE) -> dict[str, np.ndarray]:
    """Attention maps of ``model`` (its own glances) on clean and random-targeted PGD inputs.

    The attack is the race's strongest (``max(race_steps)``). Arrays: ``x_clean``/``x_adv``
    (k, 3, H, W), ``attention_clean``/``attention_adv`` (k, glances, heads, h, w), ``label``,
    ``target``, ``pred_clean``, ``pred_adv`` (k,), and ``glances``, ``eps``, ``steps`` (scalars).
    """
    steps = max(cfg.race_steps)
    x_adv = _race_attack(Engine(model, x, y, cfg, device=device, threat=ThreatModel(domain), desc="race"),
                         model.glances, targets, steps)
    model.eval()
    with torch.no_grad():
        logits_clean, maps_clean = model.forward_with_attention(x.to(device))
        logits_adv, maps_adv = model.forward_with_attention(x_adv.to(device))
    return {"x_clean": x.numpy(), "x_adv": x_adv.numpy(),
            "attention_clean": maps_clean.cpu().numpy(), "attention_adv": maps_adv.cpu().numpy(),
            "label": y.numpy(), "target": targets.numpy(),
            "pred_clean": logits_clean.argmax(1).cpu().numpy(), "pred_adv": logits_adv.argmax(1).cpu().numpy(),
            "glances": np.array(model.glances), "eps": np.array(cfg.eps), "steps": np.array(steps)}


def attention_variation(model: nn.Module, x: Tensor, x_adv: Tensor, batch_size: int, device) -> dict[str, list]:
    """How much the maps of ``model`` (its own glances) depend on the input, per glance, on the
    race's samples (attnrobust.metrics.attention): ``tv_between_images`` (0: one map for every
    image), ``tv_clean_vs_adv`` (the map's move under the race's longest attack) and ``peak_mass``."""
    def maps(inputs: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([model.forward_with_attention(inputs[s:s + batch_size].to(device))[1].cpu()
                              for s in range(0, len(inputs), batch_size)])

    clean, adv = maps(x), maps(x_adv)
    return {"tv_between_images": map_variation(clean), "tv_clean_vs_adv": map_shift(clean, adv),
            "peak_mass": peak_mass(clean)}


def run_race(model: nn.Module, x: Tensor, y: Tensor, cfg, *, num_classes: int, device,
             domain: Domain = Domain.IMAGE) -> tuple[dict, dict[str, np.ndarray]]:
    """The race grid on a seeded subset of ``cfg.race_samples`` of (x, y) and, for attention models,
    the attention maps of ``cfg.attention_examples`` of them. Returns (race summary, npz arrays or {})."""
    n = len(y) if cfg.race_samples == 0 else min(cfg.race_samples, len(y))
    order = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(len(y))[:n])  # unsorted: any k are random
    x, y = x[order], y[order]
    model = model.to(device).eval()
    targets = random_targets(y, num_classes, torch.Generator().manual_seed(cfg.seed))
    strongest: dict = {}
    race = {"n": len(y), "eps": cfg.eps, "restarts": cfg.restarts,
            "step_size": f"max({cfg.race_step_size}, eps/steps) levels",
            **race_grid(model, x, y, targets, cfg, device=device, domain=domain, strongest=strongest)}
    race["sanity"] = race_sanity(race, len(y))
    if hasattr(model, "forward_with_attention") and len(y) > 1:
        race["attention"] = attention_variation(model, x, strongest["x_adv"], cfg.batch_size, device)
    attention = {}
    if hasattr(model, "forward_with_attention") and cfg.attention_examples:
        k = cfg.attention_examples
        attention = attention_examples(model, x[:k], y[:k], targets[:k], cfg, device=device, domain=domain)
    return race, attention
