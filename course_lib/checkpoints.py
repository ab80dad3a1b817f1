"""Weights (torch.save of a state dict, read back with ``weights_only=True``) beside a JSON config.

A model named ``NAME`` in folder ``DIR`` is three files: ``NAME.pt`` (weights), ``NAME.config.json``
(the model's ``config``) and ``NAME.results.json`` (curves, test accuracy and provenance).
No pickle of Python objects is ever written or read.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

PathLike = Union[str, os.PathLike]


class ConfigMismatchError(ValueError):
    """A checkpoint's stored config does not describe the model it is loaded into."""


def shown_path(path: PathLike) -> str:
    """A folder as a reader should see it: inside the course_lib package as ``course_lib/...``, else relative
    to the working folder when below it, else as given (no build machine's absolute path on a page)."""
    path = Path(path)
    package = Path(__file__).resolve().parent
    for base, prefix in ((package, Path("course_lib")), (Path.cwd().resolve(), Path("."))):
        try:
            return (prefix / path.resolve().relative_to(base)).as_posix()
        except ValueError:
            continue
    return str(path)


def checkpoint_paths(directory: PathLike, model_name: str) -> Dict[str, Path]:
    """Return the weights, config and results paths of ``model_name`` in ``directory``."""
    d = Path(directory)
    return {
        "weights": d / f"{model_name}.pt",
        "config": d / f"{model_name}.config.json",
        "results": d / f"{model_name}.results.json",
    }


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    _atomic_write(Path(path), write)


def read_json(path: PathLike) -> Any:
    """Read a JSON file."""
    with open(path) as f:
        return json.load(f)


def save_model(model: torch.nn.Module, directory: PathLike, model_name: str) -> None:
    """Save ``model``'s weights (moved to CPU) and its ``config`` beside them."""
    paths = checkpoint_paths(directory, model_name)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_write(paths["weights"], lambda tmp: torch.save(state, tmp))
    write_json(paths["config"], model.config)


def check_config(expected: Dict[str, Any], stored: Dict[str, Any], source: str = "checkpoint") -> None:
    """Raise ConfigMismatchError naming every field where ``stored`` differs from ``expected``."""
    differences = [
        f"{key}: model has {expected.get(key)!r}, {source} has {stored.get(key)!r}"
        for key in sorted(set(expected) | set(stored))
        if expected.get(key) != stored.get(key)
    ]
    if differences:
        raise ConfigMismatchError(f"{source} does not match the model: " + "; ".join(differences))


def load_model(model: torch.nn.Module, directory: PathLike, model_name: str) -> torch.nn.Module:
    """Load weights into ``model`` after checking the stored config field by field; return it."""
    paths = checkpoint_paths(directory, model_name)
    check_config(model.config, read_json(paths["config"]), source=str(paths["config"]))
    device = next(model.parameters()).device
    state = torch.load(paths["weights"], map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model


def checkpoint_exists(directory: Optional[PathLike], model_name: str) -> bool:
    """True if all three files of ``model_name`` are in ``directory``."""
    if directory is None:
        return False
    return all(p.is_file() for p in checkpoint_paths(directory, model_name).values())
