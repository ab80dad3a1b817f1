"""Find the submitted notebooks in a folder or an LMS zip and map each to a student.

Rules, first match wins (paths are relative to the folder or zip root, with '/' separators):
1. ``--pattern REGEX`` (like nbgrader zip_collect's ``FileNameCollectorPlugin.named_regexp``): a
   regular expression with a named group ``student_id``, searched in the relative path;
2. an LMS download (``lms_student_of``): a Canvas file name ``lastfirst[_LATE]_<user id>_<submission
   id>_<name>`` or a Moodle folder ``<Full Name>_<participant id>_assignsubmission_<plugin>_``: the
   student is the LMS's id, the name kept beside it, so two students with the same name stay two;
3. a notebook inside a folder: the first folder names the student (``alice/optimization.ipynb``,
   or nbgrader's own ``submitted/alice/optimization/optimization.ipynb``);
4. a notebook at the top: the name is the file name up to the first ``_`` (``alice_optimization.ipynb``).
When one LMS id has several notebooks (attempts: Canvas names a resubmission ``..._LATE_...``), the
latest is graded and the row carries a WARNING naming the others. When any other key (a name, a folder,
a pattern's group) has several, nothing says which one counts: the newest is the ``Submission`` and the
others its ``alternates`` (the newest ``MAX_GRADED_PER_NAME`` in all; older ones are named in a WARNING); the
pipeline grades each and keeps the best (running.submission). Whatever the file is called, it is graded as
the assignment's notebook. A file name that is not valid UTF-8 is kept
losslessly with its undecodable bytes escaped (``Zo\\xeb_optimization.ipynb``), with a note.

Student ids (``student_id_of``): the name as found (NFC-normalized, so a macOS zip's decomposed
``Zoë`` is the same student) when it is already a safe id (``[A-Za-z0-9_][A-Za-z0-9._-]*``, at most
40 characters, not ending in what looks like our hash); otherwise an ASCII slug of it (accents
dropped by NFKD, other characters become ``-``) plus ``-`` and 10 hex digits of the SHA-256 of the
name. So ``张三`` -> ``student-1d841bc0ee``, ``Zoë`` -> ``Zoe-c6a1269858``, ``Ng, Anh`` -> ``Ng-Anh-222700571b``:
ids depend on the name alone (stable across batches), two names never share an id (short of a hash
collision, which ``collect`` detects and resolves with the full hash), and every id is a valid folder
name and gradebook key. The original name is kept as ``Submission.student_name``.

Nothing is held in memory: ``collect`` reads each notebook once through a bounded reader (never
trusting a zip header's sizes) to measure and hash it, and ``Submission.read()`` reads it again when
the pipeline places it. Notebooks over ``CollectLimits.max_notebook_bytes``, zip members that expand
past ``max_ratio`` times their compressed size beyond that cap (zip bombs), and whatever comes after
``max_total_bytes`` of expanded data are left out with a warning naming the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator, Optional

IGNORED_PARTS = ("__MACOSX", ".ipynb_checkpoints")
# The download formats of the LMSs: Canvas names files, Moodle names folders, each with its own id.
CANVAS_FILE = re.compile(r"^(?P<name>[^_]+)_(?:LATE_)?(?P<user>\d+)_(?P<submission>\d+)_")
MOODLE_FOLDER = re.compile(r"^(?P<name>.+?)_(?P<participant>\d+)_assignsubmission_[a-z]+_?$")
CHUNK = 1 << 20
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,39}")
HASHED_ID = re.compile(r".*-[0-9a-f]{10}(?:[0-9a-f]{6})?")
HASH_DIGITS, LONG_HASH_DIGITS = 10, 16
MAX_SLUG = 40
# Notebooks of one name that are each graded (the newest); more would let one student multiply the batch's cost.
MAX_GRADED_PER_NAME = 4


@dataclass(frozen=True)
class CollectLimits:
    """Size limits of what collect() reads (bytes; ratio = expanded / compressed size in a zip)."""

    max_notebook_bytes: int = 50 * 2**20
    max_total_bytes: int = 4 * 2**30
    max_ratio: float = 100.0


class TooLarge(ValueError):
    """A notebook (or archive) expands beyond a limit."""


class Unreadable(ValueError):
    """A notebook that cannot be read (a damaged zip member, a file gone)."""


READ_ERRORS = (OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


@dataclass
class Submission:
    """One student's notebook, as handed in; its bytes are read on demand with ``read()``."""

    student_id: str
    student_name: str
    origin: str
    timestamp: dt.datetime
    size: int
    sha256: str
    opener: Callable[[], BinaryIO] = field(repr=False)
    max_bytes: int = CollectLimits.max_notebook_bytes
    notes: list[str] = field(default_factory=list)
    alternates: list["Submission"] = field(default_factory=list)  # other notebooks of the key, oldest first

    def read(self) -> bytes:
        """The notebook's bytes, read now; TooLarge past the size limit, Unreadable (both ValueError)."""
        try:
            with self.opener() as stream:
                data = stream.read(self.max_bytes + 1)
        except READ_ERRORS as exc:
            raise Unreadable(f"{self.origin}: unreadable ({type(exc).__name__}: {exc})") from exc
        if len(data) > self.max_bytes:
            raise TooLarge(f"{self.origin}: larger than {self.max_bytes // 2**20} MB")
        return data

    @property
    def data(self) -> bytes:
        """The notebook's bytes (alias of ``read()``, for callers of the old API)."""
        return self.read()


def _slug(name: str) -> str:
    """ASCII letters, digits and ._- of a name (accents transliterated), at most MAX_SLUG long."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name).strip("-.")[:MAX_SLUG].strip("-.")
    return slug or "student"


def student_id_of(name: str, digits: int = HASH_DIGITS) -> str:
    """A unique, stable id for a student name, valid as a folder name and gradebook key."""
    name = unicodedata.normalize("NFC", name)
    if SAFE_ID.fullmatch(name) and not HASHED_ID.fullmatch(name):
        return name
    return f"{_slug(name)}-{hashlib.sha256(name.encode()).hexdigest()[:digits]}"


def lms_student_of(relative: str) -> Optional[tuple[str, str]]:
    """(name, LMS id) of a path in a Canvas or Moodle download, or None (the id: ``canvas-7``, ``moodle-9``)."""
    path = PurePosixPath(relative)
    canvas = CANVAS_FILE.match(path.name)
    if canvas:
        return canvas["name"], f"canvas-{canvas['user']}"
    for part in path.parts[:-1]:
        moodle = MOODLE_FOLDER.match(part)
        if moodle:
            return moodle["name"], f"moodle-{moodle['participant']}"
    return None


def student_key_of(relative: str, pattern: Optional[str]) -> Optional[tuple[str, str]]:
    """(key, name) of a relative path: notebooks with one key are one student's; None when no rule applies."""
    if not pattern:
        lms = lms_student_of(relative)
        if lms:
            name = unicodedata.normalize("NFC", lms[0].strip())
            return f"{name}_{lms[1]}", name
    name = student_of(relative, pattern)
    return (name, name) if name else None


def student_of(relative: str, pattern: Optional[str]) -> Optional[str]:
    """The student name (as found, NFC) of a relative path by the pattern or the folder and file rules."""
    if pattern:
        found = re.search(pattern, relative)
        name = found.group("student_id") if found else None
    else:
        parts = PurePosixPath(relative).parts
        stem = PurePosixPath(relative).stem
        if len(parts) > 1:
            name = parts[1] if parts[0] == "submitted" and len(parts) > 2 else parts[0]
        else:
            name = stem.split("_", 1)[0] if "_" in stem else None
    name = unicodedata.normalize("NFC", name.strip()) if name else None
    return name or None


@dataclass
class _Entry:
    relative: str
    timestamp: dt.datetime
    opener: Optional[Callable[[], BinaryIO]]  # None: a symbolic link, left out
    compressed: Optional[int]  # zip members only
    note: str = ""


def _zip_entries(path: Path) -> Iterator[_Entry]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    for info in infos:
        if info.is_dir() or not info.filename.endswith(".ipynb"):
            continue

        def opener(info: zipfile.ZipInfo = info) -> BinaryIO:
            archive = zipfile.ZipFile(path)
            try:
                stream = archive.open(info)
            except BaseException:
                archive.close()
                raise
            archive.close()  # the member stream keeps the file open (reference-counted) until it is closed
            return stream

        try:
            stamp = dt.datetime(*info.date_time)
        except ValueError:
            stamp = dt.datetime(1980, 1, 1)
        yield _Entry(info.filename, stamp, opener, info.compress_size)


def _folder_entries(path: Path) -> Iterator[_Entry]:
    for folder, dirs, files in os.walk(path):  # symbolic links to folders are not followed
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".ipynb"):
                continue
            file = Path(folder) / name
            relative, note = printable_path(file.relative_to(path).as_posix())
            if file.is_symlink():
                yield _Entry(relative, dt.datetime.fromtimestamp(0), None, None)
                continue
            stamp = dt.datetime.fromtimestamp(file.stat().st_mtime)
            yield _Entry(relative, stamp, lambda file=file: open(file, "rb"), None, note)


def printable_path(relative: str) -> tuple[str, str]:
    """A path as valid text (undecodable bytes escaped as ``\\xNN``) and a note when it needed that."""
    try:
        relative.encode("utf-8")
        return relative, ""
    except UnicodeEncodeError:  # os.walk hands undecodable bytes over as lone surrogates
        escaped = os.fsencode(relative).decode("utf-8", "backslashreplace")
        return escaped, f"the file name is not valid UTF-8: its bytes are kept escaped ({escaped})"


def _entries(path: Path) -> Iterator[_Entry]:
    """Every notebook in a folder or zip, not yet read."""
    if path.is_file() and zipfile.is_zipfile(path):
        yield from _zip_entries(path)
    elif path.is_dir():
        yield from _folder_entries(path)
    else:
        raise FileNotFoundError(f"{path} is neither a folder nor a zip file")


def _measure(entry: _Entry, limits: CollectLimits, budget: int) -> tuple[int, str]:
    """Size and SHA-256 of an entry, streamed in chunks; TooLarge past a limit."""
    digest, size = hashlib.sha256(), 0
    cap = min(limits.max_notebook_bytes, budget)
    with entry.opener() as stream:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            digest.update(chunk)
            if size > cap:
                mb = limits.max_notebook_bytes // 2**20
                if entry.compressed is not None and size > limits.max_ratio * max(entry.compressed, 1):
                    raise TooLarge(f"expands beyond {mb} MB from {entry.compressed} bytes (compression "
                                   f"ratio over {limits.max_ratio:g}:1): looks like a zip bomb, left out")
                if size > budget:
                    raise TooLarge(f"the archive expands beyond {limits.max_total_bytes // 2**20} MB in total: "
                                   "left out (raise CollectLimits.max_total_bytes if this is no zip bomb)")
                raise TooLarge(f"larger than {mb} MB, left out (raise CollectLimits.max_notebook_bytes)")
    return size, digest.hexdigest()


def _assign_ids(names: set[str]) -> tuple[dict[str, str], list[str]]:
    """name -> id for every name; a (vanishingly rare) shared id is resolved with the long hash."""
    ids = {name: student_id_of(name) for name in names}
    by_id: dict[str, list[str]] = {}
    for name, sid in ids.items():
        by_id.setdefault(sid, []).append(name)
    warnings = []
    for sid, same in by_id.items():
        if len(same) > 1:
            for name in same:
                ids[name] = f"{_slug(name)}-{hashlib.sha256(name.encode()).hexdigest()[:LONG_HASH_DIGITS]}"
            warnings.append(f"students {same!r} would share the id {sid!r}: given the ids "
                            f"{[ids[n] for n in same]!r}")
    return ids, warnings


def collect(path: Path, pattern: Optional[str] = None, limits: Optional[CollectLimits] = None, *,
            max_notebook_bytes: Optional[int] = None) -> tuple[list[Submission], list[str]]:
    """Submissions found under ``path`` (one per student) and warnings about files left out."""
    limits = limits or CollectLimits()
    if max_notebook_bytes is not None:
        limits = dataclasses.replace(limits, max_notebook_bytes=max_notebook_bytes)
    if pattern and "student_id" not in re.compile(pattern).groupindex:
        raise ValueError(f"the pattern {pattern!r} needs a named group (?P<student_id>...)")
    found: dict[str, list[Submission]] = {}
    lms_keys: set[str] = set()  # keys that are an LMS's id (several notebooks: attempts, the latest counts)
    warnings: list[str] = []
    budget = limits.max_total_bytes
    for entry in _entries(Path(path)):
        relative = entry.relative
        if any(part in IGNORED_PARTS for part in PurePosixPath(relative).parts):
            continue
        key = student_key_of(relative, pattern)
        if key is None:
            warnings.append(f"{relative}: no student id (see the instructor docs for file-name rules)")
            continue
        if entry.opener is None:
            warnings.append(f"{relative}: a symbolic link, left out")
            continue
        if budget <= 0:
            warnings.append(f"{relative}: left out, the archive already expanded beyond "
                            f"{limits.max_total_bytes // 2**20} MB (raise CollectLimits.max_total_bytes)")
            continue
        try:
            size, digest = _measure(entry, limits, budget)
        except TooLarge as exc:
            warnings.append(f"{relative}: {exc}")
            budget -= min(budget, limits.max_notebook_bytes)
            continue
        except (*READ_ERRORS, ValueError) as exc:
            warnings.append(f"{relative}: unreadable ({type(exc).__name__}: {exc}), left out")
            continue
        budget -= size
        sub = Submission("", key[1], relative, entry.timestamp, size, digest, entry.opener, limits.max_notebook_bytes,
                         [entry.note] if entry.note else [])
        found.setdefault(key[0], []).append(sub)
        if not pattern and lms_student_of(relative):
            lms_keys.add(key[0])
    ids, id_warnings = _assign_ids(set(found))
    warnings += id_warnings
    submissions = []
    for key, items in sorted(found.items(), key=lambda item: ids[item[0]]):
        items.sort(key=lambda s: (s.timestamp, s.origin))
        chosen = items[-1]
        chosen.student_id = ids[key]
        if len(items) > 1 and key in lms_keys:
            others = ", ".join(s.origin for s in items[:-1])
            chosen.notes.append(f"WARNING: {len(items)} notebooks handed in under one LMS id; graded the latest "
                                f"({chosen.origin}), not {others}")
        elif len(items) > 1:
            chosen.alternates = items[-MAX_GRADED_PER_NAME:-1]
            if len(items) > MAX_GRADED_PER_NAME:
                left = ", ".join(s.origin for s in items[:-MAX_GRADED_PER_NAME])
                chosen.notes.append(f"WARNING: {len(items)} notebooks handed in under one name; only the newest "
                                    f"{MAX_GRADED_PER_NAME} are graded, not {left}")
            for other in chosen.alternates:
                other.student_id = ids[key]
        submissions.append(chosen)
    return submissions, warnings
