"""grading.intake.collect: student ids that never merge two students, and bounded, streamed reading."""

from __future__ import annotations

import io
import os
import re
import struct
import tracemalloc
import unicodedata
import zipfile
import zlib

import pytest

from grading.intake import collect as collect_module
from grading.intake.collect import CollectLimits, collect, student_id_of

HOSTILE_NAMES = [
    "张三", "李四", "王五", "Zoë", "Zoé", "Zoe", "Zo", "Ng, Anh", "Ng Anh", "Ng-Anh", "Ng_Anh", "ng anh",
    "alice", "Alice", "ALICE", "O'Brien", "OBrien", "José María", "Jose Maria", "Søren", "Soren", "Ødegaard",
    "Дмитрий", "Дмитрiй", "محمد", "🙂", "🙃", "  spaced  ", "spaced", ".hidden", "hidden", "-dash", "dash",
    "..", ".", "a/b", "a\\b", "con", "x" * 200, "x" * 201, "Zo-0123456789", "Zoe-" + "a" * 10,
    "Jane Doe_123_assignsubmission_file_", "tab\tname", "new\nline", "nul\x00byte",
]
VALID_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def test_ids_are_unique_valid_and_stable_for_hostile_names():
    """Distinct names never share an id; every id is a safe folder name; the same name gives the same id."""
    ids = {name: student_id_of(name) for name in HOSTILE_NAMES}
    assert len(set(ids.values())) == len(HOSTILE_NAMES), ids
    for name, sid in ids.items():
        assert VALID_ID.fullmatch(sid), (name, sid)
        assert sid not in (".", "..") and student_id_of(name) == sid
    assert ids["alice"] == "alice" and ids["Jane Doe_123_assignsubmission_file_"].startswith("Jane-Doe_123")
    assert ids["Zoë"].startswith("Zoe-") and ids["张三"].startswith("student-")
    # the same name typed decomposed (a macOS zip) is the same student
    assert student_id_of(unicodedata.normalize("NFD", "Zoë")) == ids["Zoë"]


def _notebook(tmp_path, relative: str, text: str = "{}"):
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_collect_keeps_every_student_and_the_original_name(tmp_path):
    """Folders 张三/ and 李四/, Zoë/Zoé, 'Ng, Anh'/'Ng Anh' are five students, named as handed in."""
    names = ["张三", "李四", "Zoë", "Zoé", "Ng, Anh", "Ng Anh"]
    for name in names:
        _notebook(tmp_path / "subs", f"{name}/optimization.ipynb", '{"name": "%s"}' % name)
    subs, warnings = collect(tmp_path / "subs")
    assert not warnings
    assert sorted(s.student_name for s in subs) == sorted(names)
    assert len({s.student_id for s in subs}) == len(names)
    for sub in subs:
        assert sub.read().decode() == '{"name": "%s"}' % sub.student_name
        assert sub.student_id == student_id_of(sub.student_name)


def test_collect_maps_folders_flat_names_zips_and_patterns(tmp_path):
    """Ids come from folders, file-name prefixes, zips and a custom regex; the newest file wins."""
    _notebook(tmp_path, "dir/alice/Copy of optimization.ipynb")
    _notebook(tmp_path, "dir/bob_optimization.ipynb")
    _notebook(tmp_path, "dir/nounderscore.ipynb")
    _notebook(tmp_path, "dir/carol/.ipynb_checkpoints/optimization-checkpoint.ipynb")
    subs, warnings = collect(tmp_path / "dir")
    assert [s.student_id for s in subs] == ["alice", "bob"]
    assert len(warnings) == 1 and "nounderscore" in warnings[0]
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(zipfile.ZipInfo("Jane Doe_123_assignsubmission_file_/opt.ipynb", (2024, 1, 1, 0, 0, 0)), "{1}")
        z.writestr(zipfile.ZipInfo("Jane Doe_123_assignsubmission_file_/v2.ipynb", (2024, 1, 2, 0, 0, 0)), "{2}")
    subs, _ = collect(archive, pattern=r"^[^_]+_(?P<student_id>\d+)_")
    assert [(s.student_id, s.origin) for s in subs] == [("123", "Jane Doe_123_assignsubmission_file_/v2.ipynb")]
    assert subs[0].read() == b"{2}" and not subs[0].notes  # a pattern's key is no LMS id: each is graded
    assert [(s.student_id, s.origin, s.read()) for s in subs[0].alternates] == [
        ("123", "Jane Doe_123_assignsubmission_file_/opt.ipynb", b"{1}")]


def test_several_notebooks_of_a_name_are_all_kept_for_grading(tmp_path):
    """One folder, three notebooks: the newest is the submission, the others its alternates, oldest first."""
    for i, name in enumerate(["b.ipynb", "a.ipynb", "c.ipynb"]):
        path = _notebook(tmp_path, f"dir/alice/{name}", f"{{{i}}}")
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    [sub], warnings = collect(tmp_path / "dir")
    assert not warnings and sub.origin == "alice/c.ipynb" and not sub.notes
    assert [(s.origin, s.student_id, s.read()) for s in sub.alternates] == [("alice/b.ipynb", "alice", b"{0}"),
                                                                            ("alice/a.ipynb", "alice", b"{1}")]


def test_homonyms_of_an_lms_download_stay_two_students(tmp_path):
    """Canvas file names and Moodle folders key students by the LMS's id: same names, two students."""
    archive = tmp_path / "canvas.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(zipfile.ZipInfo("smithjohn_2001_501_optimization.ipynb", (2024, 1, 1, 0, 0, 0)), "{1}")
        z.writestr(zipfile.ZipInfo("smithjohn_2002_502_optimization.ipynb", (2024, 1, 2, 0, 0, 0)), "{2}")
        z.writestr(zipfile.ZipInfo("smithjohn_LATE_2002_503_optimization-1.ipynb", (2024, 1, 3, 0, 0, 0)), "{3}")
    subs, warnings = collect(archive)
    assert not warnings
    by_origin = {s.origin: s for s in subs}
    assert sorted(by_origin) == ["smithjohn_2001_501_optimization.ipynb",
                                 "smithjohn_LATE_2002_503_optimization-1.ipynb"]
    assert [s.student_name for s in subs] == ["smithjohn", "smithjohn"]
    assert len({s.student_id for s in subs}) == 2
    late = by_origin["smithjohn_LATE_2002_503_optimization-1.ipynb"]
    assert late.read() == b"{3}" and not late.alternates
    assert late.notes[0].startswith("WARNING: 2 notebooks handed in under one LMS id; graded the latest")
    folder = tmp_path / "moodle"
    _notebook(folder, "John Smith_11_assignsubmission_file_/optimization.ipynb", "{11}")
    _notebook(folder, "John Smith_12_assignsubmission_file_/optimization.ipynb", "{12}")
    subs, warnings = collect(folder)
    assert not warnings and [s.student_name for s in subs] == ["John Smith", "John Smith"]
    assert sorted(s.read() for s in subs) == [b"{11}", b"{12}"] and len({s.student_id for s in subs}) == 2
    # the id depends on the LMS id and the name alone: the same student keeps it across batches
    again, _ = collect(folder)
    assert [s.student_id for s in again] == [s.student_id for s in subs]


def test_a_file_name_that_is_not_utf8_is_kept_escaped(tmp_path):
    """A Latin-1 file name beside a UTF-8 one: both collected, the bytes escaped losslessly, with a note."""
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / b"Zo\xeb_optimization.ipynb".decode("utf-8", "surrogateescape")).write_text("{latin}")
    _notebook(folder, "Zoë_optimization.ipynb", "{utf8}")
    subs, warnings = collect(folder)
    assert not warnings and len(subs) == 2 and len({s.student_id for s in subs}) == 2
    latin = next(s for s in subs if s.read() == b"{latin}")
    assert latin.origin == "Zo\\xeb_optimization.ipynb" and latin.student_name == "Zo\\xeb"
    assert "not valid UTF-8" in latin.notes[0]
    for sub in subs:
        (sub.origin + sub.student_name + sub.student_id + " ".join(sub.notes)).encode("utf-8")


def test_a_shared_id_is_resolved_with_the_long_hash(tmp_path, monkeypatch):
    """Should two names ever give one id (a hash collision), both get longer ids and a warning."""
    monkeypatch.setattr(collect_module, "student_id_of", lambda name: "same")
    _notebook(tmp_path, "subs/Zoë/a.ipynb")
    _notebook(tmp_path, "subs/Zoé/a.ipynb")
    subs, warnings = collect(tmp_path / "subs")
    assert len({s.student_id for s in subs}) == 2 and all(len(s.student_id) == len("Zoe-") + 16 for s in subs)
    assert any("would share the id" in w for w in warnings)


def _bomb_zip(path, members: int, mb: int) -> None:
    """A zip of ``members`` notebooks that each expand to ``mb`` MB of spaces (compressed once, stored n times)."""
    chunk, compressor, crc, parts = b" " * 2**20, zlib.compressobj(9, zlib.DEFLATED, -15), 0, []
    for _ in range(mb):
        parts.append(compressor.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    data, size = b"".join(parts) + compressor.flush(), mb * 2**20
    central = []
    with open(path, "wb") as f:
        for i in range(members):
            name, offset = f"student{i}/optimization.ipynb".encode(), f.tell()
            f.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0))
            f.write(name + data)
            central.append(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                                       len(name), 0, 0, 0, 0, 0, offset) + name)
        start = f.tell()
        f.write(b"".join(central))
        f.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, members, members, f.tell() - start, start, 0))


def _peak_of(function):
    """(result, peak traced memory in bytes) of calling function()."""
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zip_of_huge_notebooks_is_streamed_in_bounded_memory(tmp_path):
    """Five 150 MB notebooks in a sub-MB zip are named as zip bombs without being held in memory; five
    30 MB ones are collected (measured and hashed) without being held either."""
    bombs, big = tmp_path / "bombs.zip", tmp_path / "big.zip"
    _bomb_zip(bombs, 5, 150)
    assert bombs.stat().st_size < 2**20
    (subs, warnings), peak = _peak_of(lambda: collect(bombs))
    assert subs == [] and len(warnings) == 5 and peak < 20 * 2**20, f"collect() peaked at {peak / 2**20:.0f} MB"
    assert all(f"student{i}/optimization.ipynb" in w and "zip bomb" in w for i, w in enumerate(warnings))
    _bomb_zip(big, 5, 30)
    (subs, warnings), peak = _peak_of(lambda: collect(big))
    assert not warnings and len(subs) == 5 and all(s.size == 30 * 2**20 for s in subs)
    assert peak < 20 * 2**20, f"collect() peaked at {peak / 2**20:.0f} MB"
    assert len({s.sha256 for s in subs}) == 1 and len(subs[0].read()) == 30 * 2**20


def test_oversized_notebooks_are_left_out_with_a_warning(tmp_path):
    """A folder notebook over the limit is named as too large; the others are collected."""
    _notebook(tmp_path, "dir/alice/optimization.ipynb", "x" * 5000)
    _notebook(tmp_path, "dir/bob/optimization.ipynb", "{}")
    subs, warnings = collect(tmp_path / "dir", limits=CollectLimits(max_notebook_bytes=1000))
    assert [s.student_id for s in subs] == ["bob"]
    assert len(warnings) == 1 and "alice/optimization.ipynb" in warnings[0] and "larger than" in warnings[0]


def test_total_expanded_size_is_capped(tmp_path):
    """After max_total_bytes of expanded data, further notebooks are left out, each named."""
    archive = tmp_path / "many.zip"
    _bomb_zip(archive, 4, 3)
    subs, warnings = collect(archive, limits=CollectLimits(max_total_bytes=7 * 2**20, max_ratio=10_000))
    assert len(subs) == 2
    assert len(warnings) == 2 and all("in total" in w or "already expanded" in w for w in warnings)
    assert "student2/optimization.ipynb" in warnings[0] and "student3/optimization.ipynb" in warnings[1]


def test_zip_header_sizes_are_not_trusted(tmp_path):
    """A member whose headers claim 10 bytes but whose data expands further is reported, not read short."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("liar/optimization.ipynb", b"{" + b" " * 100_000 + b"}")
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        struct.pack_into("<I", data, at + offset, 10)
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    subs, warnings = collect(archive)
    assert subs == [] and len(warnings) == 1 and "liar/optimization.ipynb" in warnings[0]


def test_symbolic_links_are_left_out(tmp_path):
    """A notebook that is a link (to anywhere on the grading machine) is not read."""
    target = _notebook(tmp_path, "secret.ipynb", '{"secret": 1}')
    (tmp_path / "subs" / "mallory").mkdir(parents=True)
    (tmp_path / "subs" / "mallory" / "optimization.ipynb").symlink_to(target)
    subs, warnings = collect(tmp_path / "subs")
    assert subs == [] and "symbolic link" in warnings[0]


def test_read_is_bounded_when_a_file_grows(tmp_path):
    """A file that grew past the limit after collect() is refused when read."""
    path = _notebook(tmp_path, "subs/alice/optimization.ipynb", "{}")
    (sub,), _ = collect(tmp_path / "subs", limits=CollectLimits(max_notebook_bytes=100))
    path.write_text("x" * 1000)
    with pytest.raises(ValueError, match="larger than"):
        sub.read()


def test_damaged_member_and_bad_pattern(tmp_path):
    """A member damaged after collect() reads as Unreadable (a ValueError); a pattern without the
    student_id group is refused at once."""
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("alice/optimization.ipynb", "{" + " " * 10_000 + "}")
    (sub,), _ = collect(archive)
    data = bytearray(archive.read_bytes())
    data[40:60] = b"\xff" * 20  # inside the compressed data
    archive.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="unreadable"):
        sub.read()
    with pytest.raises(ValueError, match="named group"):
        collect(archive, pattern=r"^(\w+)/")


def test_one_name_cannot_multiply_the_grading_cost(tmp_path):
    """Of ten notebooks in one folder only the newest MAX_GRADED_PER_NAME are kept for grading; a WARNING
    names the others."""
    for i in range(10):
        path = _notebook(tmp_path, f"dir/mallory/{i}.ipynb", f"{{{i}}}")
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    [sub], _ = collect(tmp_path / "dir")
    kept = [s.origin for s in sub.alternates] + [sub.origin]
    assert kept == [f"mallory/{i}.ipynb" for i in range(10 - collect_module.MAX_GRADED_PER_NAME, 10)]
    assert sub.notes[0].startswith("WARNING: 10 notebooks handed in under one name; only the newest")
    assert "mallory/0.ipynb" in sub.notes[0] and "mallory/9.ipynb" not in sub.notes[0]
