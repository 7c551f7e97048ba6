#!/usr/bin/env bash
# Offline-sync pushes: `loadtest --scenario sync` (batches of 100 operations over REST, back to
# back) against one release hub on CPU 0, the harness on CPU 1.
#   scripts/bench-sync.sh sqlite|postgres     ARGS="..." to change the loadtest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/loadtest-env.sh
ARGS=${ARGS:-"--users 20 --rooms 4 --duration 20"}
backend=${1:-sqlite}
dir=$(mktemp -d)
pg=postgres://postgres@127.0.0.1:5432
db="bench_sync_$(date +%s%N)"
cleanup() { kill -TERM ${pid:-0} 2>/dev/null || true; wait 2>/dev/null || true; [ "$backend" = postgres ] && psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; rm -rf "$dir"; }
trap cleanup EXIT
if [ "$backend" = postgres ]; then
  psql "$pg/postgres" -qc "CREATE DATABASE $db"
  export DATABASE_URL=$pg/$db
fi
port=$(free_port)
HUB_LOG=warn HUB_LISTEN=127.0.0.1:$port HUB_DATA_DIR=$dir taskset -c 0 ./target/release/hub &
pid=$!
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:$port/health >/dev/null 2>&1 && break; sleep 0.1; done
taskset -c 1 ./target/release/loadtest --scenario sync --url http://127.0.0.1:$port --hub-pid $pid $ARGS
