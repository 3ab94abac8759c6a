"""Stage code: every stage script's import closure within the project, one hash per file.

Each other stage lists its script's file here, ``code/<script>.json``, as its code dependency,
instead of the 20-50 modules the script can import: the lock entries of 118 stages listing those
modules one by one were 70% of a 640 KB dvc.lock, which every stage of a `dvc repro` parses and
rewrites (about 10 s a stage here). This stage depends on all of ``src/`` and ``stages/``, so any
edit re-runs it (a second or two), and DVC then re-runs exactly the stages whose closure the edit
touched: a file's hash changes only that closure's JSON. The closure is read from the source
(:mod:`attnrobust.codegraph`: imports at module level and inside functions, package
``__init__`` files included).
"""
import hashlib
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.codegraph import closure
from attnrobust.io import replace_dir, write_json

app = make_app()


def fingerprint(script: Path, src: Path) -> dict:
    """``{"script": ..., "files": {path: sha256}}`` for ``script`` and every project file it can
    import, paths relative to the working directory (the repository root, where DVC runs stages)."""
    here = Path.cwd()
    found = {Path(script).resolve(), *closure(Path(script).resolve(), Path(src).resolve())}
    files = sorted(p.relative_to(here).as_posix() for p in found)
    return {"script": Path(script).as_posix(),
            "files": {f: hashlib.sha256((here / f).read_bytes()).hexdigest() for f in files}}


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="Folder to (re)write: one <script>.json per stage script.")],
    stages: Annotated[Path, typer.Option(help="The stage scripts.")] = Path("stages"),
    src: Annotated[Path, typer.Option(help="The folder holding the attnrobust package.")] = Path("src"),
) -> None:
    """Write code/<script>.json for every stages/*.py (this script's own included)."""
    scripts = sorted(stages.glob("*.py"))
    with replace_dir(out) as staging:
        for script in scripts:
            write_json(staging / f"{script.stem}.json", fingerprint(script, src))
    typer.echo(f"code: the import closures of {len(scripts)} stage scripts -> {out}")


if __name__ == "__main__":
    run_app(app)
