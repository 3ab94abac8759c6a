"""A few adversarial examples per image model, kept for the report's gallery and attention figures.

The suite's per-sample CSV says *whether* an attack worked; a reader also wants to *see* what it
did: the perturbation, where a model looks before and after, and whether a targeted attack draws
the target class (Zoran et al. report human-recognisable target-class structure against S3TA).
:func:`adversarial_examples` attacks a fixed, seeded handful of the attacked samples with the
suite's own untargeted PGD and random-targeted PGD at ``attack.eps`` (same steps, step size,
restarts and threat model A), so the pictures show the attacks whose numbers the report quotes.

Models with ``attention_maps(x) -> (N, h, w)`` in [0, 1] (S3TA's glances, a masked model's input
mask, prototype attention) also get their maps on the clean and both adversarial inputs.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from attnrobust.attacks.engine import Engine, ThreatModel, top1
from attnrobust.attacks.pgd import random_targets
from attnrobust.units import Domain


def example_index(n_total: int, k: int, seed: int) -> np.ndarray:
    """``k`` distinct rows of ``n_total``, seeded (sorted): the same samples in every run."""
    k = min(k, n_total)
    return np.sort(np.random.default_rng([seed, 1]).permutation(n_total)[:k])


@torch.no_grad()
def _maps(model: nn.Module, x: Tensor) -> np.ndarray:
    return model.attention_maps(x).float().clamp(0, 1).cpu().numpy()


def adversarial_examples(model: nn.Module, x: Tensor, y: Tensor, cfg, *, num_classes: int, device,
                         domain: Domain = Domain.IMAGE, perturb_mask: Tensor | None = None,
                         classes: list[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays for ``examples.npz`` from ``cfg.attention_examples`` seeded samples of (x, y).

    ``cfg`` is the :class:`~attnrobust.attacks.suite.AttackConfig`; ``perturb_mask`` is the task's
    (e.g. a mask channel the attacker may not change). Returns ``x_clean``, ``x_adv`` (untargeted
    PGD), ``x_targeted`` (random-targeted PGD), each (k, C, H, W) as the model takes them; ``label``,
    ``target``, ``pred_clean``, ``pred_adv``, ``pred_targeted`` (k,); ``index`` (rows of x);
    ``eps``, ``steps`` (scalars); ``x_target_example``/``has_target_example`` (a clean input of each
    target class, :func:`target_examples`); ``classes`` (names, when given); and with ``attention_maps``
    ``attention_clean``, ``attention_adv``, ``attention_targeted`` (k, h, w). Empty when k is 0.
    """
    index = example_index(len(y), cfg.attention_examples, cfg.seed)
    if len(index) == 0:
        return {}
    rows = torch.from_numpy(index)
    mask = None if perturb_mask is None else torch.broadcast_to(perturb_mask, x.shape)[rows]
    generator = torch.Generator().manual_seed(cfg.seed)
    targets = random_targets(y[rows], num_classes, generator)
    engine = Engine(model, x[rows], y[rows], cfg, device=device, threat=ThreatModel(domain, mask),
                    generator=generator, shard=False)  # process 0 alone draws the pictures
    inputs = {"clean": x[rows], "adv": engine.attack(eps=cfg.eps, steps=cfg.steps),
              "targeted": engine.attack(eps=cfg.eps, steps=cfg.steps, targets=targets)}
    out: dict[str, np.ndarray] = {"index": index, "label": y[rows].numpy(), "target": targets.numpy(),
                                  "eps": np.array(cfg.eps), "steps": np.array(cfg.steps)}
    for name, inp in inputs.items():
        out[f"x_{name}"] = inp.numpy()
        out[f"pred_{name}"] = engine.read(inp, top1).numpy()
    if hasattr(model, "attention_maps"):
        out.update({f"attention_{name}": _maps(model, inp.to(device)) for name, inp in inputs.items()})
    out["x_target_example"], out["has_target_example"] = target_examples(x, y, targets)
    if classes:
        out["classes"] = np.asarray(classes, dtype=str)
    return out


def target_examples(x: Tensor, y: Tensor, targets: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each target class, a clean input of that class (the first one in ``x``), so a reader can
    hold a targeted perturbation against what the class looks like; zeros and False where ``x`` has none."""
    found = [(y == t).nonzero() for t in targets.tolist()]
    rows = [int(f[0]) if len(f) else -1 for f in found]
    exemplars = torch.stack([x[r] if r >= 0 else torch.zeros_like(x[0]) for r in rows])
    return exemplars.numpy(), np.array([r >= 0 for r in rows])
