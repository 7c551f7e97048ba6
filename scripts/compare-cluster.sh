#!/usr/bin/env bash
# The cost of going from one node to two, for the hub and for Socket.IO with its Redis adapter,
# under the side-by-side kit's neutral generator (../shared/bench; run its setup.sh first): the
# same load against the hub alone, a two-node hub cluster (a throwaway Redis, a fresh PostgreSQL
# database), one Socket.IO server, and two Socket.IO servers with the Redis adapter. Servers
# (Redis included) on CPU 0, the generator on CPU 1; connection i goes to node i % 2.
#   scripts/compare-cluster.sh [RATE]      (messages per second per connection, default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
kit=$(cd ../shared/bench && pwd)
W=${BENCH_WORK:-/tmp/hub-bench}
RATE=${1:-15}
HUB_BIN=$(readlink -f "${HUB_BIN:-target/release/hub}")
[ -x "$HUB_BIN" ] || cargo build --release -p hub
out=$W/logs/compare-cluster-$(date +%s).jsonl
S=(--conns 200 --rooms 10 --rate "$RATE" --duration 10 --warmup 2 --payload 64 --json "$out")
export HUB_BENCH_ENV="${HUB_BENCH_ENV:-HUB_RATE_PER_SEC=1000 HUB_RATE_BURST=1000 HUB_LOG=warn}"
HUB_BIN=$HUB_BIN "$kit/bench.sh" hub ws "${S[@]}" --label hub-1 >/dev/null

# The hub, two nodes.
pg="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
db="compare_$(date +%s%N)"
dir=$(mktemp -d)
psql "$pg/postgres" -qc "CREATE DATABASE $db"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  redis-cli -p 6391 shutdown nosave >/dev/null 2>&1 || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
taskset -c 0 redis-server --bind 127.0.0.1 --port 6391 --save '' --appendonly no --daemonize yes \
  --dir "$dir" --pidfile "$dir/redis.pid"
sleep 0.3
for i in 1 2; do
  env $HUB_BENCH_ENV DATABASE_URL="$pg/$db" REDIS_URL=redis://127.0.0.1:6391 HUB_NODE_ID="node-$i" \
    HUB_JWT_SECRET=compare-secret-compare-secret-compare-0123 HUB_LISTEN="127.0.0.1:809$i" \
    HUB_DATA_DIR="$dir/n$i" taskset -c 0 "$HUB_BIN" >"$dir/node-$i.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:809$i/health" >/dev/null 2>&1 && break; sleep 0.1; done
done
sleep 1
taskset -c 1 python3 "$kit/hub-setup.py" --base http://127.0.0.1:8091 --users 20 --rooms 10 --conns 200 \
  --out "$dir/conns.jsonl"
# Every second connection to node 2.
python3 - "$dir/conns.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
for i, c in enumerate(lines):
    if i % 2 == 1:
        c["url"] = c["url"].replace("127.0.0.1:8091", "127.0.0.1:8092")
open(sys.argv[1], "w").write("".join(json.dumps(c) + "\n" for c in lines))
PY
spids="${pids[0]},${pids[1]},$(cat "$dir/redis.pid")"
"$kit/bench.sh" none ws "${S[@]}" --label hub-2-nodes --conn-file "$dir/conns.jsonl" \
  --server-pid "$spids" --ws-join-ack '"ack"' \
  --ws-join '{"type":"join_workspace","ref":"j1","workspace_id":"{room}"}' \
  --ws-publish '{"type":"broadcast","ref":"p1","workspace_id":"{room}","event":"lg","data":{data}}' >/dev/null
cleanup; trap - EXIT

"$kit/bench.sh" sio-node sio-raw "${S[@]}" --label socket.io-1 >/dev/null
"$kit/bench.sh" sio-node-redis2 sio-raw "${S[@]}" --label socket.io-redis-2-nodes >/dev/null
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cost = {}
print(f"{'server':24} {'deliv/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu %':>6} {'µs/deliv':>8}  note")
for r in rows:
    cpu = sum(s.get("cpuPct", 0) for s in r.get("server", []))
    d = r["deliveredPerSec"] or 1
    cost[r["label"]] = cpu / 100 * 1e6 / d
    note = "" if r.get("notOursBusyPct", 0) < 10 else "INTERFERENCE: void"
    if r.get("deliveryRatio", 0) < 1: note += f" delivered only {r['deliveryRatio']:.3f}"
    print(f"{r['label']:24} {r['deliveredPerSec']:8.0f} {r['latencyMs']['p50']:7.2f} {r['latencyMs']['p99']:7.2f} "
          f"{cpu:6.1f} {cost[r['label']]:8.2f}  {note}")
for one, two in [("hub-1", "hub-2-nodes"), ("socket.io-1", "socket.io-redis-2-nodes")]:
    if one in cost and two in cost:
        print(f"{two}: {cost[two] / cost[one]:.2f}x the CPU per delivery of {one}")
PY
