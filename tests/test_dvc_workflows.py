"""DVC workflows on two tiny repos: determinism, the queue, a remote, profiles.

* ``a`` runs `dvc repro metrics` from scratch in a fresh repo; ``b`` is a copy of the session's
  whole tiny pipeline (conftest.py, also run from scratch) trimmed to the same experiments, as a
  user drops experiments from params.yaml: only ``metrics`` re-runs there. Two independent runs
  from scratch, so every output they share (data, models, attack results, the detector, metrics)
  must be byte-identical (CPU);
* `dvc exp run --queue` + `dvc queue start -j 2` on two eps values (in ``b``) gives the same
  metrics as running the two experiments one after the other (in ``a``);
* `dvc push` to a local-folder remote, then `dvc pull` into an empty cache and workspace,
  gives back every output byte for byte;
* switching the profile makes every stage stale, editing one section of the selected profile
  re-runs only the stages that read it (with the new value), editing another profile nothing.

Both repos hold two GTSRB experiments on the tiny profile and the commands target ``metrics``,
so only its ancestors run: every data stage (train@/attack@ depend on all of data/prepared, as a
DVC matrix cannot name an entry's dataset), the two experiments and the detector.
``train.threads: 1`` (as in conftest.py's pipeline): parallel queue workers do not compete for cores.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import yaml

from tiny import commit, make_repo, output_files, ran_stages, run, tool_env, trimmed_copy

# one xdist worker runs every test that reads the session's tiny pipeline (and this module's repos), so
# each is built once (`make test`: -n 2 --dist loadgroup); a mark added by a collection hook did not
# reach xdist's grouping (both workers built the pipeline)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]
EXPERIMENTS = ["gtsrb_standard", "gtsrb_pgd_at"]
DETECTORS = ["gtsrb_iqa_kd"]  # kept by make_repo: its teacher, gtsrb_standard, is one of EXPERIMENTS
DATA = {"fetch@gtsrb", "masks@gtsrb", "fetch@coco", "masks@coco", "fetch@scenes", "masks@scenes", "fetch@video", "features"}
PIPELINE = {*DATA, *(f"{s}@{e}-0" for s in ("train", "attack") for e in EXPERIMENTS),
            *(f"{s}@{d}" for s in ("detector", "detect") for d in DETECTORS), "metrics"}
ATTACKS = {*(f"attack@{e}-0" for e in EXPERIMENTS), *(f"detect@{d}" for d in DETECTORS), "metrics"}
METRICS = ("metrics/robustness.json", "metrics/detection.json", "metrics/claims.json", "metrics/verdicts.json")


@pytest.fixture(scope="module")
def repos(tmp_path_factory, tiny_pipeline):
    top = tmp_path_factory.mktemp("workflows")
    a = make_repo(top / "a", experiments=EXPERIMENTS, params={"train": {"threads": 1}})
    assert ran_stages(run(["dvc", "repro", "metrics"], a)) == {"code", *PIPELINE}  # code: hashes every script's code
    commit(a, "baseline")
    b = trimmed_copy(tiny_pipeline[1], top / "b", EXPERIMENTS)
    assert ran_stages(run(["dvc", "repro", "metrics"], b)) == {"metrics"}  # the kept stages are up to date
    commit(b, "baseline")
    yield a, b
    for repo in (a, b):  # no celery worker outlives the test run
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, env=tool_env(), capture_output=True, timeout=120)


def _without_commit(files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with the git commit taken out of every provenance record (the two repos' commits differ)."""
    out = {}
    for name, data in files.items():
        if name.endswith(("provenance.json", "env.json")):
            record = json.loads(data)
            for part in (record, *(v for v in record.values() if isinstance(v, dict))):
                part.pop("git_commit", None)
            data = json.dumps(record, sort_keys=True).encode()
        out[name] = data
    return out


def test_two_runs_from_scratch_give_byte_identical_outputs(repos):
    a, b = repos
    for name in METRICS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    roots = ("data", "models", "results", "metrics")  # every output, the plot tables and provenance too
    files_a, files_b = _without_commit(output_files(a, roots)), _without_commit(output_files(b, roots))
    assert files_a.keys() == files_b.keys()
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    assert json.loads((a / METRICS[0]).read_text()).keys() == set(EXPERIMENTS)


def test_push_to_a_folder_remote_and_pull_into_an_empty_workspace(repos, tmp_path):
    a, _ = repos
    run(["dvc", "remote", "add", "--local", "-d", "store", str(tmp_path / "remote")], a)
    run(["dvc", "push", "metrics", "--with-deps"], a)  # the stages that ran here
    outputs = ("data", "models", "results", "dvclive")
    before = output_files(a, outputs)
    for name in (".dvc/cache", *outputs):
        shutil.rmtree(a / name)
    run(["git", "checkout", "-q", "--", "."], a)  # the .gitignore files DVC wrote there are git's
    run(["dvc", "pull", "metrics", "--with-deps"], a)
    assert output_files(a, outputs) == before
    assert "up to date" in run(["dvc", "status", "metrics", "--with-deps"], a)


def _wait_for_queue(repo, deadline_s: float = 1200) -> None:
    """Poll `dvc queue status` (rows: task, name, created, status) until nothing is queued or running."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status = run(["dvc", "queue", "status"], repo)
        rows = [line.split() for line in status.splitlines()[1:] if line.strip()]
        failed = [row[0] for row in rows if row[-1] == "Failed"]
        if failed:
            logs = "\n".join(run(["dvc", "queue", "logs", task], repo)[-2000:] for task in failed)
            pytest.fail(f"a queued experiment failed:\n{status}\n{logs}")
        if not any(row[-1] in ("Queued", "Running") for row in rows):
            return
        time.sleep(3)
    pytest.fail(f"the queue did not finish in {deadline_s} s:\n{status}")


def _queued_metrics(repo) -> dict[int, bytes]:
    """eps -> robustness.json of every experiment the queue committed."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).split()
    out = {}
    for ref in refs:
        if ref.count("/") < 4:  # refs/exps/<xx>/<baseline rest>/<name>: experiments, not stashes
            continue
        params = yaml.safe_load(run(["git", "show", f"{ref}:params.yaml"], repo))
        out[params["attack"]["eps"]] = run(["git", "show", f"{ref}:{METRICS[0]}"], repo).encode()
    return out


def test_queue_with_two_workers_matches_running_one_after_the_other(repos):
    a, b = repos
    for eps in (2, 4):  # queued runs see only what git tracks: everything is committed (make_repo, baseline)
        run(["dvc", "exp", "run", "--queue", "metrics", "-S", f"attack.eps={eps}"], b)
    # `dvc queue start` can stay alive as long as its workers (seen under load): don't wait on it or its pipes
    starter = subprocess.Popen(["dvc", "queue", "start", "-j", "2"], cwd=b, env=tool_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sequential = {}
    for eps in (2, 4):
        ran = ran_stages(run(["dvc", "exp", "run", "metrics", "-S", f"attack.eps={eps}"], a))
        assert ran == ATTACKS  # eps is an attack setting: no retraining
        sequential[eps] = (a / METRICS[0]).read_bytes()
    _wait_for_queue(b)
    try:
        starter.wait(timeout=30)
    except subprocess.TimeoutExpired:
        starter.kill()
    queued = _queued_metrics(b)
    assert set(queued) == {2, 4}
    for eps in (2, 4):
        assert queued[eps] == sequential[eps], f"eps {eps}: queued and sequential metrics differ"
        assert {row["eps"] for row in json.loads(queued[eps]).values()} == {eps}


def test_adding_a_seed_trains_only_the_new_seed_and_the_claims_pool_both(repos):
    a, _ = repos
    ran = ran_stages(run(["dvc", "exp", "run", "metrics", "-S", "train.seeds=[0,1]"], a))
    assert ran == {*(f"{s}@{e}-1" for s in ("train", "attack") for e in EXPERIMENTS),
                   *(f"{s}@{d}" for s in ("detector", "detect") for d in DETECTORS), "metrics"}
    metrics = json.loads((a / METRICS[0]).read_text())
    assert {row["seeds"] for row in metrics.values()} == {2} and all("robust_acc_seed_sd" in r for r in metrics.values())
    for exp in EXPERIMENTS:  # seed 1 attacked on seed 0's samples (the pooled tests pair them: test_aggregate.py)
        rows = [(a / "results" / "attack" / exp / f"s{s}" / "per_sample.csv").read_text().splitlines() for s in (0, 1)]
        assert [r.split(",")[0] for r in rows[0]] == [r.split(",")[0] for r in rows[1]]
    claims = json.loads((a / "metrics" / "claims.json").read_text())  # here only iqa_kd's, untested when a tiny
    assert all(t["seeds"] == 2 for c in claims.values() for t in c["tests"])  # teacher is never fooled
    assert (a / "results" / "detect" / DETECTORS[0] / "s1" / "per_sample.npz").is_file()


def _stale(status: str) -> set[str]:
    """The stages a `dvc status` output lists (a stage's name starts a line and ends with ':')."""
    return {line[:-1] for line in status.splitlines() if line.endswith(":") and not line[0].isspace()}


def test_profiles_re_run_what_they_change(repos):
    _, b = repos  # its workspace is the baseline: queued runs happen in copies
    status = ["dvc", "status", "metrics", "--with-deps"]
    assert "up to date" in run(status, b)
    full = b / "profiles" / "full.yaml"
    full.write_text(full.read_text().replace("steps: 20", "steps: 30"))  # a profile that is not selected
    assert "up to date" in run(status, b)
    run(["git", "checkout", "-q", "--", "profiles/full.yaml"], b)

    alt = yaml.safe_load((b / "profiles" / "tiny.yaml").read_text())
    alt["attack"]["n_samples"] = 8
    (b / "profiles" / "alt.yaml").write_text(yaml.safe_dump(alt, sort_keys=False))
    params = (b / "params.yaml").read_text()
    (b / "params.yaml").write_text(params.replace("profile: tiny", "profile: alt"))
    assert _stale(run(status, b)) == PIPELINE  # every stage reads `profile` and its own sections of it
    (b / "params.yaml").write_text(params)
    (b / "profiles" / "alt.yaml").unlink()
    assert "up to date" in run(status, b)

    out = run(["dvc", "exp", "run", "metrics", "-S", "profiles/tiny.yaml:attack.n_samples=6"], b)
    assert ran_stages(out) == ATTACKS  # one section of the selected profile: only the stages that read it
    assert {row["n"] for row in json.loads((b / METRICS[0]).read_text()).values()} == {6}  # the overlay applied


def test_local_dir_copy_is_read_in_place_and_tracked_by_dvc(tmp_path):
    """data.gtsrb.local_dir: masks@gtsrb reads an existing copy in the official layout (outside the
    repo), never writes to it, and re-runs when the copy changes."""
    from attnrobust.data.synthetic.gtsrb import GtsrbSynthConfig, generate_gtsrb

    copy = tmp_path / "shared" / "gtsrb"
    generate_gtsrb(copy, GtsrbSynthConfig(train_per_class=2, test_per_class=1, min_size=20, max_size=28), seed=3)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    repo = make_repo(tmp_path / "repo", experiments=[])
    out = run(["dvc", "exp", "run", "masks@gtsrb", "-S", f"data.gtsrb.local_dir={copy}"], repo)  # as README says
    assert "masks@gtsrb" in ran_stages(out)
    meta = json.loads((repo / "data" / "prepared" / "gtsrb" / "meta.json").read_text())
    assert meta["splits"] == {"test": 43, "train": 43 * 2} and meta["skipped"] == []  # the copy, all of it
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before  # never modified
    assert str(copy) in (repo / "dvc.lock").read_text()  # DVC tracks the copy as a dependency
    assert "masks@gtsrb" not in run(["dvc", "status", "masks@gtsrb"], repo)
    victim = sorted((copy / "GTSRB" / "Final_Test" / "Images").glob("*.ppm"))[0]
    victim.unlink()  # the copy changes: masks@gtsrb is stale, and re-running it reports the missing file
    assert "masks@gtsrb" in run(["dvc", "status", "masks@gtsrb"], repo)
    out = run(["dvc", "repro", "masks@gtsrb"], repo)
    assert f"{victim.name}: listed in GT-final_test.csv but missing on disk" in out
