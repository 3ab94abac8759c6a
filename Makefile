# The two commands the README opens with. Both create .venv on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Lock files: the exact version and the sha256 of every file of every package, for Python 3.11 on
# Linux x86_64 (CUDA torch and its nvidia-* wheels included). LOCK is pyproject.toml's dependencies
# with the extras test and bench, plus the build requirements (setuptools, wheel), so that the
# editable install below fetches nothing unlocked; PIP_LOCK is pip itself. `make lock` writes both.
LOCK        := requirements/lock.txt
PIP_LOCK    := requirements/pip.txt
PIP_VERSION := 26.3

.PHONY: run run-real test test-fast bench lock

run: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

# real GTSRB and COCO from existing copies in the official layout (README: "Results on real data");
# a DVC experiment, so the workspace's default results stay as they are
GTSRB_DIR ?= ../shared/data/gtsrb
COCO_DIR  ?= ../shared/data/coco-mini
run-real: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc exp run -S profile=real-cpu \
	  -S data.gtsrb.local_dir=$(GTSRB_DIR) -S data.coco.local_dir=$(COCO_DIR)

# two pytest-xdist workers: the end-to-end tests (one single-threaded `dvc repro` after another) on
# one, everything else on the other core meanwhile (tests/conftest.py groups them)
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

# local iteration: everything but the end-to-end runs (CI keeps running `make test`)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) bench/pgd_throughput.py

# Install = pip from the locks, in hash-checking mode: pip reads this machine's pip.conf (its local
# mirror of PyPI, which holds the 3 GB of torch + nvidia-* wheels, byte for byte PyPI's files), so
# only ~145 MB come from PyPI; a fresh venv installs in about 2 min here (2 cores; 2 min 46 s to
# 3 min 38 s while other jobs load them), nearly all of it unpacking 5.5 GB. uv would install
# faster from a warm cache, but it ignores pip.conf and would download those 3 GB from PyPI on a
# machine whose uv cache is cold. --no-deps: the lock is complete (tests/test_lock.py checks every
# installed package's requirements against it; `pip check` can't: it rejects decord 0.6.0's wheel
# for its internal cp36 tag).
# '.[test]' names the extra `make test` needs; its packages, like bench's, come from the lock.
# A package dropped from the lock stays in an existing venv until `rm -rf .venv`.
$(STAMP): pyproject.toml $(LOCK) $(PIP_LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(PIP_LOCK)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q -e '.[test]' --no-deps --no-build-isolation
	touch $(STAMP)

# `make lock` re-resolves pyproject.toml into the locks, keeping every locked version that still
# satisfies it; `make lock UPGRADE=1` takes the newest versions instead.
# Tool: `uv pip compile`, pinned, installed from PyPI into its own venv (.venv/lock-tools, so it
# never touches the project's packages). It resolves in seconds; pip-tools' pip-compile took
# 8 min here and, resolving against PyPI alone, downloaded whole wheels (over 16 GB, every
# platform's torch and nvidia-* files) only to hash them, where uv takes PyPI's published hashes.
# uv does not read pip.conf, so it resolves against PyPI itself (LOCK_INDEX) and for an explicit
# target (Python 3.11, manylinux_2_28 x86_64, the torch wheel's floor) whatever machine runs it;
# the lock lists the hashes of every file of each pinned version, and pip installs only a file
# whose hash is listed, whichever index (PyPI or a mirror in pip.conf) serves it.
UV_VERSION := 0.13.9
LOCK_TOOLS := $(VENV)/lock-tools
LOCK_INDEX := https://pypi.org/simple
UV_COMPILE  = $(LOCK_TOOLS)/bin/uv pip compile --quiet --no-config --index-url $(LOCK_INDEX) \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

lock:
	test -x $(LOCK_TOOLS)/bin/python || python3 -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install -q uv==$(UV_VERSION)
	mkdir -p $(dir $(LOCK))
	$(LOCK_TOOLS)/bin/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(UV_COMPILE) --extra test --extra bench pyproject.toml - -o $(LOCK)
	echo 'pip==$(PIP_VERSION)' | $(UV_COMPILE) - -o $(PIP_LOCK)
