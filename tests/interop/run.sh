#!/usr/bin/env bash
# Interop smoke test: js-libp2p (tests/interop/smoke.mjs) against a Flotilla node.
#
# Usage: tests/interop/run.sh [BIN_OR_EXAMPLE]
#   BIN_OR_EXAMPLE: a path to an executable that prints `LISTEN <multiaddr>` (see
#   examples/p2p_node.rs), or the name of a cargo example (default: p2p_node), built with -j1.
# Needs node >= 20 and npm (installs the pinned packages from package-lock.json once).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
interop_node "${1:-p2p_node}"
if [[ ! -d "$here/node_modules" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

interop_start

status=0
node "$here/smoke.mjs" "$addr" | tee "$client_log" || status=$?
interop_check "$status" js
