#!/usr/bin/env bash
# The test suite: installs what it needs into ./.venv, then runs pytest (extra args are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
exec .venv/bin/python -m pytest -q "$@"
