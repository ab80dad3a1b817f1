"""The grading settings, declared once: the Python API takes them, the CLI reads its defaults here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal, Optional

from grading.course import SOURCE_DIR

CgroupMode = Literal["require", "warn"]


@dataclass(frozen=True)
class GradingSettings:
    """Everything that decides how a batch is graded (the CLI's options mirror these fields)."""

    workspace: Path = Path("grading_workspace")  # scratch nbgrader course folder; holds the gradebook
    solutions: Path = SOURCE_DIR  # nbgrader source notebooks, one folder per assignment
    db_url: Optional[str] = None  # nbgrader gradebook; default sqlite in the workspace
    jobs: int = 1  # submissions graded at once
    force: bool = False  # regrade every submission, not only new or changed ones
    pattern: Optional[str] = None  # regex with a named group student_id, matched on file paths
    cell_timeout_s: int = 60  # per notebook cell
    submission_timeout_s: int = 900  # wall clock for one whole submission
    memory_mb: int = 4096  # per kernel, children and tmpfs included (cgroup)
    cpu_s: int = 600  # CPU seconds per kernel process
    pids_max: int = 256  # processes and threads per kernel
    tmpfs_mb: int = 512  # the sandbox's /tmp (scratch) size
    cgroups: CgroupMode = "require"  # no cgroup available: refuse, or run on rlimits with a warning
    sandbox: bool = True  # False: kernels unconfined (trusted notebooks only)
    canary: bool = True  # grade the reference solution and the untouched release before the batch
    canary_dir: Optional[Path] = None  # where the canary runs and keeps its verdict (default WORKSPACE/canary)
    kernel_env: tuple[str, ...] = field(default_factory=tuple)  # KEY=VALUE for the kernels
    max_notebook_mb: int = 50  # larger submitted notebooks are left out with a warning
    quiet: bool = False  # no progress bar
    cluster: Optional[str] = None  # Dask scheduler address (tcp://HOST:8786), "local" (a LocalCluster), or None

    def gradebook_url(self) -> str:
        """The gradebook's database URL."""
        return self.db_url or f"sqlite:///{Path(self.workspace).resolve() / 'gradebook.db'}?timeout=120"

    def grade_relevant(self) -> dict:
        """The settings that change a grade (a change regrades every submission)."""
        keep = ("cell_timeout_s", "memory_mb", "cpu_s", "pids_max", "tmpfs_mb", "sandbox", "kernel_env")
        return {k: v for k, v in asdict(self).items() if k in keep}

    def fingerprint(self, *digests: str) -> str:
        """A hash of the grade-relevant settings and the given digests (sources, grading code...)."""
        text = json.dumps(self.grade_relevant(), sort_keys=True, default=str) + "".join(digests)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def settings_to_json(settings: GradingSettings) -> dict:
    """The settings as JSON-able values (paths as text), e.g. for a task sent to a Dask worker."""
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(settings).items()}


def settings_from_json(data: dict, **overrides) -> GradingSettings:
    """GradingSettings from settings_to_json's output, with some fields replaced."""
    values = {**data, **overrides}
    values["workspace"], values["solutions"] = Path(values["workspace"]), Path(values["solutions"])
    values["canary_dir"] = Path(values["canary_dir"]) if values.get("canary_dir") else None
    values["kernel_env"] = tuple(values.get("kernel_env") or ())
    known = {f.name for f in fields(GradingSettings)}
    return GradingSettings(**{k: v for k, v in values.items() if k in known})


def defaults() -> dict:
    """Field name -> default value (for the CLI)."""
    return {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(GradingSettings)}
