"""Glue for the thin Typer scripts in ``stages/``: one clear line for user errors."""
from __future__ import annotations

import sys

import typer

from attnrobust.errors import UserError


def make_app() -> typer.Typer:
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def run_app(app: typer.Typer) -> None:
    """Run a stage app; a :class:`UserError` prints ``error: <message>`` and exits with status 2."""
    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
