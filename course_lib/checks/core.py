"""Verdict records, property bookkeeping and the safe loading of one exercise's result file."""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

MAX_RESULT_BYTES = 64 * 2**20  # a result file above this is rejected unread
MAX_NOTE_CHARS = 300


@dataclass
class PropertyVerdict:
    """One named property of an exercise: its share of the points and whether the submission has it."""

    name: str
    weight: float
    passed: bool
    message: str = ""


@dataclass
class ExerciseVerdict:
    """The verdict on one exercise: its properties, the fraction of its points earned, a general note."""

    exercise: str
    properties: List[PropertyVerdict]
    fraction: float
    note: str = ""
    review: str = ""  # why a person should look at it (the grader could not judge it): a review flag


def make_verdict(exercise: str, properties: List[PropertyVerdict], note: str = "") -> ExerciseVerdict:
    """An ExerciseVerdict whose fraction is the passed weight over the total weight."""
    total = sum(p.weight for p in properties)
    earned = sum(p.weight for p in properties if p.passed)
    fraction = round(earned / total, 12) if total > 0 else 0.0
    return ExerciseVerdict(exercise, properties, fraction, note)


def failed_verdict(exercise: str, weights: Dict[str, float], note: str) -> ExerciseVerdict:
    """Every property failed for the same reason (no result, unreadable result...)."""
    return make_verdict(exercise, [PropertyVerdict(n, w, False, note) for n, w in weights.items()], note)


def cap(text: str, limit: int = MAX_NOTE_CHARS) -> str:
    """``text`` shortened to ``limit`` characters."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Result files --------------------------------------------------------------------------------------------


class ResultError(Exception):
    """The result file of an exercise is missing or unusable; the message is the note for the student."""


@dataclass
class Results:
    """What the probe recorded for one exercise: tensors named ``run/name`` and each failed run's error."""

    tensors: Dict[str, torch.Tensor]
    errors: Dict[str, str] = field(default_factory=dict)
    error: str = ""
    oracles: Tuple[str, ...] = ()  # torch's ready implementations the student's code called while probed

    def run(self, run: str) -> Optional[Dict[str, torch.Tensor]]:
        """The tensors of one run (None if that run raised or was not recorded)."""
        prefix = f"{run}/"
        found = {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        return found or None

    def run_error(self, run: str) -> str:
        """Why a run has no tensors, as a sentence."""
        error = self.errors.get(run) or self.error
        return f"your code raised {cap(error)}" if error else "your code produced no result for this test"


def _read_capped(path: Path) -> bytes:
    """The bytes of a regular file (no symlink, no FIFO), at most MAX_RESULT_BYTES."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise ResultError("missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise ResultError("the grader could not read what your code produced for this exercise (not a plain file)")
    if info.st_size > MAX_RESULT_BYTES:
        raise ResultError(f"what your code produced for this exercise is larger than {MAX_RESULT_BYTES >> 20} MB; "
                          f"it was not read")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ResultError("the grader could not read what your code produced for this exercise")
        chunks, size = [], 0
        while size <= MAX_RESULT_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_RESULT_BYTES:
        raise ResultError(f"what your code produced for this exercise is larger than {MAX_RESULT_BYTES >> 20} MB")
    return b"".join(chunks)


def _parse_safetensors(data: bytes) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors and metadata of safetensors bytes (never pickle); ResultError if malformed."""
    from safetensors.torch import load

    unreadable = ResultError("the grader could not read what your code produced for this exercise (not a valid "
                             "results file); run the notebook from the top without changing the grading code")
    if len(data) < 8:
        raise unreadable
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise unreadable
    try:
        header = json.loads(data[8: 8 + header_len])
        metadata = header.get("__metadata__") or {}
        tensors = load(data)
    except Exception:
        raise unreadable from None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise unreadable
    return tensors, metadata


def load_results(path: Path, exercise: str, expected: Dict[str, Tuple[Tuple[int, ...], torch.dtype]]) -> Results:
    """Load and validate an exercise's result file against the names, shapes and dtypes it must have."""
    return validated_results(*_parse_safetensors(_read_capped(path)), exercise, expected)


def validated_results(tensors: Dict[str, torch.Tensor], metadata: Dict[str, str], exercise: str,
                      expected: Dict[str, Tuple[Tuple[int, ...], torch.dtype]]) -> Results:
    """What a run of an exercise recorded (tensors and the probe's metadata), checked against the names, shapes
    and dtypes it must have; ResultError with the note for the student if it is unusable."""
    if metadata.get("exercise") != exercise:
        raise ResultError("the results recorded for this exercise belong to another exercise; run the notebook "
                          "from the top without changing the grading code")
    for name, tensor in tensors.items():
        if name not in expected:
            raise ResultError("the results recorded for this exercise hold unexpected entries; run the notebook "
                              "from the top without changing the grading code")
        shape, dtype = expected[name]
        if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
            raise ResultError(f"a result of this exercise has shape {tuple(tensor.shape)} ({tensor.dtype}) instead of "
                              f"{tuple(shape)}; keep the parameters' shapes and do not replace the model's layers")
        if not bool(torch.isfinite(tensor).all()):
            raise ResultError("your code produced NaN or infinite values for this exercise (for example a division "
                              "by zero or a square root of a negative number)")
    try:
        errors = json.loads(metadata.get("errors") or "{}")
        errors = {str(k): cap(v) for k, v in errors.items()} if isinstance(errors, dict) else {}
    except ValueError:
        errors = {}
    try:
        oracles = json.loads(metadata.get("oracles") or "[]")
        oracles = tuple(cap(str(o), 80) for o in oracles[:20]) if isinstance(oracles, list) else ()
    except ValueError:
        oracles = ()
    return Results(tensors, errors, cap(metadata.get("error", "")), oracles)


def missing_note(results_dir: Path, exercise: str) -> str:
    """The note for an exercise whose result file does not exist."""
    return ("your code did not run to this exercise's test cell (an earlier cell raised an error, stopped the "
            "kernel or ran out of time), so this exercise could not be tested")
