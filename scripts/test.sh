#!/usr/bin/env bash
# The test suite: installs what it needs into ./.venv, then runs pytest on 2 worker processes (pytest-xdist; most
# end-to-end tests wait on subprocesses, SLURM or a browser, so two share 2 cores well). Tests that share a module
# fixture or the local SLURM cluster are one xdist_group each. MIRASWEEP_TEST_WORKERS=0 runs them in one process.
# Extra args are passed on to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
exec .venv/bin/python -m pytest -q -n "${MIRASWEEP_TEST_WORKERS:-2}" --dist loadgroup "$@"
