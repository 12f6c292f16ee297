#!/usr/bin/env bash
# The main job: installs what it needs into ./.venv, then shows the searchable MIRAS space
# (every registered component per axis, with its options) and the size of the space.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/mirasweep components
.venv/bin/python - <<'PY'
from components.engine import enumerate_rules
ok, rejected = enumerate_rules()
print(f"\n{len(ok)} compatible combinations of the four axes at default options ({len(rejected)} rejected, e.g.:")
print("  " + rejected[0][1] + ")")
print("\nNext: .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/memory_engine.py  (engine vs titans-pytorch)")
PY
