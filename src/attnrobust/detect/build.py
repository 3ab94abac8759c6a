"""detector@<name>: distil the student and fit the detector beside a frozen teacher; save and load both.

Output directory ``models/detectors/<name>/``:

* ``student.pt``: the student, in the project's checkpoint format (:mod:`attnrobust.checkpoint`,
  loads with ``weights_only=True``);
* ``detector.pt``: the logistic head (feature mean, std, weights, bias), the feature names and
  the spec that built it, plain tensors and JSON types (``weights_only=True`` as well);
* ``detector.json``: what the fit saw, readable (counts, training AUROC, student agreement,
  weights by feature).

The train split is cut once, with ``seed``, into a distillation part and a held-out part; the
student never sees the held-out images, on which the detector is fitted, so teacher-student
features there look as they will on unseen test images.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnrobust.checkpoint import load_blob, model_from_checkpoint, read_checkpoint, save_checkpoint
from attnrobust.data.prepared import load_prepared, read_meta
from attnrobust.detect.config import DetectorSpec, RuntimeConfig
from attnrobust.detect.detector import IQAKDDetector, LogisticHead, feature_names, fit_detector
from attnrobust.detect.distill import agreement, distill_student
from attnrobust.errors import UserError
from attnrobust.io import replace_dir, write_json
from attnrobust.runtime import resolve_device, seed_everything

FORMAT = 1


def load_teacher(teacher_dir: Path, spec: DetectorSpec) -> tuple[nn.Module, dict]:
    """The frozen classifier of ``spec.teacher`` in eval mode, and its checkpoint's model spec.

    Refuses a missing checkpoint, one trained for another experiment or dataset, and masked-input
    models (the detector looks at plain RGB images).
    """
    ckpt = read_checkpoint(teacher_dir)
    meta = ckpt["meta"]
    if meta.get("experiment") != spec.teacher:
        raise UserError(f"{teacher_dir}: checkpoint belongs to experiment '{meta.get('experiment')}', not the "
                        f"teacher '{spec.teacher}'; point --teacher at models/{spec.teacher}")
    if meta.get("dataset") != spec.dataset:
        raise UserError(f"{teacher_dir}: teacher '{spec.teacher}' was trained on '{meta.get('dataset')}', but the "
                        f"detector's dataset is '{spec.dataset}'; make detectors.<name>.dataset match the teacher")
    if meta.get("task", "image") != "image":
        raise UserError(f"{teacher_dir}: teacher '{spec.teacher}' takes '{meta['task']}' inputs; iqa_kd needs a "
                        f"classifier of plain RGB images (method standard or pgd_at, model cnn)")
    teacher = model_from_checkpoint(ckpt)
    for p in teacher.parameters():
        p.requires_grad_(False)  # frozen: Feng & Cai never retrain the classifier
    return teacher, ckpt["model"]


def _check_dataset(prepared_dir: Path, spec: DetectorSpec) -> None:
    found = read_meta(prepared_dir).get("dataset")
    if found != spec.dataset:
        raise UserError(f"{prepared_dir}: prepared data of '{found}', but the detector's dataset is '{spec.dataset}'")


def holdout_split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(distillation rows, held-out rows) of an n-sample split, both sorted; seeded."""
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(holdout * n)))
    return np.sort(order[k:]), np.sort(order[:k])


def build_detector(name: str, spec: DetectorSpec, runtime: RuntimeConfig, teacher_dir: Path, prepared_dir: Path,
                   out_dir: Path) -> dict:
    """Distil the student, fit the detector and write ``out_dir``; returns the fit summary."""
    teacher, teacher_spec = load_teacher(teacher_dir, spec)
    _check_dataset(prepared_dir, spec)
    generator = seed_everything(spec.seed, runtime.threads)
    device = resolve_device(runtime.device)
    x, y, _ = load_prepared(prepared_dir, "train")
    distil_rows, held_rows = holdout_split(len(y), spec.fit.holdout, spec.seed)
    student, student_spec = distill_student(teacher, x[distil_rows], spec.student,
                                            teacher_kwargs=teacher_spec["kwargs"], generator=generator,
                                            device=device, desc=f"{name} student")
    head = LogisticHead(len(feature_names(spec.fit.features)))
    detector = IQAKDDetector(teacher.to(device), student.to(device), head, spec.fit.features)
    info = fit_detector(detector, x[held_rows], y[held_rows], spec.fit, spec.corruptions, generator, device,
                        where=f"detectors.{name}")
    info["student_agreement_heldout"] = agreement(teacher, student, x[held_rows], device)
    info.update({"detector": name, "teacher": spec.teacher, "dataset": spec.dataset,
                 "n_distill": len(distil_rows), "n_heldout": len(held_rows)})
    meta = {"detector": name, "teacher": spec.teacher, "dataset": spec.dataset, "task": "image",
            "role": "iqa_kd student", "spec": dataclasses.asdict(spec)}
    with replace_dir(out_dir) as staging:
        save_checkpoint(staging / "student.pt", student.cpu(), student_spec, meta)
        torch.save({"format": FORMAT, "detector": name, "teacher": spec.teacher, "dataset": spec.dataset,
                    "features": spec.fit.features, "feature_names": list(feature_names(spec.fit.features)),
                    "head": {k: v.cpu() for k, v in detector.head.state_dict().items()},
                    "spec": dataclasses.asdict(spec)}, staging / "detector.pt")
        write_json(staging / "detector.json", info)
    print(f"[detector {name}] student agreement (held-out) {info['student_agreement_heldout']:.3f}, "
          f"fit on {info['n_positive']} positives / {info['n_negative']} negatives, "
          f"training AUROC {info['train_auroc']:.3f}", file=sys.stderr)
    return info


def load_detector(detector_dir: Path, name: str, teacher: nn.Module, spec: DetectorSpec) -> IQAKDDetector:
    """The fitted detector of ``name`` around ``teacher``; refuses one built for another name,
    teacher or feature set (re-run detector@<name>)."""
    path = Path(detector_dir) / "detector.pt"
    blob = load_blob(path, "iqa_kd detector", FORMAT, f"not found; run `dvc repro detector@{name}` first")
    found = (blob["detector"], blob["teacher"], blob["features"])
    if found != (name, spec.teacher, spec.fit.features):
        raise UserError(f"{path}: built for detector '{found[0]}' (teacher '{found[1]}', features {found[2]}), not "
                        f"'{name}' (teacher '{spec.teacher}', features {spec.fit.features}); "
                        f"re-run `dvc repro detector@{name}`")
    student = model_from_checkpoint(read_checkpoint(Path(detector_dir) / "student.pt"))
    head = LogisticHead(len(blob["feature_names"]))
    head.load_state_dict(blob["head"])
    return IQAKDDetector(teacher, student, head, blob["features"]).eval()
