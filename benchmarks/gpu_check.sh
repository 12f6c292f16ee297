#!/usr/bin/env bash
# The GPU checks of path 'fla' and the engine, and the side-by-side benchmark, in one call (under 8 minutes on an
# H100/H200). Prepare here with `bash benchmarks/gpu_wheels.sh`, then on the GPU machine, carrying .whl:
#     bash benchmarks/gpu_check.sh            # logs and the benchmark's rows go to $OUT (or ./gpu-check/)
# 1. FLA imports with the machine's triton; 2. the component tests that exercise CUDA (FLA's kernels against FLA's
# references and our float64 engine; the engine's equivalence and fused-step tests with CUDA as the default
# device); 3. benchmarks/gpu_engine.py --suite presets at both sizes, fp32 and bf16; 4. titans compiled and
# CUDA-graphed at the small size (which way to take the deep memories); 5. the memory suite's quick size.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch, triton, fla; print('torch', torch.__version__, 'triton', triton.__version__, 'fla', fla.__version__)" \
  2>&1 | tee -a "$out/device.txt"

echo "== tests (CUDA)"
MIRASWEEP_TEST_DEVICE=cuda timeout 120 python3 -m pytest -q -x -p no:cacheprovider -o addopts="" \
  -o filterwarnings=ignore::DeprecationWarning \
  tests/components/test_fla_backend.py tests/components/test_engine_fused.py tests/components/test_known_models.py \
  2>&1 | tee "$out/tests.log" | tail -25

echo "== benchmark: presets"
timeout 200 python3 benchmarks/gpu_engine.py --suite presets --reps 3 --warmup 1 --json "$out/presets.json" \
  2>&1 | grep -v -i "warn" | tee "$out/presets.log"

echo "== experiment: titans compiled and CUDA-graphed (the launch-bound chunk loop)"
timeout 110 python3 benchmarks/gpu_engine.py --suite presets --quick --presets titans --experiments --reps 3 \
  --warmup 2 2>&1 | grep -v -i "warn" | tee "$out/experiments.log" | tail -12

echo "== benchmark: the Titans memory (quick size)"
timeout 40 python3 benchmarks/gpu_engine.py --suite memory --quick --reps 5 --warmup 2 2>&1 | tee "$out/memory.log" | tail -20
