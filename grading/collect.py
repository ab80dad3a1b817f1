"""Find the submitted notebooks in a folder or an LMS zip and map each to a student id.

Rules, first match wins (paths are relative to the folder or zip root, with '/' separators):
1. ``--pattern REGEX`` (like nbgrader zip_collect's ``FileNameCollectorPlugin.named_regexp``): a
   regular expression with a named group ``student_id``, searched in the relative path;
2. a notebook inside a folder: the first folder is the student id (``alice/optimization.ipynb``,
   or nbgrader's own ``submitted/alice/optimization/optimization.ipynb``);
3. a notebook at the top: the id is the file name up to the first ``_`` (``alice_optimization.ipynb``).
Ids are reduced to ``[A-Za-z0-9._-]``. When a student has several notebooks, the newest is graded
(the others are reported). Whatever the file is called, it is graded as the assignment's notebook.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

MAX_NOTEBOOK_BYTES = 200 * 2**20
IGNORED_PARTS = ("__MACOSX", ".ipynb_checkpoints")


@dataclass
class Submission:
    """One student's notebook, as handed in."""

    student_id: str
    origin: str
    data: bytes
    timestamp: dt.datetime
    notes: list[str] = field(default_factory=list)


def clean_id(raw: str) -> str:
    """A student id safe as an nbgrader folder name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", raw.strip()).strip("-.")
    return cleaned or "unknown"


def student_of(relative: str, pattern: Optional[str]) -> Optional[str]:
    """The student id of a relative path, or None when no rule applies."""
    if pattern:
        found = re.search(pattern, relative)
        return clean_id(found.group("student_id")) if found else None
    parts = PurePosixPath(relative).parts
    if len(parts) > 1:
        return clean_id(parts[1] if parts[0] == "submitted" and len(parts) > 2 else parts[0])
    stem = PurePosixPath(relative).stem
    return clean_id(stem.split("_", 1)[0]) if "_" in stem else None


def _entries(path: Path):
    """(relative path, bytes reader, timestamp) of every notebook in a folder or zip."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(".ipynb"):
                    continue
                if info.file_size > MAX_NOTEBOOK_BYTES:
                    yield info.filename, None, dt.datetime(*info.date_time)
                    continue
                yield info.filename, archive.read(info), dt.datetime(*info.date_time)
    elif path.is_dir():
        for file in sorted(path.rglob("*.ipynb")):
            stamp = dt.datetime.fromtimestamp(file.stat().st_mtime)
            size_ok = file.stat().st_size <= MAX_NOTEBOOK_BYTES
            yield file.relative_to(path).as_posix(), file.read_bytes() if size_ok else None, stamp
    else:
        raise FileNotFoundError(f"{path} is neither a folder nor a zip file")


def collect(path: Path, pattern: Optional[str] = None) -> tuple[list[Submission], list[str]]:
    """Submissions found under ``path`` (one per student) and warnings about files left out."""
    by_student: dict[str, list[Submission]] = {}
    warnings = []
    for relative, data, stamp in _entries(Path(path)):
        if any(part in IGNORED_PARTS for part in PurePosixPath(relative).parts):
            continue
        student = student_of(relative, pattern)
        if student is None:
            warnings.append(f"{relative}: no student id (see grading/README.md for file-name rules)")
            continue
        if data is None:
            warnings.append(f"{relative}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB, left out")
            continue
        by_student.setdefault(student, []).append(Submission(student, relative, data, stamp))
    submissions = []
    for student, items in sorted(by_student.items()):
        items.sort(key=lambda s: (s.timestamp, s.origin))
        chosen = items[-1]
        if len(items) > 1:
            others = ", ".join(s.origin for s in items[:-1])
            chosen.notes.append(f"{len(items)} notebooks handed in; graded the newest, not {others}")
        submissions.append(chosen)
    return submissions, warnings
