#!/usr/bin/env bash
# Start a real single-node SLURM cluster on loopback (Debian 12, Slurm 22.05), as root,
# without systemd and without cgroups. Idempotent: installs what is missing, writes the
# config, starts only the daemons that are not already running (tracked by pid files
# under $LOCAL_SLURM_DIR), then waits until the node is "idle".
#
# Daemons (all tracked by pid files, stopped by scripts/local-slurm/stop.sh):
#   munged (own socket/key, runs as user munge), [mariadbd + slurmdbd], slurmctld, slurmd
#
# Environment knobs (all optional):
#   LOCAL_SLURM_DIR         state/config/log folder            (default /tmp/local-slurm)
#   LOCAL_SLURM_ACCOUNTING  1 = MariaDB + slurmdbd, so `sacct` works (submitit uses sacct
#                           for job states); 0 = no accounting  (default 1)
#   LOCAL_SLURM_CPUS        CPUs the node advertises; may exceed nproc (oversubscription,
#                           SlurmdParameters=config_overrides)  (default: nproc)
#   LOCAL_SLURM_MEM_MB      RealMemory of the node in MB        (default: 90% of MemTotal)
#   LOCAL_SLURM_DEF_MEM_MB  DefMemPerCPU for jobs without --mem (default 1024)
#   LOCAL_SLURM_CGROUP      1 = proctrack/cgroup + task/cgroup with ConstrainRAMSpace
#                           (enforces --mem, kills on OOM; needs a writable cgroup v1
#                           hierarchy); 0 = proctrack/linuxproc, task/none, no limits
#                           (default 0)
#   LOCAL_SLURM_PARTITION   partition name                      (default debug)
#   LOCAL_SLURM_NODE        node name                           (default: hostname -s)
#   LOCAL_SLURM_CTLD_PORT / LOCAL_SLURM_SLURMD_PORT / LOCAL_SLURM_DBD_PORT / LOCAL_SLURM_DB_PORT
#                           (defaults 6817 / 6818 / 6819 / 3307)
#   LOCAL_SLURM_SYSTEM_CONF 1 = symlink /etc/slurm/slurm.conf to the generated config so
#                           sinfo/sbatch/submitit work without SLURM_CONF (default 1;
#                           an existing foreign /etc/slurm/slurm.conf is never touched)
#   LOCAL_SLURM_TIMEOUT     seconds to wait for each daemon     (default 60)
#
# After it returns: `source $LOCAL_SLURM_DIR/env.sh` (exports SLURM_CONF), or rely on the
# /etc/slurm/slurm.conf symlink.
set -euo pipefail

DIR="${LOCAL_SLURM_DIR:-/tmp/local-slurm}"
ACCOUNTING="${LOCAL_SLURM_ACCOUNTING:-1}"
PARTITION="${LOCAL_SLURM_PARTITION:-debug}"
CTLD_PORT="${LOCAL_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${LOCAL_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${LOCAL_SLURM_DBD_PORT:-6819}"
DB_PORT="${LOCAL_SLURM_DB_PORT:-3307}"
SYSTEM_CONF="${LOCAL_SLURM_SYSTEM_CONF:-1}"
TIMEOUT="${LOCAL_SLURM_TIMEOUT:-60}"
DEF_MEM="${LOCAL_SLURM_DEF_MEM_MB:-1024}"
CGROUP="${LOCAL_SLURM_CGROUP:-0}"

log() { echo "[local-slurm] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
case "$DIR" in /*) ;; *) die "LOCAL_SLURM_DIR must be an absolute path" ;; esac

# ---------------------------------------------------------------- 1. packages
need_pkgs=()
command -v munged >/dev/null 2>&1 || need_pkgs+=(munge)
for b in slurmctld slurmd sbatch; do command -v "$b" >/dev/null 2>&1 || { need_pkgs+=(slurm-wlm); break; }; done
if [ "$ACCOUNTING" = 1 ]; then
  command -v slurmdbd >/dev/null 2>&1 || need_pkgs+=(slurmdbd)
  # the -core packages are enough (mariadbd, mariadb-install-db, mariadb client) and avoid
  # mariadb-server's perl/galera/rsync dependencies
  command -v mariadbd >/dev/null 2>&1 || need_pkgs+=(mariadb-server-core)
  command -v mariadb >/dev/null 2>&1 || need_pkgs+=(mariadb-client-core)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]} (apt)"
  # Keep the packages' maintainer scripts from starting system-wide daemons.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

NODE="${LOCAL_SLURM_NODE:-$(hostname -s)}"
CTLD_HOST="$(hostname -s)"
CPUS="${LOCAL_SLURM_CPUS:-$(nproc)}"
if [ -z "${LOCAL_SLURM_MEM_MB:-}" ]; then
  MEM=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
else
  MEM="$LOCAL_SLURM_MEM_MB"
fi

# ---------------------------------------------------------------- helpers
. "$(dirname "${BASH_SOURCE[0]}")/pids.sh"  # alive, pid_is
wait_for() { # wait_for DESCRIPTION LOGFILE COMMAND...
  local what="$1" logf="$2"; shift 2
  local end=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then
      log "timed out after ${TIMEOUT}s waiting for $what"; [ -f "$logf" ] && tail -n 20 "$logf" >&2
      exit 1
    fi
    sleep 0.2
  done
}
port_free() { # port_free PORT -> false if something listens on it
  command -v ss >/dev/null 2>&1 || return 0
  [ -z "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]
}
need_port() { port_free "$1" || die "port $1 is in use by another process (needed for $2); set LOCAL_SLURM_*_PORT"; }

mkdir -p "$DIR"/{etc,state,spool,log,run,munge}
chmod 755 "$DIR"
SOCK="$DIR/munge/munge.socket"
CONF="$DIR/etc/slurm.conf"

# ---------------------------------------------------------------- 2. config
if [ "$ACCOUNTING" = 1 ]; then
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCK
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

if [ "$CGROUP" = 1 ]; then
  [ -w /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/freezer ] \
    || die "LOCAL_SLURM_CGROUP=1 needs a writable cgroup v1 hierarchy (memory, freezer) under /sys/fs/cgroup"
  TRACK_LINES="ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup"
else
  TRACK_LINES="ProctrackType=proctrack/linuxproc
TaskPlugin=task/none"
fi

new_conf="$(cat <<EOF
# generated by scripts/local-slurm/start.sh -- single node on loopback, no cgroups
ClusterName=local
SlurmctldHost=${CTLD_HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
# cred_expire (min 5) is also how long a requeued job waits before it may start again
AuthInfo=socket=$SOCK,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
$TRACK_LINES
MpiDefault=none
SwitchType=switch/none
$ACCT_LINES
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# react within ~1 s instead of the 3 s / 30 s / 60 s defaults
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM
# trust the node line below even if it differs from the hardware (allows CPUs > nproc)
SlurmdParameters=config_overrides
ReturnToService=2
# reject (instead of queueing forever) jobs that ask for more CPUs/memory than the node has
EnforcePartLimits=ALL
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)"

any_running=0
for d in slurmctld slurmd slurmdbd; do alive "$DIR/run/$d.pid" "$d" && any_running=1; done
if [ -f "$CONF" ] && [ "$(cat "$CONF")" != "$new_conf" ] && [ "$any_running" = 1 ]; then
  die "$CONF differs from the requested settings while daemons run; run scripts/local-slurm/stop.sh first"
fi
printf '%s\n' "$new_conf" > "$CONF"
if [ "$CGROUP" = 1 ]; then
  # cores are not constrained so that LOCAL_SLURM_CPUS may exceed the real core count
  printf 'CgroupPlugin=autodetect\nConstrainCores=no\nConstrainRAMSpace=yes\nConstrainSwapSpace=no\nAllowedRAMSpace=100\n' \
    > "$DIR/etc/cgroup.conf"
else
  rm -f "$DIR/etc/cgroup.conf"
fi
printf 'export SLURM_CONF=%q\n' "$CONF" > "$DIR/env.sh"
export SLURM_CONF="$CONF"

if [ "$ACCOUNTING" = 1 ]; then
  cat > "$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmlocal
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"
fi

if [ "$SYSTEM_CONF" = 1 ]; then
  mkdir -p /etc/slurm
  if [ -L /etc/slurm/slurm.conf ] || [ ! -e /etc/slurm/slurm.conf ]; then
    ln -sfn "$CONF" /etc/slurm/slurm.conf
  elif [ "$(readlink -f /etc/slurm/slurm.conf)" != "$CONF" ]; then
    log "note: /etc/slurm/slurm.conf exists and is not ours; export SLURM_CONF=$CONF (see $DIR/env.sh)"
  fi
fi

# ---------------------------------------------------------------- 3. munged
if ! alive "$DIR/munge/munged.pid" munged; then
  chown munge:munge "$DIR/munge"; chmod 755 "$DIR/munge"
  if [ ! -s "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  fi
  chown munge:munge "$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"
  rm -f "$SOCK" "$SOCK.lock"
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --socket="$SOCK" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed" --num-threads=4 </dev/null >/dev/null 2>&1 \
    || { tail -n 5 "$DIR/munge/munged.log" >&2; die "munged failed to start"; }
fi
munge_ok() { munge -n -S "$SOCK" | unmunge -S "$SOCK"; }
wait_for "munged" "$DIR/munge/munged.log" munge_ok

# ---------------------------------------------------------------- 4. MariaDB + slurmdbd
if [ "$ACCOUNTING" = 1 ]; then
  DB="$DIR/mysql"
  mkdir -p "$DB"
  db_opts=(--no-defaults --user=root --datadir="$DB/data" --innodb-buffer-pool-size=128M
           --innodb-log-file-size=64M --innodb-lock-wait-timeout=900)
  if ! alive "$DB/mariadbd.pid" mariadbd; then
    if [ ! -f "$DB/.initialized" ]; then
      rm -rf "$DB/data"; mkdir -p "$DB/data"
      log "initialising MariaDB datadir"
      mariadb-install-db "${db_opts[@]}" --auth-root-authentication-method=socket --skip-test-db \
        >"$DB/install.log" 2>&1 || { tail -n 20 "$DB/install.log" >&2; die "mariadb-install-db failed"; }
      touch "$DB/.initialized"
    fi
    need_port "$DB_PORT" MariaDB
    log "starting mariadbd on 127.0.0.1:$DB_PORT"
    setsid /usr/sbin/mariadbd "${db_opts[@]}" --socket="$DB/mysqld.sock" --pid-file="$DB/mariadbd.pid" \
      --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --log-error="$DB/error.log" \
      </dev/null >/dev/null 2>&1 &
  fi
  db_ok() { mariadb --no-defaults -S "$DB/mysqld.sock" -u root -e 'SELECT 1' && alive "$DB/mariadbd.pid" mariadbd; }
  wait_for "mariadbd" "$DB/error.log" db_ok
  mariadb --no-defaults -S "$DB/mysqld.sock" -u root -e \
    "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmlocal';
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
    || die "could not create the MariaDB user for slurmdbd"

  if ! alive "$DIR/run/slurmdbd.pid" slurmdbd; then
    need_port "$DBD_PORT" slurmdbd
    log "starting slurmdbd on port $DBD_PORT"
    /usr/sbin/slurmdbd </dev/null >>"$DIR/log/slurmdbd.stdout" 2>&1 \
      || { tail -n 20 "$DIR/log/slurmdbd.log" >&2; die "slurmdbd failed to start"; }
  fi
  wait_for "slurmdbd" "$DIR/log/slurmdbd.log" sacctmgr -n list cluster
fi

# ---------------------------------------------------------------- 5. slurmctld + slurmd
if ! alive "$DIR/run/slurmctld.pid" slurmctld; then
  need_port "$CTLD_PORT" slurmctld
  log "starting slurmctld on port $CTLD_PORT"
  /usr/sbin/slurmctld -f "$CONF" </dev/null >>"$DIR/log/slurmctld.stdout" 2>&1 \
    || { tail -n 20 "$DIR/log/slurmctld.log" >&2; die "slurmctld failed to start"; }
fi
ctld_ok() { scontrol ping | grep -q 'is UP'; }
wait_for "slurmctld" "$DIR/log/slurmctld.log" ctld_ok

if ! alive "$DIR/run/slurmd.pid" slurmd; then
  need_port "$SLURMD_PORT" slurmd
  log "starting slurmd (node $NODE, $CPUS CPUs, ${MEM} MB)"
  /usr/sbin/slurmd -f "$CONF" -N "$NODE" </dev/null >>"$DIR/log/slurmd.stdout" 2>&1 \
    || { tail -n 20 "$DIR/log/slurmd.log" >&2; die "slurmd failed to start"; }
fi

node_idle() {
  local st
  st="$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1)"
  case "$st" in
    idle|mixed|allocated) return 0 ;;
    down*|drain*|fail*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true; return 1 ;;
    *) return 1 ;;
  esac
}
wait_for "node $NODE to be idle" "$DIR/log/slurmd.log" node_idle
log "up: $(sinfo -h -o '%P %a %D %T %N' | head -n1)  (SLURM_CONF=$CONF)"
