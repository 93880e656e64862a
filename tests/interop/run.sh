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
target=${1:-p2p_node}
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac

if [[ -x "$target" && ! -d "$target" ]]; then
  bin=$target
else
  (cd "$root" && cargo build -j1 --quiet --example "$target")
  bin="$target_dir/debug/examples/$target"
fi
if [[ ! -d "$here/node_modules" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

rust_log=$(mktemp)
js_log=$(mktemp)
"$bin" >"$rust_log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$rust_log" "$js_log"
}
trap cleanup EXIT

for _ in $(seq 100); do
  grep -q '^LISTEN ' "$rust_log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$rust_log"; echo "FAIL: node exited"; exit 1; }
  sleep 0.1
done
addr=$(grep -m1 '^LISTEN ' "$rust_log" | cut -d' ' -f2)
[[ -n "$addr" ]] || { cat "$rust_log"; echo "FAIL: no LISTEN line"; exit 1; }
echo "rust node: $addr"

status=0
node "$here/smoke.mjs" "$addr" | tee "$js_log" || status=$?
a_peer=$(awk '/^A_PEER /{print $2}' "$js_log")
b_peer=$(awk '/^B_PEER /{print $2}' "$js_log")

expect() { # expect PATTERN DESCRIPTION: wait up to 5 s for PATTERN in the node's output
  for _ in $(seq 50); do grep -q -- "$1" "$rust_log" && { echo "ok: $2"; return 0; }; sleep 0.1; done
  echo "FAIL: $2 (no '$1' in the node's output)"; status=1
}
if [[ $status -eq 0 ]]; then
  expect "^PENALISED $a_peer 1 -" "garbage rejected and the sender penalised"
  expect "^BANNED $a_peer" "the sender banned after repeated garbage"
  expect "^MESSAGE $b_peer " "a valid message from a fresh js peer accepted afterwards"
fi
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the node died"; status=1; }
echo "--- node output ---"
cat "$rust_log"
[[ $status -eq 0 ]] && echo "INTEROP OK" || echo "INTEROP FAILED"
exit $status
