#!/usr/bin/env bash
# Drive `flotilla --mcp-stdio` with the MCP Inspector CLI (@modelcontextprotocol/inspector,
# pinned in package.json; install it first with `npm ci --prefix tests/clients/node`).
#
#   tests/clients/node/inspector_test.sh path/to/flotilla
#
# Every inspector call spawns its own flotilla on one data dir: the workflow submitted by one
# call is in the SQLite store for the next, and a call that starts while another one's engine
# still runs relays to it over the engine's Unix socket.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 FLOTILLA_BIN" >&2
    exit 2
fi
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [[ ! -x "$BIN" ]]; then
    echo "inspector: $1 is not an executable file" >&2
    exit 2
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE"   # npx finds the pinned inspector in ./node_modules
if [[ ! -x node_modules/.bin/mcp-inspector ]]; then
    echo "inspector: node_modules missing; run: npm ci --prefix tests/clients/node" >&2
    exit 2
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-inspector.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
mkdir -p "$DIR/data" "$DIR/xdg-config"
DATA="$DIR/data"
# No user config file; keep flotilla's stderr short.
export XDG_CONFIG_HOME="$DIR/xdg-config"
export FLOTILLA_LOG="${FLOTILLA_LOG:-warn}"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok   $1"; }
bad() { failed=$((failed + 1)); echo "  FAIL $1" >&2; }

# inspector ARGS... : one inspector CLI call on our server; JSON result on stdout. Its stderr
# (ajv's "unknown format" notes on schemars' uint formats, npm notes) goes to $DIR/stderr and
# is shown only when the call fails.
inspector() {
    if ! timeout 60 npx --offline @modelcontextprotocol/inspector --cli \
        "$BIN" --mcp-stdio --no-p2p --data-dir "$DATA" "$@" 2>"$DIR/stderr"; then
        echo "inspector call failed: $*" >&2
        cat "$DIR/stderr" >&2
        return 1
    fi
}

# json EXPR : evaluate a JS expression over the JSON document on stdin, bound to `r`.
json() {
    node -e '
        let s = "";
        process.stdin.on("data", (d) => (s += d));
        process.stdin.on("end", () => {
            const r = JSON.parse(s);
            const v = eval(process.argv[1]);
            process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));
        });' "$1"
}

echo "inspector: @modelcontextprotocol/inspector $(node -p 'require("./node_modules/@modelcontextprotocol/inspector/package.json").version') against $BIN"

# 1. tools/list: the queue and status tools (at least these 11), each with an output schema.
expected="cancel_workflow detect_hardware get_recent_logs get_service_health get_system_status get_task_output get_workflow_status list_workflows search_logs set_task_priority submit_p2p_workflow"
list=$(inspector --method tools/list) || list='{"tools":[]}'
names=$(printf '%s' "$list" | json 'r.tools.map((t) => t.name).sort().join(" ")')
missing=""
for t in $expected; do
    [[ " $names " == *" $t "* ]] || missing="$missing $t"
done
if [[ -z "$missing" ]]; then
    ok "tools/list lists the queue and status tools"
else
    bad "tools/list: missing [$missing] in [$names]"
fi
no_schema=$(printf '%s' "$list" | json 'r.tools.filter((t) => !t.outputSchema).map((t) => t.name).join(" ")')
if [[ -z "$no_schema" && -n "$names" ]]; then
    ok "every tool has an outputSchema"
else
    bad "tools without outputSchema: [$no_schema]"
fi
destructive=$(printf '%s' "$list" | json 'String((r.tools.find((t) => t.name === "cancel_workflow") || {}).annotations?.destructiveHint)')
if [[ "$destructive" == "true" ]]; then
    ok "cancel_workflow is annotated destructive"
else
    bad "cancel_workflow destructiveHint is $destructive"
fi

# 2. tools/call submit_p2p_workflow. The 0.15.0 CLI takes --tool-arg key=value and JSON-parses
#    the value when the tool's inputSchema types that property as an array or an object.
tasks='[{"command":["sh","-c","echo one"]},{"command":["echo","two"]},{"command":["true"]}]'
sub=$(inspector --method tools/call --tool-name submit_p2p_workflow \
    --tool-arg name=inspector-smoke "tasks=$tasks") || sub='{}'
wf=$(printf '%s' "$sub" | json 'r.isError ? "" : (r.structuredContent?.workflow_id ?? "")')
ntasks=$(printf '%s' "$sub" | json 'String(r.structuredContent?.tasks)')
if [[ "$wf" == wf-* && "$ntasks" == 3 ]]; then
    ok "submit_p2p_workflow queued $wf with 3 tasks"
else
    bad "submit_p2p_workflow: $sub"
fi

# 3. tools/call get_workflow_status until completed.
status=none
seen=""
if [[ -n "$wf" ]]; then
    for _ in $(seq 1 30); do
        st=$(inspector --method tools/call --tool-name get_workflow_status --tool-arg "workflow_id=$wf") || st='{}'
        status=$(printf '%s' "$st" | json 'r.structuredContent?.status ?? "none"')
        seen="$seen $status"
        case "$status" in
            completed | failed | cancelled) break ;;
        esac
        sleep 1
    done
fi
if [[ "$status" == completed ]]; then
    done_n=$(printf '%s' "$st" | json 'String(r.structuredContent.completed) + "/" + String(r.structuredContent.total)')
    if [[ "$done_n" == 3/3 ]]; then
        ok "get_workflow_status: $wf completed 3/3 (polls:$seen)"
    else
        bad "get_workflow_status: completed but $done_n tasks done"
    fi
else
    bad "get_workflow_status: $wf ended $status, not completed: ${st:-}"
fi

# 4. The destructive tool refuses without confirm=true.
refused=$(inspector --method tools/call --tool-name cancel_workflow --tool-arg "workflow_id=${wf:-none}") || refused='{}'
if [[ $(printf '%s' "$refused" | json 'String(r.isError === true && JSON.stringify(r.content).includes("confirm=true"))') == true ]]; then
    ok "cancel_workflow without confirm=true is refused"
else
    bad "cancel_workflow without confirm: $refused"
fi

echo "inspector: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
