#!/usr/bin/env bash
# Set up everything the course needs on a Debian machine (as root, or with sudo): system packages,
# the virtual environment in .venv with requirements.txt, and the FashionMNIST data.
# Re-runnable: each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist chromium chromium-driver bubblewrap postgresql)
PYTHON=${PYTHON:-python3}
VENV=.venv

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)  # for axe-core (the site's accessibility test)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
stamp=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$stamp" ]; then
  # uv resolves and installs in under a minute what pip takes four for; pip is the fallback where uv
  # cannot be installed. Bytecode is compiled now: the sandboxed kernels cannot write it later.
  # (pip here warns about local index folders that do not exist: noise, filtered out)
  if "$VENV/bin/pip" install -q --disable-pip-version-check "uv>=0.5" 2>/dev/null; then
    echo "== uv pip install -r requirements.txt"
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --compile-bytecode -r requirements.txt
  else
    echo "== pip install -r requirements.txt (uv unavailable)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt 2>&1 \
      | { grep -v -e "^WARNING: Location" -e BuildBackendWarning || true; }
  fi
  "$VENV/bin/pip" check
  echo "$stamp" > "$VENV/.requirements.sha256"
fi

# axe-core, the accessibility engine the site test runs in Chromium, pinned, in .axe/ (not committed)
AXE_VERSION=4.14.1
if [ "$(node -p "require('./.axe/node_modules/axe-core/package.json').version" 2>/dev/null)" != "$AXE_VERSION" ]; then
  echo "== npm install axe-core@$AXE_VERSION"
  npm install --silent --no-audit --no-fund --prefix .axe "axe-core@$AXE_VERSION" >/dev/null
fi

echo "== FashionMNIST"
"$VENV/bin/python" -c "from course_lib.data import prepare_fashion_mnist; print('verified in', prepare_fashion_mnist())"
