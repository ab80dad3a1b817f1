"""How a notebook or script of the course runs: quick, retrain, where checkpoints go, shipped results.

One place reads the environment variables the course knows, so notebooks, scripts, benchmarks and
tests agree on their names and meaning:

- ``COURSE_QUICK=1``: retrain for one epoch only (tests and CI smoke runs);
- ``COURSE_RETRAIN=1``: retrain instead of loading the shipped results;
- ``COURSE_CHECKPOINTS=DIR``: where retrained models go (default ``./checkpoints``);
- ``NBGRADER_EXECUTION`` (set by nbgrader while it grades): optional training is skipped;
- ``COURSE_NO_FIGURES=1`` (set by the grader in its kernels): the course's figures are not drawn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

TRAINED_DIR = Path(__file__).resolve().parent / "trained"  # the shipped results of the solutions

QUICK_VAR, RETRAIN_VAR, CHECKPOINTS_VAR = "COURSE_QUICK", "COURSE_RETRAIN", "COURSE_CHECKPOINTS"
NO_FIGURES_VAR = "COURSE_NO_FIGURES"
NBGRADER_VAR = "NBGRADER_EXECUTION"


@dataclass(frozen=True)
class RunSettings:
    """What a notebook should do: train or load, for how long, and where results live."""

    quick: bool
    retrain: bool
    checkpoint_dir: Path
    trained_dir: Path = TRAINED_DIR
    in_nbgrader: bool = False  # the notebook runs under nbgrader: train nothing optional
    draw_figures: bool = True  # False in the grader's kernels: no grade looks at a figure

    def epochs(self, full: int) -> int:
        """The number of epochs to train: ``full``, or 1 in quick mode."""
        return 1 if self.quick else full

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables a child process reads."""
        return {QUICK_VAR: "1" if self.quick else "", RETRAIN_VAR: "1" if self.retrain else "",
                CHECKPOINTS_VAR: str(self.checkpoint_dir)}


def run_settings(retrain: bool = False, env: Optional[Mapping[str, str]] = None) -> RunSettings:
    """Settings from the environment; ``retrain=True`` (a notebook's own switch) forces retraining."""
    env = os.environ if env is None else env
    quick = env.get(QUICK_VAR) == "1"
    return RunSettings(
        quick=quick,
        retrain=retrain or quick or env.get(RETRAIN_VAR) == "1",  # quick mode always trains
        checkpoint_dir=Path(env.get(CHECKPOINTS_VAR) or "checkpoints"),
        in_nbgrader=NBGRADER_VAR in env,
        draw_figures=env.get(NO_FIGURES_VAR) != "1",
    )
