#!/usr/bin/env bash
# Create ./.venv and install mirasweep with the extras named in $1 (e.g. "test" or "test,bench").
# torch is installed first, pinned, so pip takes the local CPU wheel instead of a multi-GB CUDA build.
# Idempotent: a stamp records what was installed for which pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv=.venv
stamp="$venv/.mirasweep-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) [$extras]"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then
  exit 0
fi
echo "==> setting up $venv (mirasweep${extras:+[$extras]})" >&2
[ -x "$venv/bin/python" ] || python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
echo "$want" >> "$stamp"
