"""The measuring half of bench/gpu_check.sh: one subcommand per step, each writing one JSON file.

    python bench/gpu_check.py env --out ENV.json                         # torch, CUDA, the GPU; ENV.mode
    python bench/gpu_check.py pipeline --work DIR --out PIPELINE.json    # tiny profile fp32 vs bf16 on CUDA
    python bench/gpu_check.py pgd --out PGD.json                         # our PGD vs torchattacks', image-steps/s
    python bench/gpu_check.py train --out TRAIN.json                     # full-profile models: images/s, memory
    python bench/gpu_check.py report --mode M ... WORK OUTDIR            # gpu_check.json and .md from WORK

`report` needs only the standard library, so it runs (with any python3) even when the install
failed. The others import torch and the project inside their functions. `--tiny` sizes a step for
the CPU, so that tests/test_gpu_check.py exercises the same code without a GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTCOME_SUFFIXES = ("_correct", "_hit")  # per_sample.csv: 0/1 verdict of one attack (video: top-1 hit)
TRAIN_IMAGES = {"gtsrb": 39209, "coco": 3950}  # real training splits (COCO-IC: 4/5 of val2017's usable images)
NUM_CLASSES = {"gtsrb": 43, "coco": 80}
LOG_TAIL_LINES = 25


def write_json(path: Path, value) -> None:
    Path(path).write_text(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def step_limit(default: float) -> float:
    """Seconds the shell gave this step (gpu_check.sh exports them), so a step can stop itself in time."""
    return float(os.environ.get("GPU_CHECK_STEP_LIMIT_S", default))


# --- env ---------------------------------------------------------------------------------------

def env_info() -> dict:
    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count()}
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1),
                    bf16_supported=torch.cuda.is_bf16_supported(), nccl=torch.distributed.is_nccl_available())
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = None
    return info


def cmd_env(args) -> None:
    info = env_info()
    write_json(args.out, info)
    Path(args.out).with_suffix(".mode").write_text("cuda" if info["cuda_available"] else "cpu")
    print(json.dumps(info))


# --- pipeline: the tiny profile twice, fp32 and bf16 ------------------------------------------

def _read_columns(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}


def compare_per_sample(a_root: Path, b_root: Path) -> dict:
    """Per attack column (``*_correct``, ``*_hit``) of every ``results/attack/<exp>/s<seed>/per_sample.csv``
    found under both roots: how many samples' verdicts differ, per run (``<exp>/s<seed>``), per column
    over all runs, and the worst (run, column)."""
    experiments, by_column = {}, {}
    for path in sorted(Path(a_root).glob("results/attack/*/s*/per_sample.csv")):
        run = f"{path.parent.parent.name}/{path.parent.name}"
        other = Path(b_root) / path.relative_to(a_root)
        if not other.is_file():
            continue
        a, b = _read_columns(path), _read_columns(other)
        if a.get("id") != b.get("id"):
            experiments[run] = {"error": "different samples attacked"}
            continue
        n = len(a["id"])
        differ = {c: sum(x != y for x, y in zip(a[c], b[c])) for c in a if c.endswith(OUTCOME_SUFFIXES) and c in b}
        experiments[run] = {"n": n, "differ": differ}
        for column, d in differ.items():
            total = by_column.setdefault(column, {"differ": 0, "n": 0, "experiments": 0})
            total["differ"] += d
            total["n"] += n
            total["experiments"] += 1
    for total in by_column.values():
        total["agreement"] = 1 - total["differ"] / total["n"] if total["n"] else None
    cells = [(e, c, d, r["n"]) for e, r in experiments.items() if "differ" in r for c, d in r["differ"].items()]
    worst = max(cells, key=lambda cell: (cell[2] / max(cell[3], 1), cell[2]), default=None)
    return {"experiments": experiments, "columns": by_column,
            "worst": None if worst is None else {"experiment": worst[0], "column": worst[1], "differ": worst[2],
                                                 "n": worst[3], "agreement": 1 - worst[2] / max(worst[3], 1)}}


def _headline(root: Path) -> dict:
    """Each experiment's headline numbers from its summary.json (accuracy or, for video, GAP)."""
    out = {}
    for path in sorted(root.glob("results/attack/*/s*/summary.json")):
        summary = json.loads(path.read_text())
        out[f"{path.parent.parent.name}/{path.parent.name}"] = {k: summary[k] for k in ("clean_acc", "pgd_acc", "robust_acc", "clean_gap",
                                                         "pgd_gap", "robust_gap", "unreliable") if k in summary}
    return out


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group may have ended already
        os.killpg(proc.pid, sig)


def _stop(procs: list[subprocess.Popen]) -> None:
    """End each `dvc repro` still running and the stage it runs (each has a process group of its own)."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        _signal_group(proc, signal.SIGTERM)
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        _signal_group(proc, signal.SIGKILL)  # a stage that outlived its dvc, or a dvc that ignored SIGTERM
        proc.wait()


def run_pipelines(repos: dict[str, Path], logs: dict[str, Path], seconds: float) -> dict:
    """`dvc repro` in every repo at once (the GPU is idle under tiny models), stopped at ``seconds``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import ran_stages, tool_env  # the end-to-end tests' own tiny-repo helpers

    t0, procs, files = time.monotonic(), {}, []
    # the shell's `timeout` sends SIGTERM to this process group only: stop the repros in their own groups too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for name, repo in repos.items():
            files.append(open(logs[name], "w"))
            procs[name] = subprocess.Popen(["dvc", "repro"], cwd=repo, env=tool_env(), stdout=files[-1],
                                           stderr=subprocess.STDOUT, start_new_session=True)
        ended = {}
        while len(ended) < len(procs) and time.monotonic() - t0 < seconds:
            for name, proc in procs.items():
                if name not in ended and proc.poll() is not None:
                    ended[name] = time.monotonic() - t0
            time.sleep(0.5)
    finally:
        _stop(list(procs.values()))
        for f in files:
            f.close()
    runs = {}
    for name, proc in procs.items():
        log = logs[name].read_text(errors="replace")
        runs[name] = {"rc": proc.returncode, "seconds": round(ended.get(name, time.monotonic() - t0), 1),
                      "timed_out": name not in ended, "stages_run": len(ran_stages(log))}
        if proc.returncode != 0:
            runs[name]["log_tail"] = log.splitlines()[-LOG_TAIL_LINES:]
    return runs


def cmd_pipeline(args) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import make_repo

    work = Path(args.work)
    repos = {p: make_repo(work / f"tiny_{p}", params={"train": {"device": args.device, "precision": p},
                                                     "attack": {"device": args.device, "precision": p}})
             for p in ("fp32", "bf16")}
    runs = run_pipelines(repos, {p: work / f"dvc_{p}.log" for p in repos}, step_limit(240) - 20)
    result = {"device": args.device, "profile": "tiny", "runs": runs,
              "headline": {p: _headline(repo) for p, repo in repos.items()},
              **compare_per_sample(repos["fp32"], repos["bf16"])}
    write_json(args.out, result)
    worst = result["worst"]
    print(f"pipeline: {len(result['experiments'])} experiments compared; worst {worst}")
    if any(r["rc"] != 0 for r in runs.values()):
        sys.exit(1)


# --- pgd: our PGD vs torchattacks' ------------------------------------------------------------

def _synthetic_images(n: int, size: int, classes: int, generator, channels: int = 3):
    """Images of ``classes`` fixed random templates plus noise: a model learns them in a few dozen steps,
    so the attack breaks some points early and others late, as on real data."""
    import torch

    templates = torch.rand(classes, channels, size, size, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    x = (0.6 * templates[y] + 0.4 * torch.rand(n, channels, size, size, generator=generator)).clamp(0, 1)
    return x, y


def _fit(model, x, y, steps: int, batch: int) -> float:
    """A few AdamW steps of PGD-3 adversarial training on (x, y); returns clean accuracy. Only so that PGD
    meets a model that is neither chance nor broken at the first step, as a defended model would be."""
    import torch
    import torch.nn.functional as F

    from attnrobust.attacks.pgd import pgd

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=torch.Generator().manual_seed(step)).to(x.device)
        x_adv = pgd(model, x[idx], y[idx], eps=8 / 255, steps=3, step_size=3 / 255)  # leaves train mode on
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_adv), y[idx]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _synchronized(fn, device):
    import torch

    def run():
        if device.type == "cuda":
            torch.cuda.synchronize()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def _torchattacks_pgd(model, x, y):
    import torchattacks

    sys.path.insert(0, str(ROOT / "bench"))
    from pgd_throughput import EPS, STEP, STEPS

    attack = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=STEPS, random_start=False)
    return lambda: attack(x, y)


def time_pgd_variants(model, x, y, device, repeats: int) -> dict:
    """Median seconds, image-steps/s and robust accuracy of each PGD variant on (x, y), alternating repeats."""
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from pgd_throughput import STEPS, ours, timed  # bench/pgd_throughput.py's attacks and budget

    runs = {"ours_no_early_stop": ours(model, x, y, False), "ours": ours(model, x, y, True)}
    try:
        runs = {"torchattacks": _torchattacks_pgd(model, x, y), **runs}
    except ImportError:
        pass  # reported as not installed
    runs = {k: _synchronized(fn, device) for k, fn in runs.items()}
    times, robust = {k: [] for k in runs}, {}
    for _ in range(repeats + 1):  # the first round warms up kernels and the allocator, and is not counted
        for key, fn in runs.items():
            seconds, x_adv = timed(fn)
            times[key].append(seconds)
            with torch.no_grad():
                robust[key] = float((model(x_adv).argmax(1) == y).float().mean())
    out = {}
    for key, values in times.items():
        median = statistics.median(values[1:])
        out[key] = {"median_s": round(median, 5), "image_steps_per_s": round(len(y) * STEPS / median, 1),
                    "robust_acc": robust[key]}
    if "torchattacks" in out:
        for key in out:
            out[key]["speedup_vs_torchattacks"] = round(out["torchattacks"]["median_s"] / out[key]["median_s"], 3)
        # the same steps from the same start: the same verdicts, up to a tie in a gradient's sign
        gap = abs(out["torchattacks"]["robust_acc"] - out["ours_no_early_stop"]["robust_acc"]) * len(y)
        out["torchattacks"]["same_robust_acc_as_ours_no_early_stop"] = bool(gap <= 1.5)
    return out


def cmd_pgd(args) -> None:
    import copy

    import torch

    from attnrobust.models import build_model
    from attnrobust.runtime import autocast_forward

    device = torch.device(args.device)
    size, width = (16, 4) if args.tiny else (64, 64)  # profiles/full.yaml: gtsrb at 64 px, 64-wide cnn
    torch.manual_seed(0)
    x, y = _synthetic_images(max(args.batches), size, 43, torch.Generator().manual_seed(0))
    x, y = x.to(device), y.to(device)
    model = build_model("cnn", num_classes=43, mean=[0.5] * 3, std=[0.25] * 3, width=width).to(device)
    clean = _fit(model, x, y, steps=args.fit_steps, batch=min(256, len(x)))
    try:
        import torchattacks
        reference = {"name": "torchattacks", "version": torchattacks.__version__}
    except ImportError:
        reference = {"name": "torchattacks", "status": "not installed"}
    result = {"device": args.device,
              "model": f"cnn width {width}, {size} px, 43 classes, PGD-3 adversarially fitted for {args.fit_steps} steps",
              "clean_acc": clean, "attack": "L-inf PGD-10, eps 8/255, step 2/255, no random start",
              "reference": reference, "runs": []}
    for precision in args.precisions:
        attacked = autocast_forward(copy.deepcopy(model), device, precision)
        for batch in args.batches:
            variants = time_pgd_variants(attacked, x[:batch], y[:batch], device, args.repeats)
            result["runs"].append({"precision": precision, "batch": batch, "variants": variants})
            print(f"pgd {precision} batch {batch}: {json.dumps(variants)}")
    write_json(args.out, result)


# --- train: full-profile models on random inputs of their size ---------------------------------

def full_profile() -> dict:
    """params.yaml with profiles/full.yaml over it, as every stage reads them under `profile: full`."""
    import yaml

    from attnrobust.config import apply_profile

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return apply_profile({**params, "profile": "full"}, ROOT / "params.yaml")


def _random_split(task, dataset: str, n: int, size: int):
    """Random images of the prepared size (with the mask channel where the task has one), random labels."""
    import torch

    from attnrobust.models.masked import with_mask_channel
    from attnrobust.tasks import Tensors

    g = torch.Generator().manual_seed(0)
    classes = NUM_CLASSES[dataset]
    x, y = torch.rand(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)
    mask = torch.zeros(n, 1, size, size)
    mask[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    if task.mask_channel:
        x = with_mask_channel(x, mask)
    return Tensors(x, y, mask, [str(i) for i in range(n)], [str(c) for c in range(classes)])


def train_throughput(name: str, params: dict, device_name: str, seconds: float, tiny: bool) -> dict:
    """Train experiment ``name`` of ``params`` through the library's own epoch loop for ``seconds``."""
    import dataclasses

    import torch

    from attnrobust.config import build
    from attnrobust.experiment import parse_experiment
    from attnrobust.methods import get_method
    from attnrobust.runtime import resolve_precision
    from attnrobust.tasks import task_for
    from attnrobust.training import TrainConfig, build_state, experiment_config, train_one_epoch

    values = params["experiments"][name]
    if tiny:  # CPU: the same code at a size that runs in seconds
        values = {**values, "model_args": {**values.get("model_args", {}), "width": 4}}
    exp = parse_experiment(name, values, f"profiles/full.yaml: experiments.{name}")
    train = {**params["train"], "device": device_name, **({"threads": 0, "batch_size": 8} if tiny else {})}
    cfg = experiment_config(exp, build(TrainConfig, train, "params.yaml + profiles/full.yaml: train"))
    size = 16 if tiny else params["masks"][exp.dataset]["image_size"]
    task, method = task_for(exp), get_method(exp.method)  # phases (begin_epoch) are not simulated
    data = _random_split(task, exp.dataset, (2 if tiny else 8) * cfg.batch_size, size)  # one "epoch": 8 batches
    device = torch.device(device_name)
    state, _ = build_state(exp, cfg, task, data, device, steps=10**7)

    def epoch() -> dict:
        return train_one_epoch(state, method, exp.method_config, data, task, cfg.batch_size, device, name)

    epoch()  # warm-up: kernels, allocator, autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, images, losses = time.perf_counter(), 0, []
    while time.perf_counter() - t0 < seconds:
        losses.append(epoch()["loss"])  # .item() per step inside: the time is the GPU's too
        images += len(data)
    elapsed = time.perf_counter() - t0
    ips = images / elapsed
    return {"model": exp.model, "method": exp.method, "model_args": exp.model_args, "image_size": size,
            "batch_size": cfg.batch_size, "precision": "bf16" if resolve_precision(cfg.precision, device) else "fp32",
            "seconds": round(elapsed, 1), "images": images,
            "images_per_s": round(ips, 1), "losses_finite": all(math.isfinite(v) for v in losses),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.type == "cuda" else None,
            "method_config": dataclasses.asdict(exp.method_config),
            "full_profile_train_min": round(cfg.epochs * TRAIN_IMAGES[exp.dataset] / ips / 60, 1)}


def cmd_train(args) -> None:
    params = full_profile()
    seconds = min(args.seconds, max(step_limit(args.seconds + 30) - 30, 1)) / len(args.experiments)
    result = {"device": args.device, "inputs": "random, of the prepared size",
              "settings": "the library's: deterministic algorithms, cudnn.benchmark off, data moved per batch",
              "experiments": {}}
    for name in args.experiments:
        result["experiments"][name] = train_throughput(name, params, args.device, seconds, args.tiny)
        print(f"train {name}: {json.dumps(result['experiments'][name])}")
        write_json(args.out, result)  # after each: a later one may be cut by the step's limit


# --- report -------------------------------------------------------------------------------------

def _junit(path: Path) -> dict | None:
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed}


def collect(work: Path) -> dict:
    """Every step's status (steps.tsv, written by the shell), its result file and the tail of its log."""
    steps = {}
    for line in (work / "steps.tsv").read_text().splitlines():
        name, status, rc, seconds, limit, reason = (line.split("\t") + [""] * 6)[:6]
        step = {"status": status, "rc": int(rc) if rc.lstrip("-").isdigit() else None,
                "seconds": int(seconds) if seconds.isdigit() else None,
                "limit_s": int(limit) if limit.isdigit() else None}
        if reason:
            step["reason"] = reason
        result = work / f"{name}.json"
        if result.is_file():
            step["result"] = json.loads(result.read_text())
        if name == "cuda_tests":
            step["result"] = _junit(work / "cuda_tests.xml")
        log = work / f"{name}.log"
        if status not in ("ok", "skipped") and log.is_file():
            step["log_tail"] = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        steps[name] = step
    return steps


def _git_state() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip() or None, "dirty": bool(status.stdout.strip())}


def cmd_report(args) -> None:
    work, out = Path(args.work), Path(args.outdir)
    report = {"mode": args.mode, "note": args.note or None, "budget_s": args.budget_s,
              "wall_s": int(time.time()) - args.started_unix, **_git_state(), "steps": collect(work)}
    report["ok"] = all(s["status"] in ("ok", "skipped") for s in report["steps"].values())
    write_json(out / "gpu_check.json", report)
    (out / "gpu_check.md").write_text(markdown(report))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")


def markdown(report: dict) -> str:
    """A short human summary; gpu_check.json has every number."""
    env = (report["steps"].get("env") or {}).get("result") or {}
    lines = [f"# GPU check ({report['mode']})", "",
             f"{env.get('gpu') or 'no GPU'}; torch {env.get('torch')} (CUDA {env.get('torch_cuda')}); "
             f"commit {report.get('commit')}{' + local changes' if report.get('dirty') else ''}; "
             f"{report['wall_s']} s of a {report['budget_s']} s budget.", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    lines += ["| step | status | seconds | limit |", "|---|---|---|---|"]
    for name, s in report["steps"].items():
        lines.append(f"| {name} | {s['status']}{': ' + s['reason'] if s.get('reason') else ''} | {s['seconds']} "
                     f"| {s['limit_s']} |")
    for name, render in (("cuda_tests", _md_tests), ("pipeline", _md_pipeline), ("pgd", _md_pgd),
                         ("train", _md_train)):
        result = (report["steps"].get(name) or {}).get("result")
        if result:
            lines += ["", *render(result)]
    return "\n".join(lines) + "\n"


def _md_tests(r: dict) -> list[str]:
    return [f"**CUDA tests**: {r['passed']} passed, {r['failures'] + r['errors']} failed, {r['skipped']} skipped",
            *[f"- failed: `{name}`" for name in r["failed"]]]


MAIN_COLUMNS = ("clean_correct", "fgsm_correct", "pgd_correct", "pgd_targeted_correct", "worst_correct",
                "clean_hit", "pgd_hit", "worst_hit")  # the suite's headline verdicts (video: hits)


def _md_pipeline(r: dict) -> list[str]:
    """The headline columns and any column with a disagreement; the rest in one line."""
    runs = ", ".join(f"{p}: rc {v['rc']} in {v['seconds']} s ({v['stages_run']} stages)" for p, v in r["runs"].items())
    shown = {c: v for c, v in sorted(r["columns"].items()) if c in MAIN_COLUMNS or v["differ"]}
    rest = [v for c, v in r["columns"].items() if c not in shown]
    lines = [f"**Tiny profile on {r['device']}, fp32 vs bf16** ({runs}): per-sample verdicts of "
             f"{len(r['experiments'])} experiments, each trained and attacked in its precision. Tiny models are "
             "barely trained, so this shows that every stage runs; tests/test_cuda.py compares a trained one.", "",
             "| column | agreement | differing | samples |", "|---|---|---|---|"]
    lines += [f"| {c} | {v['agreement']:.3f} | {v['differ']} | {v['n']} |" for c, v in shown.items()]
    if not shown:
        lines.append("| (no experiment finished in both runs) | | | |")
    if rest:
        lines += ["", f"{len(rest)} more columns (per-head attacks, threat model B) agree on every sample."]
    if r["worst"]:
        w = r["worst"]
        lines += ["", f"Worst: `{w['experiment']}` `{w['column']}`, {w['differ']} of {w['n']} differ."]
    return lines


def _md_pgd(r: dict) -> list[str]:
    lines = [f"**PGD** ({r['model']}, clean acc {r['clean_acc']:.3f}; {r['attack']}; reference: "
             f"{r['reference'].get('version') or r['reference'].get('status')}):", "",
             "| precision | batch | variant | median s | image-steps/s | vs torchattacks | robust acc |",
             "|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        for key, v in run["variants"].items():
            lines.append(f"| {run['precision']} | {run['batch']} | {key} | {v['median_s']} | {v['image_steps_per_s']} "
                         f"| {v.get('speedup_vs_torchattacks', '-')} | {v['robust_acc']:.4f} |")
    return lines


def _md_train(r: dict) -> list[str]:
    lines = [f"**Training throughput** ({r['inputs']}):", "",
             "| experiment | model | px | batch | precision | images/s | peak GiB | full profile (min) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in r["experiments"].items():
        lines.append(f"| {name} | {e['model']} | {e['image_size']} | {e['batch_size']} | {e['precision']} "
                     f"| {e['images_per_s']} | {e['peak_memory_gib']} | {e['full_profile_train_min']} |")
    return lines


# --- command line ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env").add_argument("--out", required=True, help="result JSON; OUT.mode says cuda or cpu")
    p = sub.add_parser("pipeline")
    p.add_argument("--device", default="cuda")
    p.add_argument("--work", required=True, help="folder for the two tiny repos and their logs")
    p.add_argument("--out", required=True, help="result JSON")
    p = sub.add_parser("pgd")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fit-steps", type=int, default=60)
    p.add_argument("--tiny", action="store_true", help="16 px, width 4: the CPU check of this code")
    p.add_argument("--out", required=True, help="result JSON")
    p = sub.add_parser("train")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seconds", type=float, default=120.0, help="in all, shared by the experiments")
    # the largest model (S3TA, 3M parameters, random-targeted PGD-7 at 64 px) and the most work per image
    # (masked cnn at COCO's 128 px, PGD-7)
    p.add_argument("--experiments", nargs="+", default=["gtsrb_s3ta", "coco_fgmask_at"])
    p.add_argument("--tiny", action="store_true", help="width 4, 16 px, batch 8: the CPU check of this code")
    p.add_argument("--out", required=True, help="result JSON")
    p = sub.add_parser("report")
    p.add_argument("--mode", choices=["cuda", "cpu"], required=True)
    p.add_argument("--note", default="", help="the shell's one-line verdict (no CUDA)")
    p.add_argument("--budget-s", type=int, required=True)
    p.add_argument("--started-unix", type=int, required=True)
    p.add_argument("work")
    p.add_argument("outdir")
    args = parser.parse_args(argv)
    commands = {"env": cmd_env, "pipeline": cmd_pipeline, "pgd": cmd_pgd, "train": cmd_train, "report": cmd_report}
    commands[args.command](args)


if __name__ == "__main__":
    main()
