"""Every CSV the grader writes and reads: cells a spreadsheet cannot run, of a size every reader accepts.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a formula by
Excel, LibreOffice and Google Sheets, quoted or not (OWASP, "CSV injection"); student names and notes
reach these files, so such a cell gets a leading ``'`` (numbers, negative ones included, are left as
they are). Cells are capped at ``MAX_CELL_CHARS`` (Excel's limit is 32,767) with a note of what was cut,
and readers accept fields up to ``MAX_FIELD_CHARS``, far above anything written here.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
MAX_CELL_CHARS = 32_000
MAX_FIELD_CHARS = 64 * 2**20


def safe_cell(value: Any) -> Any:
    """The value as a spreadsheet shows it and never evaluates; numbers unchanged, text capped."""
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    if len(text) > MAX_CELL_CHARS:
        cut = len(text) - MAX_CELL_CHARS
        text = f"{text[:MAX_CELL_CHARS]} [... {cut} characters cut]"
    if text.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(text):
        text = "'" + text
    return text


def write_rows(path: Path, rows: Iterable[Sequence[Any]], *, quote_all: bool = False) -> None:
    """Rows to a UTF-8 CSV file (written beside it, then moved into place), every cell made safe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        writer.writerows([safe_cell(v) for v in row] for row in rows)
    tmp.replace(path)


def write_dicts(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Dicts to a UTF-8 CSV file with a header; keys not in ``fields`` are ignored, missing ones empty."""
    write_rows(path, [list(fields), *([row.get(f, "") for f in fields] for row in rows)])


def read_dicts(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file (UTF-8, a BOM allowed), fields of any size written here."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows
