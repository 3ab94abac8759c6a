"""The lock files (`make lock`) pin everything pyproject.toml asks for, and the install uses them.

No network and no install: these read pyproject.toml, requirements/*.txt and the Makefile, ask
`make -n` what it would run, and compare the running venv with the lock when it is the project's.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
STAMP = ".venv/.installed"  # the install target (bench/gpu_check.sh runs `make .venv/.installed`)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# the platform the lock is for (the Makefile's `make lock` passes the same to uv)
TARGET = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.7",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
          "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}

ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(\\)?$")
HASH = re.compile(r"^\s+--hash=sha256:([0-9a-f]{64})\s*(\\)?$")


def make_var(name: str) -> str:
    """A simple `NAME := value` of the Makefile."""
    m = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", MAKEFILE.read_text(), flags=re.M)
    assert m, f"Makefile: no {name} := ..."
    return m.group(1)


def parse_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, [sha256, ...])}; fails on anything but `name==version` + hashes."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if m := ENTRY.match(line):
            name = canonicalize_name(m.group(1))
            assert name not in pins, f"{path.name}:{n}: {name} pinned twice"
            pins[name] = (m.group(2), [])
            current = name
        elif (m := HASH.match(line)) and current is not None:
            pins[current][1].append(m.group(1))
        else:
            pytest.fail(f"{path.name}:{n}: not a `name==version` pin or a --hash line: {line!r}")
    return pins


@pytest.fixture(scope="module")
def lock() -> dict[str, tuple[str, list[str]]]:
    return parse_lock(ROOT / make_var("LOCK"))


@pytest.fixture(scope="module")
def pip_lock() -> dict[str, tuple[str, list[str]]]:
    return parse_lock(ROOT / make_var("PIP_LOCK"))


def declared() -> dict[str, list[Requirement]]:
    """pyproject.toml's requirements by group: base, each extra, the build requirements."""
    groups = {"base": PYPROJECT["project"]["dependencies"],
              **{f"extra {k}": v for k, v in PYPROJECT["project"]["optional-dependencies"].items()},
              "build-system": PYPROJECT["build-system"]["requires"]}
    return {g: [Requirement(r) for r in reqs] for g, reqs in groups.items()}


def test_every_entry_is_pinned_exactly_with_hashes(lock, pip_lock):
    for pins in (lock, pip_lock):
        assert pins
        for name, (version, hashes) in pins.items():
            Version(version)  # an exact release, no wildcard or range
            assert hashes, f"{name}=={version} has no --hash"
            assert len(set(hashes)) == len(hashes), f"{name}: a hash listed twice"


@pytest.mark.parametrize("group", list(declared()))
def test_every_declared_dependency_is_locked(lock, group):
    for req in declared()[group]:
        if req.marker is not None and not req.marker.evaluate(TARGET):
            continue
        name = canonicalize_name(req.name)
        assert name in lock, f"pyproject.toml ({group}): {req} is not in the lock: run make lock"
        version, _ = lock[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"pyproject.toml ({group}) asks for {req}, the lock has {version}: run make lock")


def test_torch_and_torchvision_locked_at_pyproject_pins(lock):
    pins = {canonicalize_name(r.name): r for r in declared()["base"]}
    for name in ("torch", "torchvision"):
        spec = list(pins[name].specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"pyproject.toml must pin {name} with =="
        assert lock[name][0] == spec[0].version


def test_cuda_wheels_of_torch_are_locked(lock):
    """PyPI's torch is a CUDA build: its nvidia-* wheels (Linux x86_64) are in the lock with hashes."""
    nvidia = [n for n in lock if n.startswith("nvidia-")]
    assert "nvidia-cudnn-cu13" in nvidia or any(n.startswith("nvidia-cudnn") for n in nvidia), nvidia
    assert "triton" in lock
    try:
        requires = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return  # the static check above is all there is without torch installed
    for req in map(Requirement, requires):
        if req.marker is None or req.marker.evaluate(TARGET):  # no extra: evaluates `extra == ""`
            assert canonicalize_name(req.name) in lock, f"torch needs {req}, not in the lock"


def test_lock_is_for_python_311_linux_x86_64_on_pypi():
    text = MAKEFILE.read_text()
    assert "--python-version 3.11" in text and "--python-platform x86_64-manylinux" in text
    for path in (ROOT / make_var("LOCK"), ROOT / make_var("PIP_LOCK")):
        body = path.read_text()
        assert not re.search(r"^\s*(-i|--index-url|--extra-index-url|-f|--find-links)\b", body, flags=re.M), (
            f"{path.name}: names an index or a folder of this machine")
        assert ";" not in "".join(l for l in body.splitlines() if ENTRY.match(l)), "markers in a locked pin"


def test_pip_lock_pins_the_makefile_pip(pip_lock):
    assert set(pip_lock) == {"pip"} and pip_lock["pip"][0] == make_var("PIP_VERSION")


def dry_run(*args: str) -> str:
    env = {**os.environ, "MAKEFLAGS": ""}
    out = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("changed", ["pyproject.toml", "LOCK", "PIP_LOCK"])
def test_install_is_from_the_lock_and_redone_when_it_changes(changed):
    """The stamp depends on pyproject.toml and both locks; the install is pip in hash-checking mode
    from the locks, the project itself without dependencies."""
    lock, pip_lock = make_var("LOCK"), make_var("PIP_LOCK")
    path = {"LOCK": lock, "PIP_LOCK": pip_lock}.get(changed, changed)
    steps = dry_run("-W", path, STAMP).splitlines()
    assert f".venv/bin/python -m pip install -q --require-hashes --no-deps -r {pip_lock}" in steps
    assert f".venv/bin/python -m pip install -q --require-hashes --no-deps -r {lock}" in steps
    project = [s for s in steps if re.search(r"pip install .*-e '?\.", s)]
    assert project and all("--no-deps" in s and "--no-build-isolation" in s for s in project), project
    assert not [s for s in steps if "pip install" in s and "-r " not in s and s not in project], steps
    assert steps.index(next(s for s in steps if pip_lock in s)) < steps.index(project[0])


def test_run_test_bench_install_from_the_lock_and_ci_runs_make_test():
    for target in ("run", "test", "test-fast", "bench"):
        steps = dry_run("-W", make_var("LOCK"), target)
        assert f"-r {make_var('LOCK')}" in steps, target
        assert not re.search(r"pip install (?!.*--no-deps)", steps), f"{target}: an install outside the lock"
    assert re.search(r'python -m pytest -m "not slow"$', dry_run("test-fast"), flags=re.M)
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), flags=re.M)


def test_make_lock_regenerates_both_locks_from_pyproject():
    steps = dry_run("lock")
    assert re.search(rf"uv pip compile .*pyproject\.toml - -o {re.escape(make_var('LOCK'))}$", steps, flags=re.M)
    assert re.search(rf"uv pip compile .* - -o {re.escape(make_var('PIP_LOCK'))}$", steps, flags=re.M)
    assert "--extra test --extra bench" in steps and "--generate-hashes" in steps
    assert f"uv=={make_var('UV_VERSION')}" in steps


def project_venv() -> bool:
    """Whether this interpreter is a venv with attnrobust installed editable from this checkout."""
    if sys.prefix == sys.base_prefix:
        return False
    try:
        dist = metadata.distribution("attnrobust")
    except metadata.PackageNotFoundError:
        return False
    url = json.loads(dist.read_text("direct_url.json") or "{}")
    if not url.get("dir_info", {}).get("editable"):
        return False
    return Path(url2pathname(urlparse(url["url"]).path)).resolve() == ROOT


@pytest.mark.skipif(not project_venv(), reason="not the project's editable venv")
def test_lock_is_complete(lock):
    """What `pip check` would say, from the installed metadata: every requirement of every locked
    package (and of the project with its extras), for the lock's platform, is locked and satisfied.
    The install uses --no-deps, so a missing one would go unnoticed otherwise."""
    missing, done = [], set()
    todo = [("attnrobust", extra) for extra in ["", *PYPROJECT["project"]["optional-dependencies"]]]
    todo += [(name, "") for name in lock]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            missing.append(f"{name} (locked, not installed)")
            continue
        for req in map(Requirement, requires):
            if req.marker is not None and not req.marker.evaluate({**TARGET, "extra": extra}):
                continue
            if extra and (req.marker is None or "extra" not in str(req.marker)):
                continue  # a base requirement, checked with extra ""
            have = lock.get(canonicalize_name(req.name))
            if have is None or not req.specifier.contains(have[0], prereleases=True):
                missing.append(f"{name}{f'[{extra}]' if extra else ''} needs {req}, locked: {have and have[0]}")
            todo += [(canonicalize_name(req.name), e) for e in req.extras]
    assert not missing, missing


@pytest.mark.skipif(not project_venv(), reason="not the project's editable venv")
def test_installed_versions_equal_the_lock(lock, pip_lock):
    wrong = {}
    for name, (version, _) in {**lock, **pip_lock}.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have is None or Version(have) != Version(version):
            wrong[name] = (have, version)
    assert not wrong, f"installed vs. locked (run make .venv/.installed): {wrong}"
