"""Grade on a university cluster: Dask workers as SLURM jobs (dask-jobqueue), the scheduler in this process.

    python -m grading.running.cluster_recipes.slurm ASSIGNMENT PATH --db-url postgresql+psycopg2://USER@HOST/DB \
        [--jobs 20] [--partition PART] [--account ACCT] [--print-job-script]

Every worker job starts from the same checkout (COURSE_DIR, a shared home or project folder) and its
venv: the grader checks each worker's course identity against this one before its first submission.
Each job runs one worker with one thread (one submission at a time) and enough memory for the
sandboxed kernel (--memory-mb) plus the grader.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from grading.course import REPO_ROOT

COURSE_DIR = REPO_ROOT  # the checkout the worker jobs run from


def slurm_cluster(course_dir: Path = COURSE_DIR, cpus: int = 2, memory: str = "8GB", walltime: str = "04:00:00",
                  partition: Optional[str] = None, account: Optional[str] = None, **kwargs):
    """A dask_jobqueue.SLURMCluster whose jobs each run one grading worker from ``course_dir`` (nothing is
    submitted before ``cluster.scale(n)``)."""
    from dask_jobqueue import SLURMCluster

    prologue = [f"cd {course_dir}",
                "source .venv/bin/activate",  # the same venv as the client: the identity check compares versions
                f"export PYTHONPATH={course_dir} MPLBACKEND=Agg",
                "export GRADING_WORKER_DIR=${TMPDIR:-/tmp}/grading-worker"]  # node-local scratch for workspaces
    # one worker thread (one submission at a time); the job's other CPUs serve the sandboxed kernel
    return SLURMCluster(cores=1, job_cpu=cpus, processes=1, memory=memory, walltime=walltime, queue=partition,
                        account=account, job_script_prologue=prologue, job_name="grading-worker", **kwargs)


def main(argv: Optional[list[str]] = None) -> int:
    """Start the SLURM workers, grade through them, stop them."""
    from distributed import Client

    from grading.grade import main as grade_main

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="SLURM jobs (one worker each)")
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument("--print-job-script", action="store_true", help="print the job script and stop")
    known, rest = parser.parse_known_args(argv)
    cluster = slurm_cluster(partition=known.partition, account=known.account)
    try:
        if known.print_job_script:
            print(cluster.job_script())
            return 0
        cluster.scale(known.jobs)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=3600)
            return grade_main(rest + ["--cluster", cluster.scheduler_address])
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
