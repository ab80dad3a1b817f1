#!/usr/bin/env bash
# The test command of the README: install what is missing, lint, then run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k data`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# pytest-xdist runs one worker per core, and each worker starts kernels, graders and the book build: a second
# torch thread per process only spins against the others. Six notebook kernels at torch's default 2 threads
# on 2 cores took over 200 s for a 6 s training cell (its CI timeout); at 1 thread each, 44 s.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
echo "== ruff check (configured in pyproject.toml)"
.venv/bin/ruff check .
# pytest exits 5 when it collected no test: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
