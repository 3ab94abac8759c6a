"""Dependencies that cannot drift: every stage's DVC ``deps`` cover what its script imports, and
the library's import graph points one way (:mod:`attnrobust.codegraph` reads it from the source)."""
import json
import sys
from pathlib import Path

import pytest

from attnrobust import codegraph as imports
from conftest import ROOT


@pytest.fixture(scope="module")
def stage_deps() -> dict[str, tuple[Path, list[str]]]:
    """stage name -> (its script, its deps as repository-relative paths), resolved by DVC itself."""
    from dvc.repo import Repo

    out = {}
    with Repo(str(ROOT)) as repo:
        for stage in repo.index.stages:
            script = next(part for part in stage.cmd.split() if part.startswith("stages/"))
            out[stage.addressing] = (ROOT / script, [str(d.def_path).rstrip("/") for d in stage.deps
                                                     if not getattr(d, "params", None)])
    return out


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == dep or rel.startswith(dep + "/") for dep in deps)


def _code_stage():
    """stages/code.py as a module (its name would otherwise be the standard library's `code`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("code_stage", ROOT / "stages" / "code.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_stage_depends_on_its_whole_import_closure(stage_deps, monkeypatch):
    """A fix to GAP@20 (metrics/multilabel.py) must re-run the video attacks, a fix to the npz
    writer (io.py) every stage that writes shards: DVC re-runs a stage only for its listed deps.
    Every stage lists ``code/<its script>.json``, which the ``code`` stage (depending on all of
    src/ and stages/) writes with a hash of every file of the script's closure; the committed
    files are what this code gives."""
    deps = dict(stage_deps)
    code_script, code_deps = deps.pop("code")
    assert code_script == ROOT / "stages" / "code.py" and sorted(code_deps) == ["src", "stages"]
    wrong = {name: d for name, (script, d) in deps.items()
             if f"code/{script.stem}.json" not in d or any(x.startswith(("src", "stages")) for x in d)}
    assert not wrong, f"list code/<script>.json, and no file of src/ or stages/, as a stage's code: {wrong}"
    monkeypatch.chdir(ROOT)
    fingerprint = _code_stage().fingerprint
    for script in sorted({script for script, _ in deps.values()}):
        fresh = fingerprint(script.relative_to(ROOT), Path("src"))
        assert set(fresh["files"]) == {p.relative_to(ROOT).as_posix()
                                       for p in [script, *imports.closure(script, ROOT / "src")]}
        committed = json.loads((ROOT / "code" / f"{script.stem}.json").read_text())
        assert committed == fresh, f"code/{script.stem}.json is stale: run `dvc repro code` and commit code/"


def test_the_code_stage_hashes_each_closure_so_an_edit_changes_only_the_scripts_that_import_it(tmp_path,
                                                                                              monkeypatch):
    fingerprint = _code_stage().fingerprint
    pkg = tmp_path / "src" / "attnrobust"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("X = 1\n")
    (pkg / "b.py").write_text("def f():\n    from attnrobust.a import X\n    return X\n")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "one.py").write_text("import attnrobust.b\n")
    (tmp_path / "stages" / "two.py").write_text("import attnrobust\n")
    monkeypatch.chdir(tmp_path)
    one, two = fingerprint(Path("stages/one.py"), Path("src")), fingerprint(Path("stages/two.py"), Path("src"))
    assert sorted(one["files"]) == ["src/attnrobust/__init__.py", "src/attnrobust/a.py", "src/attnrobust/b.py",
                                    "stages/one.py"]
    assert sorted(two["files"]) == ["src/attnrobust/__init__.py", "stages/two.py"]
    (pkg / "a.py").write_text("X = 2\n")
    assert fingerprint(Path("stages/one.py"), Path("src")) != one  # a.py is in one's closure (inside a function)
    assert fingerprint(Path("stages/two.py"), Path("src")) == two  # not in two's: two's stages do not re-run


def test_closure_follows_function_level_imports_and_package_inits(tmp_path):
    """The closure is what Python would run: imports inside functions and every package ``__init__``."""
    script = ROOT / "stages" / "attack.py"
    found = {p.relative_to(ROOT).as_posix() for p in imports.closure(script)}
    assert "src/attnrobust/__init__.py" in found and "src/attnrobust/attacks/__init__.py" in found
    assert "src/attnrobust/metrics/multilabel.py" in found  # imported inside a function of the video suite
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from attnrobust.io import save_npz\n")
    assert {p.name for p in imports.closure(lazy)} >= {"io.py", "__init__.py"}
    typing_only = tmp_path / "typing_only.py"
    typing_only.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import attnrobust.io\n")
    assert imports.closure(typing_only) == set()  # never runs, so no dependency


def test_no_import_cycles():
    assert imports.cycles() == []


# The rooms of the library, lowest first. A module may import its own room and rooms below it,
# never one above (at module level or inside a function). Shared constants (quantisation,
# tolerances) sit at the bottom in `units`, which imports nothing of the project.
LAYERS = [
    {"units", "errors", "codegraph"},
    {"config", "io", "runtime", "distributed", "cli", "provenance"},
    {"data", "masks", "video"},  # formats, generators and prepared-data readers
    {"models", "metrics"},  # architectures; scores that read only numbers and files
    {"checkpoint"},
    {"attacks"},  # threat models: the attacks, the suite, sanity checks
    {"tasks"},  # what a dataset's inputs, loss and threat model are
    {"methods", "experiment"},
    {"training", "evaluation", "detect"},  # the stages' cores
    {"report"},
]


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(module: str) -> int:
    room = _room(module)
    if room == "__init__":
        return -1  # the package's own __init__ imports nothing
    return next(i for i, rooms in enumerate(LAYERS) if room in rooms)


def test_every_module_has_a_room():
    rooms = {_room(imports.module_name(p)) for p in imports.all_modules()} - {"__init__"}
    assert rooms <= set().union(*LAYERS), f"add to LAYERS: {sorted(rooms - set().union(*LAYERS))}"


def test_no_module_imports_a_room_above_it():
    upward = sorted(f"{imports.module_name(p)} -> {m}" for p in imports.all_modules()
                    for m in imports.direct_imports(p)
                    if _level(m) > _level(imports.module_name(p)))
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_root_package_imports_nothing():
    assert imports.direct_imports(imports.SRC / "attnrobust" / "__init__.py") == frozenset()


def test_generators_and_parsers_are_apart():
    """Editing a synthetic generator re-runs fetch@ only; editing a parser re-runs masks@ only."""
    fetch = {p.relative_to(ROOT).as_posix() for p in imports.closure(ROOT / "stages" / "fetch.py")}
    masks = {p.relative_to(ROOT).as_posix() for p in imports.closure(ROOT / "stages" / "masks.py")}
    parsers = {"src/attnrobust/data/gtsrb.py", "src/attnrobust/data/coco.py", "src/attnrobust/data/prepare.py",
               "src/attnrobust/masks/coco_masks.py"}
    assert not fetch & parsers, fetch & parsers
    assert not {m for m in masks if "/data/synthetic/" in m}
    assert "src/attnrobust/data/synthetic/gtsrb.py" in fetch and "src/attnrobust/data/gtsrb.py" in masks


def test_only_the_config_module_reads_params_files():
    """Library code gets its params from the stage scripts through attnrobust.config, never by
    opening a params file itself."""
    readers = []
    for path in imports.all_modules():
        if path.name == "config.py" and path.parent.name == "attnrobust":
            continue
        text = path.read_text()
        if "read_params(" in text or "import yaml" in text or "safe_load(" in text:
            readers.append(path.relative_to(ROOT).as_posix())
    assert readers == []
