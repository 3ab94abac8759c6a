"""What produced a result: package versions, Python, the device and its capabilities, threads,
the precision actually used, and the git commit.

Every ``train@``/``attack@``/``detector@``/``detect@`` stage writes ``provenance.json`` next to
its outputs; ``metrics`` gathers them into ``metrics/env.json`` (git-tracked, so `dvc metrics
diff` shows when two branches ran on different machines or versions) and the report prints them
under "Produced by". Nothing here is a time: a stage re-run on the same machine, commit and
inputs writes the same bytes, and provenance is never a DVC dependency, so it re-runs nothing.
"""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

# the packages whose versions can change a number
PACKAGES = ("torch", "torchvision", "numpy", "dvc", "pyautoattack", "pycocotools", "decord")
# CPU features that change which kernels run (and so the last bits of every float)
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# the code whose state is recorded as clean or dirty next to the commit. Not params.yaml nor
# profiles/: they are the run's parameters, which DVC records per stage in dvc.lock, and
# `dvc exp run -S` writes them, so listing them made every experiment "dirty".
CODE_PATHS = ("src", "stages", "dvc.yaml")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The CPU model and the instruction sets among :data:`ISA_FLAGS` it has (Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "isa": ",".join(f for f in ISA_FLAGS if f in flags) or "none listed"}


def git_state(root: Path = Path(".")) -> dict[str, str | bool]:
    """HEAD's commit and whether the code under :data:`CODE_PATHS` differs from it ("unknown"
    outside a git checkout)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "unknown", "git_dirty": False}
    dirty = git("status", "--porcelain", "--", *CODE_PATHS)
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def collect(device: str, precision: str, threads: int) -> dict:
    """Provenance of a stage that ran on ``device`` (``cpu`` | ``cuda``) with forward passes in
    ``precision`` (``fp32`` | ``bf16``, what ran, not what was asked) and ``threads`` CPU threads."""
    import torch

    env: dict = {"python": platform.python_version(), **package_versions(), **cpu_info(),
                 "device": device, "precision": precision, "threads": threads}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda or "unknown"
        env["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    env["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the kernels torch picked
    return {**env, **git_state()}


def describe(env: dict) -> str:
    """One line for READMEs and logs: ``AMD EPYC (avx2), 2 threads, cpu fp32; torch 2.14.1, ...``."""
    device = f"{env.get('gpu', '')} (CUDA {env.get('cuda', '')})" if env.get("device") == "cuda" else "cpu"
    versions = ", ".join(f"{name} {env[name]}" for name in PACKAGES if name in env)
    return (f"{env.get('cpu')} ({env.get('isa')}), {env.get('threads')} threads, {device} {env.get('precision')}; "
            f"Python {env.get('python')}, {versions}")


FILE = "provenance.json"


def write(out_dir: Path, device, precision: str, upstream: Path | None = None) -> dict:
    """Write ``out_dir/provenance.json`` for a stage that ran on ``device`` (a torch.device) with
    the ``precision`` setting (``auto`` resolved here to what actually ran). ``upstream`` is the
    output folder of the stage that made its input model (``models/<exp>``): its provenance is
    kept under ``"train"``, so an evaluation also says how its model was trained. Returns it."""
    import torch

    from attnrobust.io import read_json, write_json
    from attnrobust.runtime import resolve_precision

    used = "bf16" if resolve_precision(precision, device) is torch.bfloat16 else "fp32"
    env = collect(device.type, used, torch.get_num_threads())
    if upstream is not None and (Path(upstream) / FILE).is_file():
        env["train"] = {k: v for k, v in read_json(Path(upstream) / FILE).items() if k != "train"}
    write_json(Path(out_dir) / FILE, env)
    return env


MIXED = "mixed"  # the stages summarised did not agree on this field


def summarize(envs: list[dict]) -> dict:
    """One shallow record for ``metrics/env.json``: each field's value where every stage agrees,
    ``"mixed"`` where they do not (the report lists which stage had what); commits to 12 digits."""
    out = {}
    for key in sorted({k for env in envs for k in env if not isinstance(env[k], dict)}):
        values = {env.get(key) for env in envs}
        value = values.pop() if len(values) == 1 else MIXED
        out[key] = value[:12] if key == "git_commit" and value not in (MIXED, "unknown", None) else value
    return out


def gather(dirs: list[Path]) -> dict[str, dict]:
    """``{"evaluation": ..., "training": ...}``: :func:`summarize` over the provenance in ``dirs``
    (attack and detect outputs) and over the training provenance they carry."""
    from attnrobust.io import read_json

    envs = [read_json(Path(d) / FILE) for d in dirs if (Path(d) / FILE).is_file()]
    return {"evaluation": summarize(envs), "training": summarize([e["train"] for e in envs if "train" in e])}
