"""One cgroup per sandboxed kernel: memory (children and tmpfs included), process count, CPU share.

Works on cgroup v2 (``memory.max``, ``memory.swap.max``, ``pids.max``, ``cpu.weight``) and on v1
(``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``, ``pids.max``, ``cpu.shares``), whichever
``ROOT`` holds: v2 when ``ROOT/cgroup.controllers`` offers memory and pids, else the v1 hierarchies
``ROOT/memory``, ``ROOT/pids`` and ``ROOT/cpu`` (a hybrid host's controller-less ``unified`` is ignored).

Layout: ``<hierarchy root>/course-grading/<name>`` on v2 (the root is the only cgroup exempt from v2's
"no processes in inner nodes" rule) and in each v1 hierarchy. Not nested in the grader's own cgroup:
every run finds (and sweeps) the same place, and no group is left inside a cgroup that whoever runs
the grader may want to delete.

Life cycle: the kernel launcher (root, before it drops privileges and execs bwrap) calls ``create`` and
``enter``; children inherit the group. Nothing runs after the exec, so whoever started the kernel calls
``remove(name)`` once the kernel is gone (it kills what is left in the group, then deletes it), and
``sweep()`` before a batch deletes empty groups left by crashed runs.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = "/sys/fs/cgroup"
PARENT = "course-grading"
V1_CONTROLLERS = ("memory", "pids", "cpu")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")


class CgroupError(RuntimeError):
    """No cgroup can be created or configured here; the message names the cause."""


@dataclass(frozen=True)
class Limits:
    """What one kernel and all its children may use together."""

    memory_mb: int = 4096  # resident memory + tmpfs + page tables, no swap
    pids_max: int = 256  # processes and threads
    cpu_weight: int = 100  # relative CPU share, cgroup v2 scale 1..10000 (100 = default)


def version(root: str = ROOT) -> int:
    """2 or 1: the cgroup version usable under ``root``; raise CgroupError naming why none is."""
    base = Path(root)
    controllers = base / "cgroup.controllers"
    if controllers.exists():
        offered = set(controllers.read_text().split())
        if {"memory", "pids"} <= offered:
            return 2
        raise CgroupError(f"cgroup v2 at {root} offers no memory/pids controller (has: {sorted(offered) or 'none'})")
    missing = [c for c in V1_CONTROLLERS if not (base / c / "cgroup.procs").exists()]
    if not missing:
        return 1
    raise CgroupError(f"no cgroup hierarchy under {root}: neither cgroup v2 (cgroup.controllers) nor the "
                      f"v1 controllers {', '.join(missing)} are mounted there")


def parents(root: str = ROOT) -> list[Path]:
    """The ``course-grading`` folders the kernels' groups go into (one per v1 controller, one on v2)."""
    if version(root) == 2:
        return [Path(root) / PARENT]
    return [Path(root) / c / PARENT for c in V1_CONTROLLERS]


def _write(path: Path, value: str) -> None:
    """Write a cgroup control file, turning failures into CgroupError."""
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value.strip()!r} to {path}: {exc.strerror}") from exc


def _enable_v2_controllers(group: Path) -> None:
    """Let ``group``'s children use memory, pids and cpu (v2 ``cgroup.subtree_control``)."""
    offered = set((group / "cgroup.controllers").read_text().split())
    wanted = [c for c in ("memory", "pids", "cpu") if c in offered]
    enabled = set((group / "cgroup.subtree_control").read_text().split())
    if set(wanted) <= enabled:
        return
    try:
        (group / "cgroup.subtree_control").write_text(" ".join("+" + c for c in wanted))
    except OSError as exc:
        hint = (" (v2 allows no processes in a cgroup that hands controllers to children: run the grader"
                " in a child cgroup, e.g. systemd-run --scope -p Delegate=yes)" if exc.errno == errno.EBUSY else "")
        raise CgroupError(f"cannot enable {wanted} in {group}/cgroup.subtree_control: {exc.strerror}{hint}") from exc


def _mkdir(path: Path) -> None:
    """Create a cgroup folder (and its parent, which ``remove`` deletes when empty); errors: CgroupError."""
    try:
        for _ in range(5):
            try:
                return path.mkdir(exist_ok=True)
            except FileNotFoundError:  # our course-grading parent, removed by a concurrent ``remove``
                path.parent.mkdir(exist_ok=True)
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {path}: {exc.strerror} (not root, or a read-only cgroup "
                          "file system, as in an unprivileged container)") from exc


def _check_name(name: str) -> None:
    """Group names are single path components we chose, never anything a kernel could pick."""
    if not _NAME.match(name):
        raise ValueError(f"bad cgroup name {name!r}")


def create(name: str, limits: Limits, root: str = ROOT) -> list[Path]:
    """Create (or reuse) the group ``course-grading/name`` with ``limits``; return its folders."""
    _check_name(name)
    mem = str(limits.memory_mb * 2**20)
    groups = []
    if version(root) == 2:
        parent = Path(root) / PARENT
        _enable_v2_controllers(Path(root))
        _mkdir(parent)
        _enable_v2_controllers(parent)
        group = parent / name
        _mkdir(group)
        _write(group / "memory.max", mem)
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")
        _write(group / "pids.max", str(limits.pids_max))
        if (group / "cpu.weight").exists():
            _write(group / "cpu.weight", str(limits.cpu_weight))
        return [group]
    for parent in parents(root):
        _mkdir(parent)
        group = parent / name
        _mkdir(group)
        groups.append(group)
    memory, pids, cpu = groups
    _write(memory / "memory.limit_in_bytes", mem)
    if (memory / "memory.memsw.limit_in_bytes").exists():  # memory + swap: no swapping around the limit
        _write(memory / "memory.memsw.limit_in_bytes", mem)
    _write(pids / "pids.max", str(limits.pids_max))
    _write(cpu / "cpu.shares", str(max(2, limits.cpu_weight * 1024 // 100)))
    return groups


def enter(groups: list[Path], pid: int = 0) -> None:
    """Move process ``pid`` (0: the caller) into each group; its later children inherit them."""
    for group in groups:
        _write(group / "cgroup.procs", str(pid or os.getpid()))


def _procs(group: Path) -> list[int]:
    """The processes in a group (empty when it is gone)."""
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def procs(name: str, root: str = ROOT) -> list[int]:
    """The processes in group ``course-grading/name`` (empty when it is gone or unavailable)."""
    _check_name(name)
    try:
        return _procs(parents(root)[0] / name)
    except CgroupError:
        return []


def remove(name: str, root: str = ROOT, timeout_s: float = 10.0) -> bool:
    """Kill whatever still runs in ``course-grading/name`` and delete it; True when it is gone."""
    _check_name(name)
    try:
        groups = [p / name for p in parents(root)]
    except CgroupError:
        return True
    deadline = time.monotonic() + timeout_s
    for group in groups:
        while group.exists():
            if (group / "cgroup.kill").exists():
                try:
                    (group / "cgroup.kill").write_text("1")
                except OSError:
                    pass
            for pid in _procs(group):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                group.rmdir()
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        try:  # leave nothing in the hierarchy of whoever runs the grader (it may want to delete its group)
            group.parent.rmdir()
        except OSError:
            pass
    return True


def sweep(root: str = ROOT, min_age_s: float = 300.0) -> int:
    """Delete empty groups older than ``min_age_s`` left by earlier runs; return how many went."""
    try:
        folders = parents(root)
    except CgroupError:
        return 0
    removed = 0
    now = time.time()
    for parent in folders:
        for group in (p for p in parent.glob("*") if p.is_dir()):
            try:
                if now - group.stat().st_mtime > min_age_s and not _procs(group):
                    group.rmdir()
                    removed += 1
            except OSError:
                pass
        try:
            parent.rmdir()
        except OSError:
            pass
    return removed


def usage(name: str, root: str = ROOT) -> dict[str, Optional[int]]:
    """Peak memory (bytes) and OOM kills of a group so far, where the hierarchy reports them."""
    _check_name(name)
    group = parents(root)[0] / name

    def read(file: str) -> Optional[str]:
        try:
            return (group / file).read_text()
        except OSError:
            return None

    if version(root) == 2:
        events = dict(line.split() for line in (read("memory.events") or "").splitlines())
        peak = read("memory.peak")
        return {"peak_bytes": int(peak) if peak else None, "oom_kills": int(events.get("oom_kill", 0))}
    control = dict(line.split() for line in (read("memory.oom_control") or "").splitlines())
    peak = read("memory.max_usage_in_bytes")
    return {"peak_bytes": int(peak) if peak else None, "oom_kills": int(control.get("oom_kill", 0))}
