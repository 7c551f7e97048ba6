#!/usr/bin/env bash
# The test command: runs every test in the workspace against real SQLite and PostgreSQL.
#
# PostgreSQL: uses HUB_TEST_PG_URL (an admin URL; each test creates and drops its own database),
# else a server on 127.0.0.1:5432, else starts a throwaway server from the installed PostgreSQL
# binaries and stops it afterwards. The PostgreSQL restart test starts a server of its own from
# those binaries (HUB_TEST_PG_BIN). Redis: the cluster tests start their own `redis-server` on
# free ports, so it must be installed. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

url="${HUB_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -d "$1" -t 2
  elif command -v psql >/dev/null 2>&1; then
    psql "$1" -qAtc 'select 1' >/dev/null 2>&1
  else
    local hostport=${1#*@}; hostport=${hostport%%/*}
    (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null
  fi
}

find_pg_bin() {
  local ctl
  ctl=$(dpkg -L postgresql-15 2>/dev/null | grep -m1 'bin/pg_ctl$' || true)
  [ -n "$ctl" ] || ctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$ctl" ] || ctl=$(command -v pg_ctl || true)
  [ -n "$ctl" ] && dirname "$ctl"
}

if ! pg_up "$url"; then
  pgbin=$(find_pg_bin || true)
  if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "No PostgreSQL reachable at $url and no server binaries to start one." >&2
    echo "Install them:  apt-get update && apt-get install -y postgresql-15" >&2
    echo "or point HUB_TEST_PG_URL at a server where the user may create databases." >&2
    exit 1
  fi
  dir=$(mktemp -d /tmp/hub-test-pg.XXXXXX)
  port=$(( 20000 + RANDOM % 20000 ))
  as_pg=()
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; as_pg=(runuser -u postgres --); fi
  echo "starting a throwaway PostgreSQL on 127.0.0.1:$port ($pgbin)" >&2
  "${as_pg[@]}" "$pgbin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >/dev/null
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >/dev/null
  trap '"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
  url="postgres://postgres@127.0.0.1:$port/postgres"
fi

# The cluster tests start Redis servers of their own (on free ports).
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "The cluster tests need redis-server and redis-cli." >&2
  echo "Install them:  apt-get update && apt-get install -y redis-server" >&2
  exit 1
fi

# A test restarts a PostgreSQL server of its own (pgrestart.rs): it needs the server binaries
# even when a server is already running.
pgbin=$(find_pg_bin || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "The PostgreSQL restart test needs the server binaries (initdb, pg_ctl)." >&2
  echo "Install them:  apt-get update && apt-get install -y postgresql-15" >&2
  exit 1
fi
export HUB_TEST_PG_BIN="$pgbin"

export HUB_TEST_PG_URL="$url"
cargo test --workspace --locked "$@"
