#!/usr/bin/env bash
# kinesis_mock.sh: starts kinesis-mock (npm kinesis-local, installed by `make deps`) on a
# free loopback port with the given streams, and waits until they are ACTIVE.
#
#   eval "$(tests/tools/kinesis_mock.sh start [STREAM[:SHARDS]]...)"
#       prints shell assignments and returns once every stream is ACTIVE:
#         KINESIS_MOCK_PID=...       the node process (stop it with `stop`)
#         KINESIS_MOCK_PORT=...      plain HTTP port on 127.0.0.1
#         KINESIS_MOCK_ENDPOINT=http://127.0.0.1:PORT
#         KINESIS_MOCK_REGION=...    the region the streams live in
#         KINESIS_MOCK_LOG=...       its log file
#       Default stream: kte-test:1. Region: $AWS_REGION, else us-east-1.
#       Set KINESIS_MOCK_LOG_LEVEL (default WARN) for more mock logging, and
#       KINESIS_MOCK_SHARD_LIMIT (default 50, kinesis-mock's own) for more open shards (the
#       stream generations of kinesis_fault_proxy.js --spread-records).
#   tests/tools/kinesis_mock.sh stop PID
#       SIGTERM, waits up to 5 s for it to exit, then SIGKILL.
#
# Typical use in a test:
#   eval "$(tests/tools/kinesis_mock.sh start mystream:2)"
#   trap 'tests/tools/kinesis_mock.sh stop $KINESIS_MOCK_PID' EXIT
# Ports are picked at run time (never fixed); a start that loses the port race retries.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mockdir="$root/tests/node/node_modules/kinesis-local"

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

cmd_start() {
  local streams=() region=${AWS_REGION:-us-east-1} s init="" log pid port tls attempt
  [ $# -gt 0 ] || set -- kte-test:1
  for s in "$@"; do
    case "$s" in *:*) ;; *) s="$s:1" ;; esac
    streams+=("${s%%:*}")
    init="${init:+$init,}$s:$region"
  done
  if [ ! -f "$mockdir/main.js" ]; then
    echo "kinesis_mock.sh: $mockdir/main.js missing: run 'make deps'" >&2
    return 1
  fi
  log=$(mktemp "${TMPDIR:-/tmp}/kinesis-mock.XXXXXX.log")
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    tls=$(free_port)
    # Its own working directory: it reads server.json from there.
    ( cd "$mockdir" && KINESIS_MOCK_PLAIN_PORT=$port KINESIS_MOCK_TLS_PORT=$tls \
        INITIALIZE_STREAMS="$init" CREATE_STREAM_DURATION=0ms AWS_REGION="$region" \
        LOG_LEVEL=${KINESIS_MOCK_LOG_LEVEL:-WARN} SHOULD_PERSIST_DATA=false \
        SHARD_LIMIT=${KINESIS_MOCK_SHARD_LIMIT:-50} \
        exec node --max-semi-space-size=64 main.js ) >>"$log" 2>&1 </dev/null &
    pid=$!
    local ok=1
    for s in "${streams[@]}"; do
      # wait-active polls until the port answers and the stream is ACTIVE (or gives up).
      if ! node "$here/kinesis_client.js" --endpoint "http://127.0.0.1:$port" --region "$region" \
           wait-active "$s" 60000 2>>"$log"; then
        ok=0
        break
      fi
      kill -0 "$pid" 2>/dev/null || { ok=0; break; }
    done
    if [ $ok = 1 ] && kill -0 "$pid" 2>/dev/null; then
      echo "KINESIS_MOCK_PID=$pid"
      echo "KINESIS_MOCK_PORT=$port"
      echo "KINESIS_MOCK_ENDPOINT=http://127.0.0.1:$port"
      echo "KINESIS_MOCK_REGION=$region"
      echo "KINESIS_MOCK_LOG=$log"
      return 0
    fi
    cmd_stop "$pid" >/dev/null 2>&1 || true
    echo "kinesis_mock.sh: attempt $attempt failed (port $port), retrying" >&2
  done
  echo "kinesis_mock.sh: could not start kinesis-mock; log: $log" >&2
  tail -20 "$log" >&2 || true
  return 1
}

cmd_stop() {
  local pid=${1:?usage: kinesis_mock.sh stop PID} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 start [STREAM[:SHARDS]]... | stop PID" >&2; exit 2 ;;
esac
