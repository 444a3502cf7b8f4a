#!/usr/bin/env bash
# RFC 6455 conformance: Autobahn|Testsuite's fuzzingclient against an interface server
# running an echo consumer (tools/echo_server.py). See shared docs/conformance.md.
#
#   bash tools/autobahn.sh                      # cases 1-7, 9, 10, 12, 13 (~20 min on 2 cores)
#   AUTOBAHN_CASES="1.* 2.* 3.* 4.* 5.* 6.* 7.*" bash tools/autobahn.sh   # seconds
#   AUTOBAHN_LAYER=shm bash tools/autobahn.sh   # through the shared-memory layer
#
# The Python 2.7 wstest environment is built once in $WSTEST_ENV (default: a directory
# under /tmp) and reused. Exit status: 0 when no case FAILED, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
WSTEST_ENV=${WSTEST_ENV:-/tmp/shmchannels-wstest}
CASES=${AUTOBAHN_CASES:-"1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.* 12.* 13.*"}
LAYER=${AUTOBAHN_LAYER:-inmemory}
PORT=${AUTOBAHN_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}

if [ ! -x "$WSTEST_ENV/ab27/bin/wstest" ]; then
    echo "building the wstest environment in $WSTEST_ENV (once, ~1 min)"
    PY27="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/2.7.18/bin/python"
    [ -x "$PY27" ] || { echo "Python 2.7.18 not found at $PY27 (pyenv install 2.7.18)"; exit 2; }
    mkdir -p "$WSTEST_ENV"
    python3 -m venv "$WSTEST_ENV/ab-tools"
    "$WSTEST_ENV/ab-tools/bin/pip" install -q 'virtualenv==20.21.1'
    "$WSTEST_ENV/ab-tools/bin/virtualenv" -q -p "$PY27" "$WSTEST_ENV/ab27"
    "$WSTEST_ENV/ab27/bin/pip" install -q 'autobahntestsuite==25.10.1'
fi

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" tools/echo_server.py "$PORT" --layer "$LAYER" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null; then break; fi
    sleep 0.1
done

CASE_JSON=$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1].split()))' "$CASES")
OUTDIR=${AUTOBAHN_REPORTS:-/tmp/shmchannels-autobahn-reports}
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
cat >"$WORK/fuzzingclient.json" <<JSON
{
  "outdir": "$OUTDIR",
  "servers": [{"agent": "shmchannels-interface", "url": "ws://127.0.0.1:$PORT/"}],
  "cases": $CASE_JSON,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
echo "running Autobahn fuzzingclient, cases: $CASES (layer: $LAYER, port $PORT)"
(cd "$WORK" && "$WSTEST_ENV/ab27/bin/wstest" -m fuzzingclient -s fuzzingclient.json >"$WORK/wstest.log" 2>&1) || {
    echo "wstest failed:"; tail -20 "$WORK/wstest.log"; exit 1; }

"$PY" - "$OUTDIR/index.json" <<'PYEOF'
import collections, json, sys
index = json.load(open(sys.argv[1]))
results = next(iter(index.values()))
passing = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
counts = collections.Counter()
failed = []
def key(case):
    return [int(p) for p in case.split(".")]
for case in sorted(results, key=key):
    r = results[case]
    counts[r["behavior"]] += 1
    if r["behavior"] not in passing or r["behaviorClose"] not in passing:
        failed.append((case, r["behavior"], r["behaviorClose"]))
print("Autobahn summary:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), f"({len(results)} cases)")
for case, behavior, close in failed:
    print(f"  FAILED {case}: behavior={behavior} close={close}")
print("PASS" if not failed else f"FAIL ({len(failed)} cases)")
sys.exit(1 if failed else 0)
PYEOF
