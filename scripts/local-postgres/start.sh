#!/usr/bin/env bash
# Start a PostgreSQL server on loopback for sweeps whose workers run on many nodes (Optuna RDB storage with
# heartbeats). Debian's postgresql; idempotent: installs it if missing, creates the cluster once, starts it only
# if it is not running (pid file), and prints the storage URL for `sweep.storage=`.
#
#   LOCAL_PG_DIR   data and log folder (default /tmp/mirasweep-postgres)
#   LOCAL_PG_PORT  port on 127.0.0.1  (default 5433)
#   LOCAL_PG_DB    database to create (default mirasweep)
#
# The server runs as the `postgres` system user (initdb refuses root) and trusts loopback connections: it is a
# test and single-user server, not a production one.
set -euo pipefail
DIR="${LOCAL_PG_DIR:-/tmp/mirasweep-postgres}"
PORT="${LOCAL_PG_PORT:-5433}"
DB="${LOCAL_PG_DB:-mirasweep}"
log() { echo "[local-postgres] $*" >&2; }

[ "$(id -u)" = 0 ] || { log "ERROR: must run as root"; exit 1; }
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
  log "installing postgresql (apt)"
  made_policy=0  # keep the package from starting the system-wide cluster
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
as_pg() { runuser -u postgres -- "$@"; }

mkdir -p "$DIR"
chown postgres:postgres "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
  log "creating a cluster in $DIR/data"
  as_pg "$bin/initdb" -D "$DIR/data" -A trust -U postgres --no-sync >/dev/null
fi
if as_pg "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
  log "already running"
else
  log "starting on 127.0.0.1:$PORT"
  as_pg "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c max_connections=200" start >/dev/null
fi
if ! as_pg psql -h 127.0.0.1 -p "$PORT" -U postgres -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1; then
  as_pg psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "create database $DB" >/dev/null
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
