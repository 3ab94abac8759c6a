"""The shared evaluation suite: one honest set of attacks for every image model.

Runs, on a fixed seeded subset of the test split: clean accuracy; FGSM; PGD-k untargeted;
PGD-k random-targeted (reported as accuracy on the true label, as Zoran et al. and Xie et al.
report it, plus the target hit rate); an eps sweep (always extended with eps 0 and the
whole-box budget); a steps sweep; and the per-sample worst case over every attack whose budget
is within the headline eps. Sanity checks (:mod:`attnrobust.attacks.sanity`) run every time.

``attack.suite: standard`` (the default) adds AutoAttack's attacks
(:mod:`attnrobust.attacks.autoattack`) at the headline eps with AutoAttack-standard's settings,
folded into the per-sample worst case: ``attack.aa_attacks`` of APGD-CE, APGD-T (targeted DLR,
9 target classes), FAB-T and Square, in that order. The default is APGD-CE + APGD-T, the two
that carry AutoAttack-standard's strength (on the models measured, FAB-T and Square broke no point
beyond them, at about 2x their time: README); with Square in the list the black-box check runs too (Square
must not beat every white-box attack). With ``attack.aa_from: survivors`` AutoAttack attacks only the
points our attacks left standing (the worst case is a per-sample AND, so attacking the others
changes nothing but the time); ``clean`` runs it on every clean-correct point, which also gives
AutoAttack's own accuracy (``autoattack_acc``). Either way ``pgd_suite_acc`` is the worst case of
our attacks alone and ``attack_strength`` says how many points AutoAttack broke beyond them: the
measure of how much a PGD-only evaluation would have overstated ``robust_acc``. ``fast`` is our
attacks only.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from attnrobust import distributed
from attnrobust.attacks.autoattack import ATTACKS as AA_ATTACKS, combine_shares, run_autoattack, skip_reason
from attnrobust.units import Domain, levels_to_input, whole_box_levels
from attnrobust.attacks.engine import Engine, ThreatModel, top1
from attnrobust.attacks.pgd import random_targets
from attnrobust.attacks.sanity import check, monotone, run_sanity_checks, square_check, tolerance

THREAT_MODEL = ("A: L-inf perturbation anywhere in the image; a masked model applies its mask after the "
                "perturbation (background perturbation wiped)")
THREAT_MODEL_FG_ONLY = "B: L-inf perturbation restricted to the annotated foreground (background left clean)"


@dataclass(frozen=True)
class AttackConfig:
    eps: int  # headline budget in 8-bit levels (8 = 8/255)
    steps: int  # PGD steps at the headline budget
    step_factor: float = 2.5  # step size = step_factor * eps / steps (Madry et al.'s rule)
    restarts: int = 1  # random restarts of PGD (only still-robust points restart)
    random_start: bool = True  # attacks defined with a random start in the eps-ball (PGD) take one; false = none
    n_samples: int = 100  # test samples attacked, drawn once with `seed`; 0 = the whole split
    batch_size: int = 256  # samples per attack batch
    eps_sweep: list[int] = field(default_factory=lambda: [2, 4, 8, 16])  # levels; 0 and whole box added
    steps_sweep: list[int] = field(default_factory=lambda: [5, 10, 20])  # PGD steps at `eps`
    seed: int = 0  # seeds the subset, random starts and random targets
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when present
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # model forward passes: auto = bf16 autocast on CUDA, else fp32
    # The S3TA computational race (attacks/race.py): random-targeted PGD at `eps` over glances x steps.
    race_glances: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # unrolls of models with `glances`
    race_steps: list[int] = field(default_factory=lambda: [10, 50])  # attack steps; [] = no race
    race_samples: int = 64  # seeded subset of the attacked samples; 0 = all of them
    race_step_size: float = 1.0  # levels; step = max(race_step_size, eps / steps) (Xie et al.)
    attention_examples: int = 8  # samples kept as pictures: attention.npz (race), examples.npz (image tasks)
    suite: Literal["fast", "standard"] = "standard"  # standard = also AutoAttack-standard (image tasks)
    aa_from: Literal["survivors", "clean"] = "survivors"  # AutoAttack on the points our attacks left | all
    aa_attacks: list[str] = field(default_factory=lambda: ["apgd_ce", "apgd_t"])  # of apgd_ce, apgd_t, fab_t, square
    aa_square_queries: int = 1000  # Square's query budget (AutoAttack-standard: 5000)
    aa_n_samples: int = 0  # AutoAttack on a seeded subset of the attacked samples; 0 = all of them
    eot_samples: int = 1  # EOT: forward passes averaged per gradient (randomised models); 1 = off
    # Nakka & Salzmann's table (attacks/heads.py): FGSM, BIM, PGD, MIM on every head of image models
    head_eps: list[int] = field(default_factory=lambda: [2, 8])  # levels; [] = off
    head_steps: int = 10  # steps of BIM, PGD and MIM
    # single-head experiments that get the same attacks, as baselines; models with heads always do
    head_baselines: list[str] = field(default_factory=list)
    nproc: int = 1  # processes (GPUs) per machine; > 1 = under torchrun, each attacks a share of the samples

    def __post_init__(self) -> None:
        if self.eps < 0 or any(e < 0 for e in self.eps_sweep):
            raise ValueError("eps must be >= 0 (8-bit levels)")
        if self.steps < 1 or any(s < 1 for s in self.steps_sweep) or self.restarts < 1:
            raise ValueError("steps, steps_sweep and restarts must be >= 1")
        if self.step_factor <= 0 or self.batch_size < 1 or self.n_samples < 0:
            raise ValueError("need step_factor > 0, batch_size >= 1, n_samples >= 0")
        if any(g < 1 for g in self.race_glances) or any(s < 1 for s in self.race_steps):
            raise ValueError("race_glances and race_steps must be >= 1")
        if self.race_samples < 0 or self.race_step_size <= 0 or self.attention_examples < 0:
            raise ValueError("need race_samples >= 0, race_step_size > 0, attention_examples >= 0")
        if self.aa_square_queries < 1 or self.aa_n_samples < 0 or self.eot_samples < 1:
            raise ValueError("need aa_square_queries >= 1, aa_n_samples >= 0, eot_samples >= 1")
        if any(e < 1 for e in self.head_eps) or self.head_steps < 1:
            raise ValueError("need head_eps >= 1 (levels) and head_steps >= 1")
        if self.nproc < 1:
            raise ValueError("need nproc >= 1")
        if self.suite not in ("fast", "standard") or self.aa_from not in ("survivors", "clean"):
            raise ValueError("suite must be fast or standard; aa_from survivors or clean")
        if not self.aa_attacks or set(self.aa_attacks) - set(AA_ATTACKS):
            raise ValueError(f"aa_attacks {self.aa_attacks}: a non-empty subset of apgd_ce, apgd_t, fab_t, square")


def select_subset(n_total: int, n_samples: int, seed: int) -> np.ndarray:
    """Indices of the attacked subset: a seeded permutation's first ``n_samples`` (sorted)."""
    if n_samples == 0 or n_samples >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n_samples])


class _Plan:
    """The suite's attacks on (x, y) through the engine: per-sample correctness, every row in order.

    ``perturb_mask`` (broadcastable to ``x``) is where the attacker may perturb; None = anywhere.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, cfg: AttackConfig, device, domain: Domain,
                 perturb_mask: Tensor | None = None):
        self.engine = Engine(model, x, y, cfg, device=device, threat=ThreatModel(domain, perturb_mask))
        self.x, self.y, self.cfg = x, y, cfg

    def predict(self, x: Tensor) -> Tensor:
        return self.engine.read(x, top1)

    def pgd_predict(self, eps_levels: Tensor, steps: int, index: Tensor, targets: Tensor | None = None) -> Tensor:
        """Per-sample top-1 prediction under PGD; ``eps_levels``/``index``/``targets`` are aligned rows."""
        return self.engine.attack(index, eps=eps_levels, steps=steps, targets=targets, readout=top1)

    def pgd_correct(self, eps_levels: Tensor, steps: int, index: Tensor) -> Tensor:
        return self.pgd_predict(eps_levels, steps, index) == self.y[index]

    def eps_sweep(self, eps_values: list[int], clean_correct: Tensor) -> Tensor:
        """(len(eps_values), n) correctness under PGD at each budget; eps 0 is the clean input."""
        n = len(self.y)
        attacked = [e for e in eps_values if e > 0]  # all budgets in one stacked batch stream
        sweep_eps = torch.tensor(attacked, dtype=torch.float32).repeat_interleave(n)
        sweep = self.pgd_correct(sweep_eps, self.cfg.steps, torch.arange(n).repeat(len(attacked)))
        return torch.cat([clean_correct[None], sweep.view(len(attacked), n)])

    def fgsm_correct(self) -> Tensor:
        """FGSM: one step of eps from the clean input."""
        pred = self.engine.attack(eps=self.cfg.eps, steps=1, step_factor=1.0, random_start=False, readout=top1)
        return pred == self.y


def _acc(correct: Tensor) -> float:
    return float(correct.float().mean()) if len(correct) else float("nan")


def per_sample_worst(columns: list[Tensor]) -> Tensor:
    """Robust under every attack: the per-sample AND (Carlini et al.). Its mean is the robust
    accuracy; the min over attacks of each attack's accuracy would overstate it."""
    return torch.stack([c.bool() for c in columns]).all(0)


def attack_strength(ours: Tensor, autoattack_correct: Tensor) -> dict:
    """How much AutoAttack adds to our attacks, on the points it ran on (``autoattack_correct`` is
    -1 elsewhere): ``value`` = [share of them that our attacks left standing and AutoAttack broke,
    that count, points]. ``passed`` when the share is within the tolerance, i.e. our attacks alone
    were already as strong as AutoAttack. Not a gradient-masking check (``robust_acc`` has
    AutoAttack folded in either way), so it does not mark the result unreliable; a failure says
    the PGD-only columns (``pgd_acc``, the curves) overstate robustness."""
    ran = autoattack_correct >= 0
    n = int(ran.sum())
    extra = int((ours[ran].bool() & (autoattack_correct[ran] == 0)).sum())
    share = extra / n if n else 0.0
    tol = tolerance(n) if n else 0.0
    return check(share <= tol + 1e-9, [round(share, 4), extra, n],
                 f"AutoAttack breaks at most {tol:.3f} of the points beyond our attacks")


def _autoattack(model, x: Tensor, y: Tensor, cfg: AttackConfig, num_classes: int, device, domain: Domain,
                perturb_mask: Tensor | None, standing: Tensor) -> tuple[dict | str, dict[str, Tensor]]:
    """AutoAttack-standard on ``aa_n_samples`` of the subset: (summary or why skipped, columns of
    1/0, with -1 for samples outside its subset). Several processes each attack a share of it.
    ``standing`` (n,) bool: the points our attacks left; with ``aa_from: survivors`` only those."""
    eps = levels_to_input(cfg.eps, domain)
    reason = skip_reason(x, y, num_classes=num_classes, eps=eps, perturb_mask=perturb_mask)
    if reason is None and domain is not Domain.IMAGE:
        reason = f"skipped: {domain.value} inputs are not images in [0, 1]"
    if reason is not None:
        return reason, {}
    rows = torch.from_numpy(select_subset(len(y), cfg.aa_n_samples, cfg.seed))
    mine = rows[distributed.shard(len(rows))]
    mask = perturb_mask if perturb_mask is None or perturb_mask.shape[0] == 1 else perturb_mask[mine]
    summary, cols = run_autoattack(model, x[mine], y[mine], eps=eps, num_classes=num_classes, device=device,
                                   batch_size=cfg.batch_size, seed=cfg.seed, square_queries=cfg.aa_square_queries,
                                   eot_samples=cfg.eot_samples, perturb_mask=mask,
                                   start=standing[mine] if cfg.aa_from == "survivors" else None,
                                   attacks=tuple(cfg.aa_attacks))
    if distributed.world_size() > 1:
        summary = combine_shares(distributed.all_gather(summary))
        cols = {k: distributed.gather_rows(v) for k, v in cols.items()}
    full = {k: torch.full((len(y),), -1, dtype=torch.long) for k in cols}
    for k, v in cols.items():
        full[k][rows] = v.long()
    return summary, full


def run_suite(model: nn.Module, x: Tensor, y: Tensor, cfg: AttackConfig, *, num_classes: int,
              device: torch.device, domain: Domain = Domain.IMAGE,
              perturb_mask: Tensor | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Attack ``model`` on (x, y); returns (summary, per-sample columns). ``x`` is already the subset.

    ``perturb_mask`` (broadcastable to ``x``) keeps input channels that are not pixels, such as
    a mask channel, out of the attacker's reach; None = every input value may be perturbed.
    """
    t0 = time.perf_counter()
    model = model.to(device).eval()
    run = _Plan(model, x, y, cfg, device, domain, perturb_mask)
    n, everyone = len(y), torch.arange(len(y))
    at_eps = torch.full((n,), float(cfg.eps))
    cols: dict[str, Tensor] = {"label": y.clone(), "clean_correct": run.predict(x) == y}
    cols["fgsm_correct"] = run.fgsm_correct()
    cols["pgd_correct"] = run.pgd_correct(at_eps, cfg.steps, everyone)
    cols["target"] = distributed.broadcast(random_targets(y, num_classes, run.engine.generator))  # one per sample
    targeted_pred = run.pgd_predict(at_eps, cfg.steps, everyone, cols["target"])
    cols["pgd_targeted_correct"] = targeted_pred == y
    cols["target_hit"] = targeted_pred == cols["target"]
    eps_values = sorted(set(cfg.eps_sweep) | {0, cfg.eps, whole_box_levels(domain)})
    sweep = run.eps_sweep(eps_values, cols["clean_correct"])
    steps_values = sorted(set(cfg.steps_sweep) | {cfg.steps})
    by_steps = torch.stack([run.pgd_correct(at_eps, s, everyone) for s in steps_values])
    within = [cols["clean_correct"], cols["fgsm_correct"], cols["pgd_correct"], cols["pgd_targeted_correct"],
              *by_steps, *[sweep[i] for i, e in enumerate(eps_values) if e <= cfg.eps]]
    ours = per_sample_worst(within)
    aa_summary, aa_cols = _autoattack(model, x, y, cfg, num_classes, device, domain, perturb_mask, ours) \
        if cfg.suite == "standard" else (None, {})
    cols.update(aa_cols)
    aa_within = [aa_cols["autoattack_correct"] != 0] if aa_cols else []  # -1 = outside AutoAttack's subset
    cols["pgd_suite_correct"] = ours
    cols["worst_correct"] = per_sample_worst([ours] + aa_within)
    curves = {"eps": eps_values, "eps_acc": [_acc(c) for c in sweep],
              "steps": steps_values, "steps_acc": [_acc(c) for c in by_steps]}
    perturbable = perturb_mask is None or bool(perturb_mask.any())
    checks = run_sanity_checks(model, x, y, cols, curves, cfg, num_classes=num_classes, device=device,
                               whole_box=whole_box_levels(domain), perturbable=perturbable)
    if "square_correct" in aa_cols:  # the black-box check: Square ran last, on what the white box left
        white_box = [aa_cols[f"{a}_correct"] != 0 for a in AA_ATTACKS if a != "square" and a in cfg.aa_attacks]
        checks["square_no_stronger_than_white_box"] = square_check(per_sample_worst(within + white_box[-1:]),
                                                                   aa_cols["square_correct"])
    summary = {
        "n": n, "eps": cfg.eps, "steps": cfg.steps, "restarts": cfg.restarts, "threat_model": THREAT_MODEL,
        "clean_acc": _acc(cols["clean_correct"]), "fgsm_acc": _acc(cols["fgsm_correct"]),
        "pgd_acc": _acc(cols["pgd_correct"]), "pgd_targeted_acc": _acc(cols["pgd_targeted_correct"]),
        "targeted_success": _acc(cols["target_hit"]),
        "pgd_suite_acc": _acc(ours), "robust_acc": _acc(cols["worst_correct"]), "curves": curves,
        "sanity": checks, "unreliable": not all(c["passed"] for c in checks.values()),
        "suite": cfg.suite,  # no wall-clock time in outputs: they must be byte-identical on a re-run
    }
    if aa_cols:
        summary["attack_strength"] = attack_strength(ours, aa_cols["autoattack_correct"])
        summary["aa_extra_broken"] = summary["attack_strength"]["value"][0]
    if isinstance(aa_summary, dict) and cfg.aa_from == "clean":
        summary["autoattack_acc"] = aa_summary["acc"]  # on its own subset: autoattack.n samples
    if aa_summary is not None:
        summary["autoattack"] = aa_summary
    aa_text = f"AA {summary['autoattack_acc']:.3f} " if "autoattack_acc" in summary else ""
    print(f"[attack] n={n} clean {summary['clean_acc']:.3f} fgsm {summary['fgsm_acc']:.3f} "
          f"pgd {summary['pgd_acc']:.3f} pgd-T {summary['pgd_targeted_acc']:.3f} {aa_text}"
          f"worst {summary['robust_acc']:.3f}"
          f"{' UNRELIABLE' if summary['unreliable'] else ''} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    return summary, {k: v.numpy().astype(np.int64) for k, v in cols.items()}


def run_foreground_only(model: nn.Module, x: Tensor, y: Tensor, cfg: AttackConfig, full: dict,
                        full_columns: dict[str, np.ndarray], *, perturb_mask: Tensor, device: torch.device,
                        domain: Domain = Domain.IMAGE) -> tuple[dict, dict[str, np.ndarray]]:
    """Threat model B of the mask defence: PGD at ``eps`` and the eps sweep, perturbing only where
    ``perturb_mask`` is 1 (the annotated foreground; broadcastable to ``x``).

    ``full``/``full_columns`` are :func:`run_suite`'s results (threat model A). Returns them
    extended with ``pgd_acc_fg_only``, ``robust_acc_fg_only`` (worst case over the B attacks
    within ``eps``), the curve ``eps_acc_fg_only`` and the B per-sample columns. A
    foreground-only perturbation is also an A perturbation, so the B attacks join A's per-sample
    worst case (``robust_acc``, ``worst_correct``): A's headline never exceeds B's. (Without this,
    two random starts of equal strength, as A and B are for an oracle-masked model, differ by a
    few samples.) The eps curves stay one per threat model, as measured.
    """
    t0 = time.perf_counter()
    model = model.to(device).eval()
    run = _Plan(model, x, y, cfg, device, domain, perturb_mask)
    n, eps_values = len(y), full["curves"]["eps"]
    cols = {"pgd_fg_only_correct": run.pgd_correct(torch.full((n,), float(cfg.eps)), cfg.steps, torch.arange(n))}
    sweep = run.eps_sweep(eps_values, run.predict(x) == y)
    within = [cols["pgd_fg_only_correct"], *[sweep[i] for i, e in enumerate(eps_values) if e <= cfg.eps]]
    cols["worst_fg_only_correct"] = per_sample_worst(within)
    cols["worst_correct"] = per_sample_worst([torch.from_numpy(full_columns["worst_correct"]),
                                              cols["worst_fg_only_correct"]])
    curve = [_acc(c) for c in sweep]
    tol = tolerance(n)
    checks = {"fg_only_eps_monotone": check(monotone(curve, tol), curve,
                                             f"B: accuracy non-increasing in eps (tol {tol:.3f})")}
    summary = {**full, "robust_acc": _acc(cols["worst_correct"]), "threat_model_fg_only": THREAT_MODEL_FG_ONLY,
               "pgd_acc_fg_only": _acc(cols["pgd_fg_only_correct"]),
               "robust_acc_fg_only": _acc(cols["worst_fg_only_correct"]),
               "curves": {**full["curves"], "eps_acc_fg_only": curve}, "sanity": {**full["sanity"], **checks}}
    summary["unreliable"] = not all(c["passed"] for c in summary["sanity"].values())
    print(f"[attack] B (foreground only): pgd {summary['pgd_acc_fg_only']:.3f} "
          f"worst {summary['robust_acc_fg_only']:.3f}; A worst with B folded in {summary['robust_acc']:.3f} "
          f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    return summary, {**full_columns, **{k: v.numpy().astype(np.int64) for k, v in cols.items()}}
