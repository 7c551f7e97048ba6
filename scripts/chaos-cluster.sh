#!/usr/bin/env bash
# A three-node cluster (a throwaway Redis, a fresh PostgreSQL database, free ports) under durable
# writes while node-2 is killed with SIGKILL and started again: `loadtest --scenario chaos`
# checks that every acknowledged write is found afterwards and reports the failover time.
#   scripts/chaos-cluster.sh      ARGS="..." to change the loadtest arguments; JSON=1 for JSON
# Hubs on CPU 0, the harness on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/loadtest-env.sh
ARGS=${ARGS:-"--users 60 --rooms 12 --rate 300 --duration 20 --chaos-at 6"}
[ -x target/release/hub ] && [ -x target/release/loadtest ] || cargo build --release -p hub -p loadtest
pg="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
db="chaos_$(date +%s%N)"
psql "$pg/postgres" -qc "CREATE DATABASE $db"
dir=$(mktemp -d)
rport=$(free_port)
cleanup() {
  pkill -TERM -f "HUB_DATA_DIR_MARK=$dir" 2>/dev/null || true
  for f in "$dir"/*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  sleep 2
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
taskset -c 0 redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no \
  --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid.redis"
urls=()
# start_node I PORT: starts node-I in the background and writes its pid to $dir/node-I.pid.
cat > "$dir/start-node.sh" <<SH
#!/usr/bin/env bash
DATABASE_URL=$pg/$db REDIS_URL=redis://127.0.0.1:$rport HUB_NODE_ID=node-\$1 \
  HUB_JWT_SECRET=chaos-secret-chaos-secret-chaos-secret-0123 HUB_LOG=warn \
  HUB_LISTEN=127.0.0.1:\$2 HUB_DATA_DIR=$dir/n\$1 taskset -c 0 $PWD/target/release/hub \
  >>"$dir/node-\$1.log" 2>&1 &
echo \$! > "$dir/node-\$1.pid"
SH
chmod +x "$dir/start-node.sh"
ports=()
for i in 1 2 3; do
  port=$(free_port); ports+=("$port")
  "$dir/start-node.sh" "$i" "$port"
  urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do for _ in $(seq 1 100); do curl -fs "$u/health" >/dev/null 2>&1 && break; sleep 0.1; done; done
sleep 1
url=$(IFS=,; echo "${urls[*]}")
victim=$(cat "$dir/node-2.pid")
json=""; [ -n "${JSON:-}" ] && json="--json"
taskset -c 1 ./target/release/loadtest --scenario chaos --url "$url" $ARGS $json \
  --chaos-pid "$victim" --chaos-restart "$dir/start-node.sh 2 ${ports[1]}"
