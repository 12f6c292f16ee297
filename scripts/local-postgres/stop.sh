#!/usr/bin/env bash
# Stop the server started by scripts/local-postgres/start.sh (and only it); --purge also deletes its folder.
set -euo pipefail
DIR="${LOCAL_PG_DIR:-/tmp/mirasweep-postgres}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -n "$bin" ] && [ -f "$DIR/data/postmaster.pid" ]; then
  runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true
fi
[ "${1:-}" = "--purge" ] && rm -rf "$DIR"
exit 0
