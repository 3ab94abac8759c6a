"""Is bf16 autocast faster than fp32 on this CPU? One attack step (forward + input gradient) per model.

    python bench/cpu_bf16.py [--batch 256] [--repeats 5] [--out bench/results/cpu_bf16.json]

For each of the default run's image models (``cnn`` at the GTSRB width, ``s3ta``, ``protoattn``;
fresh weights: speed does not depend on them) on a batch of 32 px images, the median time of one
PGD step's work (forward, summed cross-entropy, gradient w.r.t. the input) in fp32 and under CPU
bf16 autocast (:func:`attnrobust.runtime.autocast_forward`, fp32 outputs), alternating the two so
that the machine's noise hits both alike. Prints the ISA flags that matter (avx512_bf16 gives bf16
dot products, amx_bf16 bf16 matrix tiles) and the fp32 / bf16 time ratio per model: above 1 means
bf16 is faster here. ``precision: auto`` stays fp32 on CPUs (README, "One GPU"); this says what
switching would buy on the machine it runs on.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from attnrobust.models import build_model
from attnrobust.runtime import autocast_forward

MODELS = {  # name -> constructor args (the default profile's GTSRB sizes)
    "cnn": {"name": "cnn", "width": 16},
    "s3ta": {"name": "s3ta", "width": 16, "glances": 4, "temperature": "cosine", "cosine_scale": 5,
             "key_basis": False},
    "protoattn": {"name": "protoattn"},
}


def isa_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags.split(":")[1].split() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))


def step_seconds(model, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    xa = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xa), y, reduction="sum")
    torch.autograd.grad(loss, xa)
    return time.perf_counter() - start


def measure(name: str, spec: dict, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    fp32 = build_model(spec["name"], num_classes=43, mean=[0.5] * 3, std=[0.25] * 3, **kwargs).eval()
    bf16 = autocast_forward(copy.deepcopy(fp32), torch.device("cpu"), "bf16")
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 43, (batch,))
    for model in (fp32, bf16):  # warm-up: oneDNN picks its kernels on the first calls
        step_seconds(model, x, y)
    times = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        times["fp32"].append(step_seconds(fp32, x, y))
        times["bf16"].append(step_seconds(bf16, x, y))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": name, "batch": batch, "fp32_s": round(med["fp32"], 4), "bf16_s": round(med["bf16"], 4),
            "fp32_over_bf16": round(med["fp32"] / med["bf16"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [measure(name, spec, args.batch, args.repeats) for name, spec in MODELS.items()]
    result = {"isa": isa_flags(), "threads": torch.get_num_threads(), "rows": rows}
    print(f"ISA: {', '.join(result['isa']) or 'unknown'}; {result['threads']} threads")
    print("| model | batch | fp32 s | bf16 s | fp32 / bf16 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['fp32_s']} | {r['bf16_s']} | {r['fp32_over_bf16']} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
