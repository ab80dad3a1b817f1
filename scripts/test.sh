#!/usr/bin/env bash
# The test command of the README: install what is missing, lint, then run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k data`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
echo "== ruff check (configured in pyproject.toml)"
.venv/bin/ruff check .
# pytest exits 5 when it collected no test: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
