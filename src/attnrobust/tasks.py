"""Tasks: what a dataset's inputs, labels, loss and threat model are.

Methods and attacks are written once against a :class:`Task`, so the same ``standard`` and
``pgd_at`` objectives and the same PGD serve single-label images (cross-entropy, pixels in
[0, 1]) and multi-label video features (binary cross-entropy, dequantised YouTube-8M features).

Video inputs carry their frame-validity flag as a last feature channel: ``x`` is
(N, T, D + 1). The flag travels with each sample through attack batching and compaction, the
model uses it as its padding mask, and the attack may never change it or a padded frame.
Masked-image inputs (method ``fgmask``) carry their input mask the same way, as a last channel:
``x`` is (N, 4, H, W) = [rgb, mask] (:mod:`attnrobust.models.masked`).
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnrobust.units import Domain, input_bounds, levels_to_input
from attnrobust.attacks.pgd import hits_target, misclassified, pgd
from attnrobust.errors import UserError

if TYPE_CHECKING:
    from attnrobust.experiment import Experiment


MARGIN_CAP = 10.0  # logits: a margin beyond this is broken enough; the cap stops one pair dominating


@dataclass
class Tensors:
    """A split in memory. Images: x (N, 3, H, W), y (N,), mask (N, 1, H, W) foreground.
    Video: x (N, T, D + 1) with the validity flag last, y (N, C) multi-hot float, mask (N, T)."""

    x: Tensor
    y: Tensor
    mask: Tensor
    ids: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Task:
    name: str
    domain: Domain
    multilabel: bool
    load: Callable[[Path, str], Tensors]  # (data_dir, split) -> Tensors
    model_kwargs: Callable[[Tensors], dict[str, Any]]  # constructor args derived from the training split
    mask_channel: bool = False  # images: x = [rgb, mask]; the model applies the mask, the attack never changes it
    pixels: bool = True  # False: the input carries no pixels (the mask-only floor), so nothing is perturbable

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """The training objective, averaged over the batch."""
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.cross_entropy(logits, y)

    def attack_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Summed over the batch, so a sample's attack step does not depend on the batch size."""
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        return F.cross_entropy(logits, y, reduction="sum")

    def margin_attack_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """A margin loss on the logits (summed over the batch), which a saturated cross-entropy
        cannot hide. Single-label: Carlini & Wagner's ``max_{j != y} z_j - z_y``, capped at
        :data:`MARGIN_CAP`. Multi-label: the same per (label, non-label) pair of a sample,
        ``min(z_n - z_p, cap)`` summed over the pairs: ascending it ranks every non-label above
        every label, which is what lowers GAP, while BCE may spend the budget on one label."""
        logits = logits.float()
        if self.multilabel:
            pos, neg = y > 0.5, y <= 0.5  # (N, C)
            pairs = logits[:, None, :] - logits[:, :, None]  # [i, p, n] = z_n - z_p
            valid = pos[:, :, None] & neg[:, None, :]
            return (pairs.clamp(max=MARGIN_CAP) * valid).sum()
        true = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
        return (other - true).clamp(max=MARGIN_CAP).sum()

    def score(self, logits: Tensor, y: Tensor) -> dict[str, float]:
        """Clean-data scores: top-1 accuracy, or GAP@20 and Hit@1 for multi-label video."""
        if self.multilabel:
            from attnrobust.metrics.multilabel import gap_at_k, hit_at_1

            probs, labels = torch.sigmoid(logits).numpy(), y.numpy()
            return {"gap": gap_at_k(probs, labels, 20), "hit1": hit_at_1(probs, labels)}
        return {"acc": float((logits.argmax(1) == y).float().mean()) if len(y) else float("nan")}

    def perturb_mask(self, x: Tensor) -> Tensor | None:
        """Where the attacker may perturb: video frames that exist, never the validity flag; any
        pixel of a masked image, never its mask channel (threat model A of the mask defence); nothing
        of a mask-only input, whose "pixels" are copies of its mask."""
        if self.mask_channel:
            pixels = torch.full((1, x.shape[1], 1, 1), float(self.pixels), dtype=x.dtype, device=x.device)
            pixels[:, -1] = 0
            return pixels  # (1, 3 + 1, 1, 1)
        if self.domain is not Domain.YT8M:
            return None
        valid = x[..., -1:]  # (N, T, 1)
        return torch.cat([valid.expand(*x.shape[:-1], x.shape[-1] - 1), torch.zeros_like(valid)], dim=-1)

    def foreground_perturb_mask(self, x: Tensor, foreground: Tensor) -> Tensor:
        """Threat model B of the mask defence: :meth:`perturb_mask` restricted to the annotated
        ``foreground`` (N, 1, H, W) of each image."""
        allowed, foreground = self.perturb_mask(x), foreground.to(x)
        return foreground if allowed is None else allowed * foreground

    def attack(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Tensor, steps: int,
               step_size: float | Tensor, targets: Tensor | None = None, random_start: bool = True,
               restarts: int = 1, generator: torch.Generator | None = None, early_stop: bool = False,
               loss: str = "ce", eot_samples: int = 1) -> Tensor:
        """L-inf PGD in this task's threat model; ``eps`` and ``step_size`` in 8-bit levels.

        Every sample takes every step (Madry et al.'s PGD, as adversarial training needs: a point
        misclassified at step 1 still moves on to a higher loss). ``early_stop`` stops a
        single-label sample at its first fooling iterate, which an evaluation may do. ``loss``:
        ``ce`` (:meth:`attack_loss`) or ``margin`` (:meth:`margin_attack_loss`); ``eot_samples``
        averages each step's gradient over that many forward passes (randomised models)."""
        if loss not in ("ce", "margin"):
            raise ValueError(f"attack loss {loss!r}: ce or margin")
        if targets is not None and self.multilabel:
            raise UserError(f"{self.name}: targeted attacks are defined for single-label tasks only")
        unit = levels_to_input(1, self.domain)
        if self.multilabel or not early_stop:
            success = None  # multi-label outputs have no single "fooled" event: never an early stop
        else:
            success = hits_target if targets is not None else misclassified
        return pgd(model, x, y, eps=eps * unit, steps=steps, step_size=step_size * unit, targets=targets,
                   random_start=random_start, restarts=restarts, bounds=input_bounds(self.domain),
                   loss_fn=self.attack_loss if loss == "ce" else self.margin_attack_loss, success_fn=success,
                   perturb_mask=self.perturb_mask(x), generator=generator, eot_samples=eot_samples)


def _load_images(data_dir: Path, split: str) -> Tensors:
    from attnrobust.data.prepared import read_meta, read_split, to_tensors

    raw = read_split(Path(data_dir), split)
    x, y, mask = to_tensors(raw)
    return Tensors(x, y, mask, raw.ids, read_meta(data_dir)["classes"])


def _image_kwargs(train: Tensors) -> dict[str, Any]:
    mean = train.x.mean(dim=(0, 2, 3)).tolist()
    std = train.x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    return {"num_classes": len(train.classes), "mean": mean, "std": std}


def _load_masked_images(random_masks: bool, pixels: bool = True) -> Callable[[Path, str], Tensors]:
    """Loader of x = [rgb, mask] (N, 4, H, W); ``Tensors.mask`` stays the annotated foreground.

    The mask channel is the annotated (oracle) foreground, or with ``random_masks`` a random box
    of the same area per image, drawn from a generator seeded by the split name: the same masks
    in every epoch and every run. Without ``pixels`` (the mask-only floor) the rgb channels are
    copies of the mask: the classifier sees the binary mask and nothing of the image.
    """
    def load(data_dir: Path, split: str) -> Tensors:
        from attnrobust.models.masked import random_box_masks, with_mask_channel

        images = _load_images(data_dir, split)
        keep = images.mask  # (N, 1, H, W)
        if random_masks:
            generator = torch.Generator().manual_seed(zlib.crc32(split.encode()))
            keep = random_box_masks(images.mask.sum(dim=(1, 2, 3)), images.x.shape[-1], generator)
        rgb = images.x if pixels else keep.to(images.x).expand_as(images.x).clone()
        return dataclasses.replace(images, x=with_mask_channel(rgb, keep))

    return load


def _masked_image_kwargs(train: Tensors) -> dict[str, Any]:
    """As for plain images, with the normalisation statistics of what the classifier sees: rgb * mask."""
    from attnrobust.models.masked import apply_mask

    return _image_kwargs(dataclasses.replace(train, x=apply_mask(train.x)))


def _load_video(data_dir: Path, split: str) -> Tensors:
    from attnrobust.io import read_json
    from attnrobust.video.feature_store import dequantize, read_feature_split

    raw = read_feature_split(Path(data_dir), split)
    feats = dequantize(torch.from_numpy(raw.rgb))  # (N, T, D)
    valid = (torch.arange(feats.shape[1])[None, :] < torch.from_numpy(raw.num_frames)[:, None]).float()  # (N, T)
    x = torch.cat([feats * valid[..., None], valid[..., None]], dim=-1)  # (N, T, D + 1)
    classes = read_json(Path(data_dir) / "meta.json")["classes"]
    return Tensors(x, torch.from_numpy(raw.labels).float(), valid, raw.ids, classes)


def _video_kwargs(train: Tensors) -> dict[str, Any]:
    return {"num_classes": len(train.classes), "feature_dim": train.x.shape[-1] - 1, "max_frames": train.x.shape[1]}


IMAGE = Task("image", Domain.IMAGE, False, _load_images, _image_kwargs)
VIDEO = Task("video", Domain.YT8M, True, _load_video, _video_kwargs)
TASKS: dict[str, Task] = {"gtsrb": IMAGE, "coco": IMAGE, "scenes": IMAGE, "video": VIDEO}  # dataset -> task
IMAGE_FG_MASK = Task("image_fg_mask", Domain.IMAGE, False, _load_masked_images(False), _masked_image_kwargs,
                     mask_channel=True)
IMAGE_RANDOM_MASK = Task("image_random_mask", Domain.IMAGE, False, _load_masked_images(True), _masked_image_kwargs,
                         mask_channel=True)
IMAGE_MASK_ONLY = Task("image_mask_only", Domain.IMAGE, False, _load_masked_images(False, pixels=False),
                       _masked_image_kwargs, mask_channel=True, pixels=False)
MASKED_INPUTS: dict[str, Task] = {"foreground": IMAGE_FG_MASK, "random": IMAGE_RANDOM_MASK,
                                  "only": IMAGE_MASK_ONLY}  # `mask` key -> task
TASKS_BY_NAME: dict[str, Task] = {t.name: t for t in (*TASKS.values(), *MASKED_INPUTS.values())}  # checkpoint meta


def task_for(exp: Experiment) -> Task:
    """The task experiment ``exp`` trains and is attacked in: its dataset's, or the [rgb, mask]
    variant when its method config has a ``mask`` key (method ``fgmask``), which then needs a
    model that applies the mask (``takes_mask_channel``, e.g. ``masked_cnn``)."""
    from attnrobust.models import MODELS

    mask = getattr(exp.method_config, "mask", None)
    takes_mask = getattr(MODELS.get(exp.model), "takes_mask_channel", False)
    if mask is None:
        if takes_mask:
            raise UserError(f"experiment {exp.name}: model '{exp.model}' expects [image, mask] inputs, which "
                            f"method '{exp.method}' does not provide; use method fgmask or another model")
        return TASKS[exp.dataset]
    if TASKS[exp.dataset] is not IMAGE:
        raise UserError(f"experiment {exp.name}: input masks need an image dataset, not '{exp.dataset}'")
    if not takes_mask:
        raise UserError(f"experiment {exp.name}: method '{exp.method}' feeds [image, mask] inputs; use a model "
                        f"that applies the mask (model: masked_cnn), not '{exp.model}'")
    return MASKED_INPUTS[mask]
