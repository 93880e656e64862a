# Shared by run.sh (js-libp2p) and run_py.sh (py-libp2p): build and start the Flotilla node,
# then check its output for what a client's smoke run must have caused.
# Source it after setting `here` and `root`; the caller sets `client_log` before the checks.

# interop_node TARGET: sets `bin` to the node executable (a path, or a cargo example built here).
interop_node() {
  local target=$1 target_dir=${CARGO_TARGET_DIR:-$root/target}
  case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
  if [[ -x "$target" && ! -d "$target" ]]; then
    bin=$target
  else
    (cd "$root" && cargo build -j1 --quiet --example "$target")
    bin="$target_dir/debug/examples/$target"
  fi
}

# interop_start: runs `bin`, waits for its `LISTEN <multiaddr>` line, sets `addr`, `pid`,
# `rust_log` and `client_log`, and cleans both up on exit.
interop_start() {
  rust_log=$(mktemp)
  client_log=$(mktemp)
  "$bin" >"$rust_log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$rust_log" "$client_log"' EXIT
  for _ in $(seq 100); do
    grep -q '^LISTEN ' "$rust_log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$rust_log"; echo "FAIL: node exited"; exit 1; }
    sleep 0.1
  done
  addr=$(grep -m1 '^LISTEN ' "$rust_log" | cut -d' ' -f2)
  [[ -n "$addr" ]] || { cat "$rust_log"; echo "FAIL: no LISTEN line"; exit 1; }
  echo "rust node: $addr"
}

# interop_check STATUS CLIENT: the node penalised and banned the garbage sender (A_PEER in
# `client_log`), accepted a fresh peer's valid message (B_PEER) and is alive; exits.
interop_check() {
  status=$1
  local client=$2 a_peer b_peer
  a_peer=$(awk '/^A_PEER /{print $2}' "$client_log")
  b_peer=$(awk '/^B_PEER /{print $2}' "$client_log")
  expect() { # expect PATTERN DESCRIPTION: wait up to 5 s for PATTERN in the node's output
    for _ in $(seq 50); do grep -q -- "$1" "$rust_log" && { echo "ok: $2"; return 0; }; sleep 0.1; done
    echo "FAIL: $2 (no '$1' in the node's output)"; status=1
  }
  if [[ $status -eq 0 ]]; then
    expect "^PENALISED $a_peer 1 -" "garbage rejected and the sender penalised"
    expect "^BANNED $a_peer" "the sender banned after repeated garbage"
    expect "^MESSAGE $b_peer " "a valid message from a fresh $client peer accepted afterwards"
  fi
  kill -0 "$pid" 2>/dev/null || { echo "FAIL: the node died"; status=1; }
  echo "--- node output ---"
  cat "$rust_log"
  [[ $status -eq 0 ]] && echo "INTEROP OK" || echo "INTEROP FAILED"
  exit "$status"
}
