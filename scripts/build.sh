#!/usr/bin/env bash
# The main job of the README: install what is missing, then build the course website into _build/html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export MPLBACKEND=Agg
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repo-local instructor package `grading`
export PATH="$PWD/.venv/bin:$PATH"  # nbgrader runs the venv's alembic, jupyter, ...
.venv/bin/jupyter-book build . -W -n --keep-going
echo "Site built: $(pwd)/_build/html/index.html"
