#!/usr/bin/env bash
# Interop smoke test: py-libp2p (tests/interop/py/smoke.py) against a Flotilla node.
# The Python twin of run.sh: same node, same checks on the node's output.
#
# Usage: tests/interop/run_py.sh [BIN_OR_EXAMPLE]
#   BIN_OR_EXAMPLE: a path to an executable that prints `LISTEN <multiaddr>` (see
#   examples/p2p_node.rs), or the name of a cargo example (default: p2p_node), built with -j1.
# Python: $INTEROP_PYTHON if set (scripts/test passes its venv's), else the venv .venv-interop
# at the repo root, made and filled from py/requirements.txt (needs Python 3.11 with pip).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
interop_node "${1:-p2p_node}"
if [[ -n "${INTEROP_PYTHON:-}" ]]; then
  py=$INTEROP_PYTHON
else
  # shellcheck source=../../scripts/venv.sh
  source "$root/scripts/venv.sh"
  venv_install "$root/.venv-interop" "$here/py/requirements.txt"
  py="$root/.venv-interop/bin/python"
fi

interop_start

status=0
# smoke.py bounds each wait itself; the outer timeout only guards against a hang in py-libp2p.
PYTHONDONTWRITEBYTECODE=1 timeout 120 "$py" "$here/py/smoke.py" "$addr" | tee "$client_log" || status=$?
interop_check "$status" py
