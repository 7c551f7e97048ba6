#!/usr/bin/env bash
# Broadcast on one hub vs on a cluster of N nodes (a throwaway Redis), the same loadtest run:
# every hub on CPU 0, the harness on CPU 1, a fresh PostgreSQL database each time.
#   scripts/bench-cluster.sh 1|N     ARGS="..." to change the loadtest arguments; OUT=dir for the JSON
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/loadtest-env.sh
ARGS=${ARGS:-"--users 300 --rooms 10 --rate 1000 --duration 20 --op broadcast"}
pg=postgres://postgres@127.0.0.1:5432
mode=$1
db="bench_$(date +%s%N)"
psql "$pg/postgres" -qc "CREATE DATABASE $db"
dir=$(mktemp -d)
pids=(); urls=()
cleanup() { for p in "${pids[@]}"; do kill -TERM $p 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${rport:-}" ] && redis-cli -p $rport shutdown nosave >/dev/null 2>&1 || true; psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; }
trap cleanup EXIT
if [ "$mode" = 1 ]; then
  port=$(free_port)
  DATABASE_URL=$pg/$db HUB_LOG=warn HUB_LISTEN=127.0.0.1:$port HUB_DATA_DIR=$dir/n1 taskset -c 0 ./target/release/hub &
  pids+=($!); urls+=(http://127.0.0.1:$port)
else
  rport=$(free_port)
  taskset -c 0 redis-server --bind 127.0.0.1 --port $rport --save '' --appendonly no --daemonize yes --dir $dir --pidfile $dir/redis.pid
  for i in $(seq 1 $mode); do
    port=$(free_port)
    DATABASE_URL=$pg/$db REDIS_URL=redis://127.0.0.1:$rport HUB_NODE_ID=node-$i HUB_JWT_SECRET=bench-secret-bench-secret-bench-secret-0123 \
      HUB_LOG=warn HUB_LISTEN=127.0.0.1:$port HUB_DATA_DIR=$dir/n$i taskset -c 0 ./target/release/hub &
    pids+=($!); urls+=(http://127.0.0.1:$port)
  done
fi
for u in "${urls[@]}"; do for _ in $(seq 1 100); do curl -fs $u/health >/dev/null 2>&1 && break; sleep 0.1; done; done
sleep 1
url=$(IFS=,; echo "${urls[*]}"); pid=$(IFS=,; echo "${pids[*]}")
taskset -c 1 ./target/release/loadtest --url "$url" --hub-pid "$pid" $ARGS --json > ${OUT:-/tmp}/result_$mode.json
if [ "$mode" != 1 ]; then for u in "${urls[@]}"; do curl -s $u/metrics | grep -E "^hub_cluster_(link_frames|remote_deliveries|forwarded)" ; done; fi
python3 - "${OUT:-/tmp}/result_$mode.json" <<'PY'
import json,sys
r=json.load(open(sys.argv[1]))
def find(d, keys):
    out={}
    def walk(x, path):
        if isinstance(x, dict):
            for k,v in x.items(): walk(v, path+[k])
        else:
            for key in keys:
                if path[-1]==key: out['.'.join(path)]=x
    walk(d, [])
    return out
print(json.dumps(find(r, ["delivered","delivered_per_s","p50_ms","p95_ms","p99_ms","cpu_s_per_1k_events","cpu_per_event_us","hub_cpu_s","cpu_us_per_event","sent","cpu_s"]), indent=1))
PY
