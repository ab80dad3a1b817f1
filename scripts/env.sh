# Sourced by build.sh and test.sh: install what is missing, then set the environment both run in.
bash scripts/install.sh
export MPLBACKEND=Agg
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repo-local instructor package `grading`
export PATH="$PWD/.venv/bin:$PATH"  # nbgrader runs the venv's alembic, jupyter, ...
