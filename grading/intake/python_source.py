"""Notebook cells as Python: IPython's syntax turned into plain calls, and parsed one thread at a time.

CPython 3.11 keeps the depth counter it checks while turning a parsed cell into ``ast`` objects in the
interpreter, shared by all threads. A thread switch inside that conversion (a garbage collection running a
finalizer) lets a second thread's parse move the counter, and one of them fails with ``SystemError: AST
constructor recursion depth mismatch`` (python/cpython#106905). A Dask worker or ``--jobs 2`` grades two
submissions in threads of one process, so every parse in the grader goes through ``parse`` and its lock.
"""

from __future__ import annotations

import ast
import threading
from typing import Optional

_PARSE_LOCK = threading.Lock()


def as_python(source: str) -> str:
    """A cell's source as plain Python (``!ls`` -> ``get_ipython().system("ls")``); as written where
    IPython is missing or its transformers fail (the cell then fails to parse where it would fail to run)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # no IPython: plain Python cells still parse
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython's transformers raise many kinds of errors on bad input
        return source


def parse(text: str) -> Optional[ast.Module]:
    """``text``'s syntax tree, or None where it does not parse (bad syntax, a null byte, nesting too deep)."""
    with _PARSE_LOCK:
        try:
            return ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
