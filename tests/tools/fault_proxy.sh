#!/usr/bin/env bash
# fault_proxy.sh: starts tests/tools/kinesis_fault_proxy.js in the background on ephemeral
# ports in front of UPSTREAM and waits until it listens.
#
#   eval "$(tests/tools/fault_proxy.sh start UPSTREAM_URL [proxy options...])"
#       prints FAULT_PROXY_PID, FAULT_PROXY_PORT, FAULT_PROXY_CONTROL_PORT,
#       FAULT_PROXY_ENDPOINT (http://127.0.0.1:PORT, what the client under test uses),
#       FAULT_PROXY_CONTROL (http://127.0.0.1:CONTROL_PORT) and FAULT_PROXY_LOG.
#   tests/tools/fault_proxy.sh stop PID
# Faults are then set with: curl -s -X POST "$FAULT_PROXY_CONTROL/__fault" -d '{...}'
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

case "${1:-}" in
  start)
    shift
    up=${1:?usage: fault_proxy.sh start UPSTREAM_URL [options]}
    shift
    out=$(mktemp "${TMPDIR:-/tmp}/fault-proxy.XXXXXX.out")
    log="${out%.out}.log"
    node "$here/kinesis_fault_proxy.js" --upstream "$up" "$@" >"$out" 2>"$log" </dev/null &
    pid=$!
    for _ in $(seq 1 200); do
      if [ -s "$out" ]; then
        read -r port cport <"$out"
        rm -f "$out"
        echo "FAULT_PROXY_PID=$pid"
        echo "FAULT_PROXY_PORT=$port"
        echo "FAULT_PROXY_CONTROL_PORT=$cport"
        echo "FAULT_PROXY_ENDPOINT=http://127.0.0.1:$port"
        echo "FAULT_PROXY_CONTROL=http://127.0.0.1:$cport"
        echo "FAULT_PROXY_LOG=$log"
        exit 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    echo "fault_proxy.sh: proxy did not start; log: $log" >&2
    cat "$log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1 ;;
  stop)
    pid=${2:?usage: fault_proxy.sh stop PID}
    kill -TERM "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true ;;
  *) echo "usage: $0 start UPSTREAM_URL [options] | stop PID" >&2; exit 2 ;;
esac
