#!/usr/bin/env bash
# Run a command with throwaway PostgreSQL and Redis on free 127.0.0.1 ports.
#
#   scripts/with-test-services.sh CMD [ARGS...]
#
# Installs the Debian packages if the binaries are missing, starts both
# servers in a temporary directory (PostgreSQL as the postgres user, since it
# refuses to run as root), exports TEST_PG_DSN / TEST_REDIS_URL (and the
# binaries' paths, so fault tests can stop and restart them), runs CMD and
# always tears everything down.  Never touches a server already running on
# 5432/6379.
set -euo pipefail

log() { echo "[test-services] $*" >&2; }

find_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

need_install=()
find_pg_bin >/dev/null || need_install+=(postgresql)
command -v redis-server >/dev/null || need_install+=(redis-server)
if [ ${#need_install[@]} -gt 0 ]; then
  log "installing ${need_install[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep Debian from starting system-wide instances we do not want.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_install[@]}" >/dev/null
  [ "${created_policy:-0}" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
"$(dirname "$0")/ensure-chromium.sh"
PG_BIN=$(find_pg_bin)
REDIS_BIN=$(command -v redis-server)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

WORK=$(mktemp -d /tmp/pushgw-test-XXXXXX)
chmod 755 "$WORK"
PG_DATA="$WORK/pg"
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
REDIS_DIR="$WORK/redis"
mkdir -p "$REDIS_DIR"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
  local rc=$?
  set +e
  if [ -f "$PG_DATA/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate >/dev/null 2>&1
  fi
  if [ -f "$REDIS_DIR/redis.pid" ]; then
    local rpid
    rpid=$(cat "$REDIS_DIR/redis.pid")
    kill "$rpid" 2>/dev/null
    # Wait for it to exit: it writes its log while shutting down.
    for _ in $(seq 50); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$rpid" 2>/dev/null
  fi
  rm -rf "$WORK" 2>/dev/null || { sleep 0.5; rm -rf "$WORK"; }
  exit $rc
}
trap cleanup EXIT INT TERM

mkdir -p "$PG_DATA"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DATA"
as_pg "$PG_BIN/initdb" -D "$PG_DATA" --auth=trust -U postgres >/dev/null
# fsync stays ON by default so durability tests mean something; benchmarks
# that want the production setting get it too.
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/log" -w start \
  -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=300 ${PUSHGW_PG_OPTS:--c fsync=on}" >/dev/null
"$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/log" >/dev/null
for _ in $(seq 50); do [ -f "$REDIS_DIR/redis.pid" ] && break; sleep 0.1; done

export TEST_PG_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export TEST_PG_BIN="$PG_BIN" TEST_PG_DATA="$PG_DATA" TEST_PG_PORT="$PG_PORT"
export TEST_REDIS_BIN="$REDIS_BIN" TEST_REDIS_PORT="$REDIS_PORT" TEST_REDIS_DIR="$REDIS_DIR"
log "postgres on 127.0.0.1:$PG_PORT, redis on 127.0.0.1:$REDIS_PORT"

set +e
"$@"
rc=$?
set -e
exit $rc
