# shellcheck shell=bash
# Sourced by bin/*: make .venv (Python 3.11+) and install the pinned requirements when
# they changed since the last install.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
ensure_venv() {
  local requirements=$1 stamp
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  stamp="$VENV/.installed-$(cat "$ROOT/requirements.txt" "$ROOT/$requirements" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$requirements"
    touch "$stamp"
  fi
}
