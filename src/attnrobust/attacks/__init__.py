"""Threat models: FGSM, PGD (untargeted, random-targeted), the evaluation suite and its sanity checks."""
from attnrobust.units import Domain, input_bounds, levels_to_input
from attnrobust.attacks.pgd import fgsm, pgd, random_targets

__all__ = ["Domain", "fgsm", "input_bounds", "levels_to_input", "pgd", "random_targets"]
