"""Several processes, on one machine or several, through PyTorch's own engines: torchrun's launcher
and process groups (DistributedDataParallel lives in :mod:`attnrobust.training`). No home-made layer.

How a stage uses it:

* ``nproc > 1`` in its params section and not yet under torchrun: :func:`launch` runs the same stage
  script with the same options under torchrun, ``nproc`` processes per machine, and the stage exits
  with their status. DVC sees one command. One machine (``--standalone``, a free port) unless
  ``ATTNROBUST_TORCHRUN_ARGS`` holds torchrun's options for several (``--nnodes``, ``--node-rank``,
  ``--master-addr``, ``--master-port`` or ``--rdzv-*``).
* every process runs the stage inside :func:`process_group`: NCCL with one GPU per process (the
  ``LOCAL_RANK``-th, :func:`attnrobust.runtime.resolve_device`) on CUDA, gloo on the CPU.
* work is split with :func:`shard` (a contiguous share of rows) and put back in order with
  :func:`gather_rows`; process 0 (:func:`is_main`) writes the outputs.

Outside torchrun every helper is the identity of one process (a shard is everything, a gather
returns its input), so the one-process path runs exactly the code it ran before.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from attnrobust.errors import UserError

TORCHRUN_ARGS = "ATTNROBUST_TORCHRUN_ARGS"  # torchrun options replacing --standalone (several machines)
_ERROR_DIR = "ATTNROBUST_ERROR_DIR"  # set by launch(): where a process leaves its user error
_TORCHRUN_LOGGERS = ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")


def under_torchrun() -> bool:
    """True in a process that torchrun started (it sets ``LOCAL_RANK`` and ``WORLD_SIZE``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def _joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank: 0 for a single process."""
    if _joined():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if under_torchrun() else 0


def world_size() -> int:
    """Processes in the process group; 1 outside :func:`process_group`."""
    return dist.get_world_size() if _joined() else 1


def is_main() -> bool:
    """The process that evaluates per epoch, logs and writes the stage's outputs."""
    return rank() == 0


def needs_launch(nproc: int) -> bool:
    """Several processes asked for (``nproc`` per machine, or several machines through
    ``ATTNROBUST_TORCHRUN_ARGS``) and this is not yet one of them."""
    return (nproc > 1 or bool(os.environ.get(TORCHRUN_ARGS))) and not under_torchrun()


def launch(script: Path, args: Sequence[str], nproc: int, device: torch.device) -> int:
    """Run ``script args`` in ``nproc`` processes per machine under torchrun; returns the exit status.

    This is torchrun itself (``torch.distributed.run``: same options, agent and workers), called in
    this process rather than as a child, so that a failed worker comes back with its own exit
    status instead of torchrun's traceback and status 1: a user error in any process is printed
    once, as ``error: ...``, and the stage exits with 2, as a one-process stage does.
    """
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise UserError(f"nproc: {nproc} processes need {nproc} GPUs, this machine has "
                        f"{torch.cuda.device_count()}; lower nproc or use device: cpu")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    options = shlex.split(os.environ.get(TORCHRUN_ARGS, "")) or ["--standalone"]
    try:
        torchrun_args = parse_args([f"--nproc-per-node={nproc}", *options, str(script)])
    except SystemExit as exc:  # argparse has printed what it did not understand
        raise UserError(f"{TORCHRUN_ARGS}={os.environ.get(TORCHRUN_ARGS)!r}: not valid torchrun options "
                        f"(see `torchrun --help`)") from exc
    # Set after parsing: torchrun's parser would read a script option such as --nproc as an
    # abbreviation of its own --nproc-per-node.
    torchrun_args.training_script_args = [str(a) for a in args]
    with (tempfile.TemporaryDirectory(prefix="attnrobust-errors-") as errors, _restored_environ(),
          _restored_signals(), _quiet_torchrun()):
        os.environ[_ERROR_DIR] = errors
        try:
            run(torchrun_args)
        except ChildFailedError as exc:
            return _report_failure(exc, Path(errors), nproc)
        except SignalException as exc:  # the stage itself was stopped (Ctrl-C, dvc, a scheduler)
            return 128 + int(exc.sigval)
    return 0


def _report_failure(exc, errors: Path, nproc: int) -> int:
    """One line per distinct user error left by the processes (status 2); else the first failure."""
    messages = dict.fromkeys(p.read_text() for p in sorted(errors.glob("rank*.txt")))
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    if messages:
        return 2
    failed_rank, failure = exc.get_first_failure()
    if failure.exitcode < 0:
        how, status = f"signal {signal.Signals(-failure.exitcode).name}", 128 - failure.exitcode
    else:
        how, status = f"exit status {failure.exitcode}", failure.exitcode or 1
    print(f"error: process {failed_rank} of the torchrun launch ({nproc} per machine) failed with {how}; "
          f"its output is above", file=sys.stderr)
    return status


@contextlib.contextmanager
def _restored_environ() -> Iterator[None]:
    """torchrun's entry point sets variables for its workers (OMP_NUM_THREADS); keep them out of the caller."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _restored_signals() -> Iterator[None]:
    """torchrun's agent turns SIGTERM, SIGINT, SIGHUP and SIGQUIT into exceptions that stop its
    workers; give the caller its own handlers back afterwards."""
    signals = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT]
    saved = [signal.getsignal(s) for s in signals]
    try:
        yield
    finally:
        for sig, handler in zip(signals, saved):
            if handler is not None:  # None: not set from Python, nothing to give back
                signal.signal(sig, handler)


@contextlib.contextmanager
def _quiet_torchrun() -> Iterator[None]:
    """The agent's own log lines (thread banner, 'failed (exitcode: 2)', SIGTERM to the others) repeat
    what :func:`_report_failure` says in one line; errors that stop the launch still raise."""
    names = [n for n in logging.Logger.manager.loggerDict if n.startswith(_TORCHRUN_LOGGERS)]
    loggers = [logging.getLogger(n) for n in {*names, *_TORCHRUN_LOGGERS}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def record_user_error(message: str) -> bool:
    """In a process started by :func:`launch`, leave a user error for the launcher to print once
    for all processes, and return True; elsewhere return False (the caller prints it)."""
    folder = os.environ.get(_ERROR_DIR)
    if not folder or not under_torchrun():
        return False
    Path(folder, f"rank{rank()}.txt").write_text(message)
    return True


def peer_stopped_on_user_error() -> bool:
    """In a process started by :func:`launch`: another process has left a user error (so a failed
    collective here is its consequence, not news)."""
    folder = os.environ.get(_ERROR_DIR)
    return bool(folder) and under_torchrun() and any(Path(folder).glob("rank*.txt"))


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block (a no-op outside torchrun): NCCL on CUDA, with
    this process on ``device`` (its ``LOCAL_RANK``-th GPU), gloo on the CPU. On the way out it
    waits until every process got through the block, then leaves."""
    if not under_torchrun() or _joined():
        yield
        return
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        yield
    except UserError as exc:
        record_user_error(str(exc))  # before leaving: the others must find it when they find this process gone
        raise
    else:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def shard(n: int) -> slice:
    """This process's contiguous share of ``n`` rows; shares differ in size by at most one and,
    concatenated in rank order, are ``range(n)``. One process: all of it."""
    size, r = world_size(), rank()
    return slice(r * n // size, (r + 1) * n // size)


def all_gather(obj: Any) -> list[Any]:
    """``obj`` from every process, in rank order (picklable objects; small ones: per-sample results)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_rows(local: Tensor) -> Tensor:
    """Every process's rows of :func:`shard`, concatenated in rank order on the CPU; one process: ``local``."""
    if world_size() == 1:
        return local
    return torch.cat(all_gather(local.cpu()))


def broadcast(obj: Any) -> Any:
    """Process 0's ``obj`` in every process (e.g. one shuffling order, one set of random targets)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_processes(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over the processes (e.g. a loss total and a sample count)."""
    return [float(sum(column)) for column in zip(*all_gather(list(values)))]


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Every process takes process 0's parameters and buffers, in place."""
    if world_size() == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def rank_seed(seed: int) -> int:
    """Process 0 keeps ``seed``; every other process gets its own, derived from (``seed``, rank), so
    random starts, random targets and dropout differ between processes as between samples."""
    r = rank()
    return seed if r == 0 else int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
