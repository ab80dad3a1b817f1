"""Run a batch on this machine: ``settings.jobs`` submissions at once, each in a thread of its own."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Iterator

from grading.running.submission import Batch, Job, StudentResult, grade_job


def grade_locally(batch: Batch, todo: list[Job]) -> Iterator[StudentResult]:
    """Grade the jobs on this machine, ``settings.jobs`` at once; yield each as it finishes."""
    with ThreadPoolExecutor(max_workers=max(1, batch.settings.jobs)) as pool:
        futures = [pool.submit(grade_job, batch, j) for j in todo]
        for future in as_completed(futures):
            yield future.result()
