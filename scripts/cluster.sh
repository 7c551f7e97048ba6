#!/usr/bin/env bash
# Starts a hub cluster on this machine: a throwaway redis-server and NODES hubs (default 3) on
# free loopback ports, all sharing one new PostgreSQL database. Prints each node's URL and the
# operator token; Ctrl-C (or SIGTERM) drains and stops every node, then Redis.
#
#   scripts/cluster.sh [NODES]
#
# Environment:
#   PG_URL     the PostgreSQL server (default postgres://postgres@127.0.0.1:5432); a database
#              hub_cluster_<time> is created on it and kept afterwards (drop it when done).
#   HUB_BIN    the hub binary (default: built with `cargo build --release -p hub`).
#   HUB_LOG    log filter for the nodes (default info); logs go to <dir>/node-<i>.log.
# Needs redis-server, psql, curl and python3 (for free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

nodes="${1:-3}"
case "$nodes" in '' | *[!0-9]* | 0) echo "usage: $0 [NODES]" >&2; exit 2 ;; esac
pg="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
for tool in redis-server psql python3; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (see README, Cluster mode)" >&2; exit 1; }
done
if [ -z "${HUB_BIN:-}" ]; then
  cargo build --release -p hub
  HUB_BIN=target/release/hub
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { head -c 32 /dev/urandom | base64 | tr -d '/+=' ; }

dir="$(mktemp -d -t hub-cluster.XXXXXX)"
db="hub_cluster_$(date +%s)"
psql "$pg/postgres" -qc "CREATE DATABASE $db" >/dev/null
redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"

jwt="$(secret)$(secret)"
admin="$(secret)$(secret)"
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "draining and stopping the nodes..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  echo "stopped. Database $db kept on $pg (psql $pg/postgres -c 'DROP DATABASE $db' to drop it); logs in $dir"
}
trap stop INT TERM EXIT

echo "redis on 127.0.0.1:$redis_port, database $db, logs in $dir"
for i in $(seq 1 "$nodes"); do
  port="$(free_port)"
  DATABASE_URL="$pg/$db" REDIS_URL="redis://127.0.0.1:$redis_port" \
    HUB_NODE_ID="node-$i" HUB_LISTEN="127.0.0.1:$port" HUB_DATA_DIR="$dir/node-$i" \
    HUB_JWT_SECRET="$jwt" HUB_ADMIN_TOKEN="$admin" HUB_LOG="${HUB_LOG:-info}" \
    "$HUB_BIN" >"$dir/node-$i.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "node-$i: http://127.0.0.1:$port  (pid ${pids[-1]})"
done
echo "operator token: $admin"
echo "try: curl -H 'Authorization: Bearer $admin' http://127.0.0.1:$port/api/v1/admin/nodes"
echo "Ctrl-C to stop."
wait
