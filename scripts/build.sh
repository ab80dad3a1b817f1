#!/usr/bin/env bash
# The main job of the README: install what is missing, then build the course website into _build/html.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
.venv/bin/jupyter-book build . -W -n --keep-going
echo "Site built: $(pwd)/_build/html/index.html"
