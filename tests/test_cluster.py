"""Grading on Dask: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1, a real PostgreSQL.

One batch of clumsy, broken and hostile submissions is graded on the cluster (its client killed after
the first result and run again), then with --jobs 1 in the same workspace: same CSV, report and
feedback pages. A worker killed with SIGKILL while it grades costs nothing; a worker whose grading
code differs by one byte refuses. The recipes parse; the benchmark's quick mode runs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import yaml
from conftest import host_listener, postgres_skip_reason
from grading_corpus.cases import build_corpus

from grading import api
from grading.authoring.release import release_path
from grading.course import ASSIGNMENTS, REPO_ROOT, source_notebook
from grading.running.cluster import WORKER_DIR_ENV, check_gradebook, identity_differences
from grading.running.submission import challenge_seed, seed_salt
from grading.running.workspace import Workspace
from grading.settings import GradingSettings

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(postgres_skip_reason()), reason=postgres_skip_reason())]

ASSIGNMENT = "optimization"
LIMITS = dict(cell_timeout_s=12, submission_timeout_s=40, quiet=True)
# graded cases: full marks, zero, a hostile forgery, partial credit, a syntax error
CASES = ("reference", "untouched_release", "forged_results", "one_mistake", "syntax_error")
DASK = str(Path(sys.executable).parent / "dask")


def _env(pythonpath: Path, **extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(pythonpath), "MPLBACKEND": "Agg", **extra}


def start_scheduler(folder: Path) -> tuple[subprocess.Popen, str]:
    """A `dask scheduler` on 127.0.0.1; returns the process and its address."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "scheduler.json"
    proc = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(info)], env=_env(REPO_ROOT), cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=open(folder / "scheduler.log", "wb"))
    for _ in range(600):
        if info.is_file() and info.stat().st_size:
            return proc, json.loads(info.read_text())["address"]
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"dask scheduler did not start: {(folder / 'scheduler.log').read_text()[-2000:]}")


def start_worker(folder: Path, address: str, name: str, pythonpath: Path = REPO_ROOT) -> subprocess.Popen:
    """A `dask worker` (no nanny: the process that grades is this one) with one thread."""
    return subprocess.Popen([DASK, "worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                             "--no-dashboard", "--local-directory", str(folder / f"scratch-{name}")],
                            env=_env(pythonpath, **{WORKER_DIR_ENV: str(folder / "workers")}), cwd=pythonpath,
                            stdout=subprocess.DEVNULL, stderr=open(folder / f"{name}.log", "wb"))


def wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(count, timeout=120)


def stop(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two workers (w1, w2) from this checkout."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler, address = start_scheduler(folder)
    workers = {name: start_worker(folder, address, name) for name in ("w1", "w2")}
    try:
        wait_for_workers(address, 2)
        yield {"address": address, "workers": workers, "folder": folder}
    finally:
        stop([*workers.values(), scheduler])


def write_batch(root: Path, names=CASES) -> tuple[Path, dict]:
    """The chosen corpus cases as a folder of submissions, plus a file that is not a notebook."""
    listener = host_listener()
    secrets = {"paths": [str(REPO_ROOT / "grading" / "judging")], "port": listener.getsockname()[1]}
    listener.close()
    other = next(a for a in ASSIGNMENTS if a != ASSIGNMENT)
    cases = build_corpus(ASSIGNMENT, nbformat.read(str(source_notebook(ASSIGNMENT)), 4),
                         nbformat.read(str(release_path(ASSIGNMENT)), 4), secrets,
                         nbformat.read(str(release_path(other)), 4))
    cases = {k: v for k, v in cases.items() if k in names}
    subs = root / "subs"
    for name, case in cases.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(case.notebook, str(subs / name / f"{ASSIGNMENT}.ipynb"))
    (subs / "broken_file").mkdir()
    (subs / "broken_file" / f"{ASSIGNMENT}.ipynb").write_text('{"cells": [')
    return subs, cases


def read_csv(path: Path) -> dict[str, dict]:
    with open(path) as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def outputs(ws: Path) -> dict[str, str]:
    """The CSV, the report and every feedback page, as text; the batch's timestamp on a page and the
    seconds and memory each submission took masked."""
    report = json.loads((ws / f"report_{ASSIGNMENT}.json").read_text())
    for row in report.values():
        row["seconds"] = sorted(row["seconds"])
        row["memory_mb"] = row["memory_mb"] is not None
    found = {"csv": (ws / f"grades_{ASSIGNMENT}.csv").read_text(), "report": json.dumps(report, indent=1)}
    for page in sorted((ws / "feedback").rglob("*.html")):
        found[str(page.relative_to(ws))] = re.sub(r" · \d{4}-\d\d-\d\d \d\d:\d\d</p>", " · TIME</p>", page.read_text())
    return found


def gradebook_scores(db_url: str) -> dict[str, list[float]]:
    """Student -> the scores of their submissions of the assignment in the gradebook (one per submission)."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        return {s.id: [sub.score for sub in s.submissions if sub.assignment.name == ASSIGNMENT] for s in gb.students}


def test_seed_is_a_keyed_hash_of_the_bytes(tmp_path):
    """Same bytes and key: same challenge seed; another key or one more byte: another seed. The key is private."""
    ws = Workspace(tmp_path / "ws", ASSIGNMENT)
    ws.root.mkdir(parents=True)
    salt = seed_salt(ws)
    assert seed_salt(ws) == salt and len(salt) == 32
    assert (ws.root / "seed_salt.key").stat().st_mode & 0o777 == 0o600
    seed = challenge_seed(salt, ASSIGNMENT, b"notebook")
    assert seed == challenge_seed(salt, ASSIGNMENT, b"notebook")
    assert seed != challenge_seed(salt, ASSIGNMENT, b"notebook ")
    assert seed != challenge_seed(bytes(32), ASSIGNMENT, b"notebook")


def test_sqlite_gradebook_is_refused_on_a_remote_cluster(tmp_path):
    """Workers on other machines cannot share an SQLite file: --cluster tcp://... needs --db-url."""
    with pytest.raises(api.GradingError, match="needs a gradebook every worker can reach"):
        api.grade(ASSIGNMENT, tmp_path, GradingSettings(workspace=tmp_path / "ws", cluster="tcp://127.0.0.1:1"))
    check_gradebook("local", "sqlite:////x.db")  # one machine: allowed
    assert identity_differences({"grading/": "a" * 64}, {"grading/": "b" * 64}) == [
        f"grading/: worker {'a' * 12}…, client {'b' * 12}…"]


def test_cluster_run_interrupted_then_resumed_equals_a_local_run(dask_cluster, postgres, tmp_path):
    """The CLI's client is killed after its first result; a re-run grades only what is missing; the CSV,
    report and feedback pages equal a local --jobs 2 run of the same batch in the same workspace (pages differ
    only in the batch's timestamp, which says when a batch ran); the gradebook holds one submission each."""
    subs, cases = write_batch(tmp_path)
    ws = tmp_path / "ws"
    client = subprocess.Popen(
        [sys.executable, "-m", "grading.grade", ASSIGNMENT, str(subs), "--workspace", str(ws), "--db-url", postgres,
         "--cluster", dask_cluster["address"], "--timeout", str(LIMITS["cell_timeout_s"]),
         "--submission-timeout", str(LIMITS["submission_timeout_s"]), "--quiet"],  # the same fingerprint as below
        env=_env(REPO_ROOT), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "client.log", "wb"))
    state = ws / f"state_{ASSIGNMENT}.json"

    def graded() -> set[str]:
        try:
            rows = json.loads(state.read_text())["students"]
        except (OSError, ValueError, KeyError):
            return set()
        return {s for s, r in rows.items() if r["status"] == "graded"}

    deadline = time.time() + 900
    while not graded() and client.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    client.send_signal(signal.SIGKILL)
    client.wait()
    done_before = graded()
    assert done_before, (tmp_path / "client.log").read_text()[-3000:]
    assert done_before < set(cases), "the client finished before it could be interrupted"

    settings = GradingSettings(workspace=ws, db_url=postgres, cluster=dask_cluster["address"], **LIMITS)
    report = api.grade(ASSIGNMENT, subs, settings)
    assert set(report.graded_now) == set(cases) - done_before
    rows = read_csv(report.csv_path)
    for name, case in cases.items():
        got = {cell: float(rows[name][cell]) for cell in case.expected}
        assert rows[name]["status"] == "graded" and got == case.expected, (name, rows[name])
    assert rows["broken_file"]["status"] == "unreadable"
    assert {s: v for s, v in gradebook_scores(postgres).items()} == {
        s: [float(rows[s]["total"])] for s in cases}
    on_cluster = outputs(ws)
    assert len([k for k in on_cluster if k.endswith(".html")]) == len(cases)

    local = GradingSettings(workspace=ws, db_url=postgres, jobs=2, force=True, canary=False, **LIMITS)
    assert set(api.grade(ASSIGNMENT, subs, local).graded_now) == set(cases)
    here = outputs(ws)
    assert here.keys() == on_cluster.keys()
    for name in here:
        assert here[name] == on_cluster[name], name


def _grading_descendant(pid: int) -> int | None:
    """The pid of a grading.running.autograde_one process below the process ``pid``, if any."""
    try:
        for child in psutil.Process(pid).children(recursive=True):
            cmd = child.cmdline()
            if "grading.running.autograde_one" in cmd:
                return child.pid
    except psutil.Error:
        return None
    return None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_worker_killed_while_grading_loses_nothing(dask_cluster, postgres_server, tmp_path):
    """A worker SIGKILLed mid-submission: the scheduler re-runs its task on the other worker; every
    submission is once in the CSV and once in the gradebook with its points; its nbgrader run died with it."""
    subs, cases = write_batch(tmp_path, ("reference", "untouched_release", "one_mistake"))
    db_url = postgres_server.database("gradebook_killed_worker")
    settings = GradingSettings(workspace=tmp_path / "ws", db_url=db_url, cluster=dask_cluster["address"], **LIMITS)
    killed: dict[str, int] = {}

    def killer() -> None:
        deadline = time.time() + 900
        while time.time() < deadline and not killed:
            for proc in dask_cluster["workers"].values():
                run = _grading_descendant(proc.pid)
                if run is not None:
                    time.sleep(1.0)  # well inside the submission's run
                    proc.send_signal(signal.SIGKILL)
                    killed.update(worker=proc.pid, run=run)
                    return
            time.sleep(0.1)

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    report = api.grade(ASSIGNMENT, subs, settings)
    watcher.join(timeout=5)
    assert killed, "no worker was seen grading"
    assert sorted(report.graded_now) == sorted(cases)
    with open(report.csv_path) as f:
        ids = [row["student_id"] for row in csv.DictReader(f)]
    assert sorted(ids) == sorted([*cases, "broken_file"])
    rows = read_csv(report.csv_path)
    for name, case in cases.items():
        assert rows[name]["status"] == "graded", rows[name]
        assert {cell: float(rows[name][cell]) for cell in case.expected} == case.expected, name
    assert gradebook_scores(db_url) == {s: [float(rows[s]["total"])] for s in cases}
    for _ in range(50):
        if _gone(killed["run"]):
            break
        time.sleep(0.1)
    assert _gone(killed["run"]), "the killed worker's nbgrader run outlived it"


def test_worker_with_other_grading_code_refuses(postgres_server, tmp_path):
    """A worker started from a copy of the course whose grading code differs by one byte refuses, naming
    grading/; nothing is graded."""
    copy = tmp_path / "other_checkout"
    for part in ("grading", "course_lib", "solutions"):
        shutil.copytree(REPO_ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "_config.yml", copy / "_config.yml")
    with open(copy / "grading" / "intake" / "flags.py", "a") as f:
        f.write("\n")
    folder = tmp_path / "dask"
    scheduler, address = start_scheduler(folder)
    worker = start_worker(folder, address, "stranger", pythonpath=copy)
    try:
        wait_for_workers(address, 1)
        subs, cases = write_batch(tmp_path, ("reference",))
        settings = GradingSettings(workspace=tmp_path / "ws", db_url=postgres_server.database("gradebook_refusal"),
                                   cluster=address, **LIMITS)
        with pytest.raises(api.GradingError, match=r"worker tcp://127\.0\.0\.1:\d+ refuses to grade: .*grading/: "):
            api.grade(ASSIGNMENT, subs, settings)
    finally:
        stop([worker, scheduler])
    assert read_csv(tmp_path / "ws" / f"grades_{ASSIGNMENT}.csv")["reference"]["status"] == "pending"


def test_slurm_recipe_builds_its_job_script():
    """The SLURM recipe's dask-jobqueue cluster writes a job script (nothing is submitted)."""
    from grading.running.cluster_recipes.slurm import slurm_cluster

    cluster = slurm_cluster(partition="grading", account="course")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p grading" in script and "#SBATCH -A course" in script and "#SBATCH --cpus-per-task=2" in script
    assert f"cd {REPO_ROOT}" in script and "--nthreads 1" in script and WORKER_DIR_ENV in script


def test_kubernetes_recipe_validates_against_the_operator_schema():
    """The DaskCluster resource validates against dask-kubernetes' own schema (its templates.yaml; the
    Kubernetes PodSpec/ServiceSpec it refers to are checked for their required fields only) and has the
    keys dask-kubernetes' make_cluster_spec writes."""
    import dask_kubernetes
    import jsonschema
    from dask_kubernetes.operator import make_cluster_spec
    from dask_kubernetes.operator.validation import validate_cluster_name

    spec = yaml.safe_load((REPO_ROOT / "grading" / "running" / "cluster_recipes" / "kubernetes.yaml").read_text())
    templates = yaml.safe_load((Path(dask_kubernetes.__file__).parent / "operator" / "customresources"
                                / "templates.yaml").read_text())
    text = json.dumps(templates["definitions"])
    text = re.sub(r'"python://dask_kubernetes/operator/customresources/templates\.yaml#/definitions/([^"]+)"',
                  r'"#/definitions/\1"', text)
    pod = {"type": "object", "required": ["containers"], "properties": {"containers": {
        "type": "array", "minItems": 1, "items": {"type": "object", "required": ["name", "image"]}}}}
    service = {"type": "object", "required": ["ports"], "properties": {"ports": {"type": "array", "minItems": 1}}}
    text = text.replace('"python://k8s_crd_resolver/schemata/k8s-1.21.1.json#/definitions/io.k8s.api.core.v1.PodSpec"',
                        '"#/definitions/PodSpec"')
    text = text.replace(
        '"python://k8s_crd_resolver/schemata/k8s-1.21.1.json#/definitions/io.k8s.api.core.v1.ServiceSpec"',
        '"#/definitions/ServiceSpec"')
    definitions = {**json.loads(text), "PodSpec": pod, "ServiceSpec": service}
    assert "python://" not in json.dumps(definitions)
    jsonschema.validate(spec["spec"], {"definitions": definitions,
                                        **definitions["dask.k8s.api.v1.DaskCluster"]["properties"]["spec"]})
    validate_cluster_name(spec["metadata"]["name"])
    reference = make_cluster_spec(spec["metadata"]["name"], n_workers=2)
    assert spec.keys() == reference.keys() and (spec["apiVersion"], spec["kind"]) == (reference["apiVersion"],
                                                                                      reference["kind"])
    assert set(spec["spec"]) == set(reference["spec"])
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][:2] == ["dask", "worker"] and "1" == worker["args"][worker["args"].index("--nthreads") + 1]


def test_cluster_benchmark_quick_mode():
    """`benchmarks/cluster_speed.py --quick` runs and ends with its JSON line (no timing asserted)."""
    out = subprocess.run([sys.executable, "benchmarks/cluster_speed.py", "--quick"], cwd=REPO_ROOT,
                         env=_env(REPO_ROOT), capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    for key in ("jobs2_per_min", "cluster2_per_min", "overhead_pct"):
        assert key in result, key
    assert result["quick"] is True and result["cluster2_per_min"] > 0
