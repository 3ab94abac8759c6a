"""Glue for the thin Typer scripts in ``stages/``: one clear line for user errors."""
from __future__ import annotations

import sys

import typer

from attnrobust.errors import UserError


def make_app() -> typer.Typer:
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def run_app(app: typer.Typer) -> None:
    """Run a stage app; a :class:`UserError` prints ``error: <message>`` and exits with status 2.

    In a process of a multi-process launch the launcher prints it instead, once for all processes.
    """
    try:
        app()
    except UserError as exc:
        from attnrobust.distributed import record_user_error  # here: stages without torch stay light

        if not record_user_error(str(exc)):
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        from attnrobust.distributed import peer_stopped_on_user_error

        if peer_stopped_on_user_error():  # this process only lost that peer; the launcher prints its error
            sys.exit(1)
        raise


def dataset_dir(prepared, prepared_root, dataset: str):
    """The prepared dataset a stage reads: ``--prepared`` as given, or ``--prepared-root``/<dataset>
    (dvc.yaml's matrix stages pass the root: a matrix cannot name an experiment's dataset)."""
    from pathlib import Path

    if (prepared is None) == (prepared_root is None):
        raise UserError("pass exactly one of --prepared (a prepared dataset dir) and --prepared-root (its parent)")
    return Path(prepared) if prepared is not None else Path(prepared_root) / dataset
