"""attnrobust: attention-based defences against adversarial examples, compared honestly.

Python API::

    import attnrobust
    from attnrobust.attacks import pgd
    from attnrobust.data import load_prepared

    model = attnrobust.load_model("models/gtsrb_pgd_at")        # eval mode, images in [0, 1]
    images, labels, masks = load_prepared("data/prepared/gtsrb", "test")
    x_adv = pgd(model, images[:64], labels[:64], eps=8 / 255, steps=10, step_size=2 / 255)
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # lazy, so `import attnrobust` stays cheap and does no device or file work
    if name == "load_model":
        from attnrobust.checkpoint import load_model

        return load_model
    raise AttributeError(name)


__all__ = ["load_model"]
