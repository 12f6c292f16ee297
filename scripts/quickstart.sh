#!/usr/bin/env bash
# The main job: installs what it needs into ./.venv, then runs a small architecture search on this machine
# (the `quick` space: 8 trials, 2 local workers, each trial trains a small memory model on byte-level language
# modelling and associative recall; about 4 minutes on 2 cores), prints the best architectures and how to open them in the MLflow UI.
# Extra arguments are passed to `mirasweep sweep` (e.g. sweep.n_trials=16 search_space=delta_family).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== the search space (mirasweep sweep --dry-run) =="
.venv/bin/mirasweep sweep search_space=quick --dry-run
echo "== the sweep: 8 trials on 2 local workers; rerunning this command resumes it, or reports a finished one =="
.venv/bin/mirasweep sweep search_space=quick launcher=local launcher.workers=2 sweep.n_trials=8 "$@"
cat <<'NEXT'

Next steps:
  .venv/bin/mirasweep ui runs/sweeps/quick                        # browse the runs in the MLflow UI
  .venv/bin/mirasweep report runs/sweeps/quick                    # the table again, per-axis summary, vs presets
  .venv/bin/mirasweep confirm runs/sweeps/quick --seeds 3         # retrain the best with 3 fresh seeds: which leads are real?
  .venv/bin/mirasweep status runs/sweeps/quick                    # trials by state, workers, what is failing
  .venv/bin/mirasweep components                                  # every component per MIRAS axis, with options
  .venv/bin/mirasweep components --model titans                   # a model card of a known model
  .venv/bin/mirasweep train model=gated_deltanet task=mqar        # train one architecture
  .venv/bin/mirasweep sweep search_space=miras sweep.n_trials=64  # search the whole space
  .venv/bin/mirasweep sweep launcher=slurm launcher.workers=8 ...  # on a cluster: README "Running on a SLURM cluster"
NEXT
