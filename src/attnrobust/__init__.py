"""attnrobust: attention-based defences against adversarial examples, compared honestly.

Python API::

    from attnrobust.attacks import pgd
    from attnrobust.checkpoint import load_model
    from attnrobust.data.prepared import load_prepared

    model = load_model("models/gtsrb_pgd_at")        # eval mode, images in [0, 1]
    images, labels, masks = load_prepared("data/prepared/gtsrb", "test")
    x_adv = pgd(model, images[:64], labels[:64], eps=8 / 255, steps=10, step_size=2 / 255)

Nothing is imported here, not even lazily: every stage's DVC deps are its script's import
closure (``tests/test_imports.py``), and a package ``__init__`` runs for every stage below it.
"""

__version__ = "0.1.0"
