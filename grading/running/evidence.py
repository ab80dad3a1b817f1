"""Evidence per test cell: what the probe wrote while an exercise's hidden-test cell ran, and nothing else.

The kernel writes result files into ``IO/results`` (the one folder it may write). Around every cell,
the autograde process (outside the sandbox) empties that folder: before a cell starts it moves the
file of the test cell that ran last into ``IO/evidence`` (a folder the sandbox never sees) and removes
everything else. So the file the grader judges for an exercise is the one present when that
exercise's test cell ended; whatever any other cell writes, for this exercise or another, is thrown
away. The test cell running when the run stops (a time limit) is named in ``IO/evidence/open``, and the
grader collects it after the run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable, Optional

from grading.course import EXERCISES, grade_id
from grading.sandbox.kernel_bootstrap import GUARD_LOG
from grading.sandbox.launcher import MARKER

RESULTS, EVIDENCE, OPEN = "results", "evidence", "open"
# files of the results folder that stay: the launcher's marker (a sweep unmounts a folder without it) and the
# log the kernel's guard appends to for the whole run
KEPT = (MARKER, GUARD_LOG)


def evidence_dir(io: Path) -> Path:
    """Where the judged result files are kept (not reachable from the sandbox)."""
    return Path(io) / EVIDENCE


def open_test_cell(io: Path) -> Optional[str]:
    """The exercise whose test cell was running when the run stopped, if any."""
    try:
        return (evidence_dir(io) / OPEN).read_text().strip() or None
    except OSError:
        return None


def _keep(source: Path, target: Path) -> bool:
    """Copy a regular file (never through a link the kernel planted) to ``target``; False when there is none."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return False
        with open(f"{target}.tmp", "wb") as out:
            shutil.copyfileobj(f, out)
    os.replace(f"{target}.tmp", target)
    return True


def collect(io: Path, key: Optional[str]) -> None:
    """Keep ``results/<key>.safetensors`` as evidence (when ``key``), then empty ``results/``."""
    collect_all(io, [key] if key else [])


def collect_all(io: Path, keys: list[str]) -> None:
    """Keep each ``results/<key>.safetensors`` as evidence, then empty ``results/`` (``collect`` of one test cell;
    all of them for a run with no test cells: the answer cells alone, ``grading.running.alone``)."""
    results, kept = Path(io) / RESULTS, evidence_dir(io)
    for key in keys:
        if not _keep(results / f"{key}.safetensors", kept / f"{key}.safetensors"):
            (kept / f"{key}.safetensors").unlink(missing_ok=True)  # wrote nothing: no older file stands for it
    try:
        entries = list(os.scandir(results))
    except OSError:
        return
    for entry in entries:
        if entry.name in KEPT:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)


MAX_GUARD_BYTES = 1 << 20


ALONE = "alone"  # the kept evidence's subfolder for the answer cells alone (grading.running.alone)


def keep(io: Path, target: Path, challenge: dict, refused: list[dict], alone_dir: Optional[Path] = None,
         alone_refused: Optional[list[dict]] = None) -> None:
    """Keep what was judged (the challenge, the evidence files, the refusals; those of the answer cells alone in
    ``ALONE``) in ``target``, replacing what an earlier grading kept there, so that changed checks can judge it
    again without running the notebook."""
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "challenge.json").write_text(json.dumps(challenge))
    (staging / "refused.json").write_text(json.dumps(refused))
    for path in evidence_dir(io).glob("*.safetensors"):
        shutil.copyfile(path, staging / path.name)
    if alone_dir is not None:
        (staging / ALONE).mkdir()
        (staging / ALONE / "refused.json").write_text(json.dumps(alone_refused or []))
        for path in Path(alone_dir).glob("*.safetensors"):
            shutil.copyfile(path, staging / ALONE / path.name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def refused_accesses(io: Path) -> list[dict]:
    """What the kernel's guard refused (``grading.sandbox.kernel_bootstrap.guard_grading_files``): one
    {"event", "path": [...]} per refusal; lines that are not such objects count as one refusal of "?"."""
    try:
        fd = os.open(Path(io) / RESULTS / GUARD_LOG, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        text = f.read(MAX_GUARD_BYTES).decode("utf-8", errors="replace") if stat.S_ISREG(os.fstat(fd).st_mode) else ""
    refused = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        try:
            entry = json.loads(line)
            refused.append({"event": str(entry["event"])[:40], "path": [str(p)[:300] for p in entry["path"]][:2]})
        except (ValueError, KeyError, TypeError):
            refused.append({"event": "?", "path": [line[:300]]})
    return refused


def cell_hooks(io: Path, assignment: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """nbclient's ``on_cell_execute`` and ``on_cell_executed`` hooks that collect each test cell's evidence."""
    key_of = {e.test_cell: e.key for e in EXERCISES[assignment]}
    state: dict[str, Optional[str]] = {"open": None}
    evidence_dir(io).mkdir(mode=0o700, exist_ok=True)

    def _mark(key: Optional[str]) -> None:
        state["open"] = key
        (evidence_dir(io) / OPEN).write_text(key or "")

    def on_cell_execute(cell: Any = None, **_: Any) -> None:
        collect(io, state["open"])
        _mark(key_of.get(grade_id(cell)) if cell is not None else None)

    def on_cell_executed(cell: Any = None, **_: Any) -> None:
        collect(io, state["open"])
        _mark(None)

    return on_cell_execute, on_cell_executed
