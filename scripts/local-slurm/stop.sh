#!/usr/bin/env bash
# Stop the daemons started by scripts/local-slurm/start.sh, and only those: each one is found
# through its pid file under $LOCAL_SLURM_DIR and signalled by pid after checking the
# process name (no pkill/killall). Running jobs are cancelled first.
#   --purge   also delete $LOCAL_SLURM_DIR (state, logs, database) for a clean next start
set -uo pipefail

DIR="${LOCAL_SLURM_DIR:-/tmp/local-slurm}"
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1
log() { echo "[local-slurm] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

CONF="$DIR/etc/slurm.conf"
export SLURM_CONF="$CONF"

. "$(dirname "${BASH_SOURCE[0]}")/pids.sh"  # alive, pid_is

# stop_group PIDFILE:COMM...: SIGTERM every listed daemon that is alive (by pid, after
# checking its name), wait up to 20 s for all of them, then SIGKILL any that remain.
stop_group() {
  local spec pidfile comm pid i left
  local pids=() comms=()
  for spec in "$@"; do
    pidfile="${spec%%:*}"; comm="${spec##*:}"
    if alive "$pidfile" "$comm"; then
      pid="$(cat "$pidfile")"
      log "stopping $comm (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); comms+=("$comm")
    fi
  done
  for i in $(seq 1 100); do
    left=0
    for j in "${!pids[@]}"; do
      if pid_is "${pids[$j]}" "${comms[$j]}"; then left=1; fi
    done
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  for j in "${!pids[@]}"; do
    if pid_is "${pids[$j]}" "${comms[$j]}"; then
      log "${comms[$j]} (pid ${pids[$j]}) ignored SIGTERM; sending SIGKILL"
      kill -KILL "${pids[$j]}" 2>/dev/null || true
    fi
  done
  for spec in "$@"; do rm -f "${spec%%:*}"; done
}

# Cancel this cluster's jobs while slurmctld and slurmd still run, so that no job
# processes (slurmstepd and its children) outlive the daemons.
if [ -f "$CONF" ] && alive "$DIR/run/slurmctld.pid" slurmctld; then
  jobs="$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')"
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for i in $(seq 1 75); do               # up to 15 s
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi

# slurmctld saves its state on SIGTERM and may still talk to slurmdbd, which needs
# MariaDB and munged: stop in three waves.
stop_group "$DIR/run/slurmd.pid:slurmd" "$DIR/run/slurmctld.pid:slurmctld"
stop_group "$DIR/run/slurmdbd.pid:slurmdbd"

# cgroup mode (LOCAL_SLURM_CGROUP=1) leaves empty /sys/fs/cgroup/<ctrl>/slurm_<node> trees;
# rmdir only succeeds on cgroups without tasks, so nothing else is affected.
if [ -f "$DIR/etc/cgroup.conf" ] && [ -f "$CONF" ]; then
  node="$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$CONF" | head -n1)"
  if [ -n "$node" ]; then
    for d in /sys/fs/cgroup/*/"slurm_$node"; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
  fi
fi
stop_group "$DIR/mysql/mariadbd.pid:mariadbd" "$DIR/munge/munged.pid:munged"

# Remove the /etc/slurm/slurm.conf symlink only when it points at our config.
if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then
  rm -f /etc/slurm/slurm.conf
fi

if [ "$PURGE" = 1 ]; then
  case "$DIR" in
    /|/tmp|/etc|/usr|/var|/root|/home) log "refusing to purge $DIR" ;;
    *) log "removing $DIR"; rm -rf "$DIR" ;;
  esac
fi
log "stopped"
