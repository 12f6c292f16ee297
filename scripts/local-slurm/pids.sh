# Shared by start.sh and stop.sh: is the daemon behind a pid file alive?
# alive PIDFILE COMM: true when the pid file names a live process with that command name
alive() {
  # A zombie counts as dead: PID 1 here (not an init system) reaps orphans only every ~2 s.
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -n "$pid" ] || return 1
  pid_is "$pid" "$2"
}
pid_is() { # pid_is PID COMM: PID is a live (non-zombie) process named COMM
  local st
  st="$(ps -o stat=,comm= -p "$1" 2>/dev/null)" || return 1
  case "$st" in Z*) return 1 ;; esac
  [ "${st##* }" = "$2" ]
}
