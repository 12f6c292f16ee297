#!/usr/bin/env bash
# Run HERE (a machine with the package index) before benchmarks/gpu_check.sh goes to a GPU machine that has none:
# downloads into ./.whl the wheels the GPU image lacks (Python 3.12 there; torch, triton, einops, numpy, pyyaml,
# transformers and pytest are already in it). The folder is git-ignored and travels as a carried path.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PYTHON:-python3}
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms="$platforms --platform $p"
done
pkgs=(
  fla-core==0.6.0 flash-linear-attention==0.6.0
  omegaconf==2.3.1
  titans-pytorch==0.5.5 assoc-scan==0.0.6 accelerated-scan==0.3.1 axial-positional-embedding==0.3.12
  einx==0.4.3 frozendict==2.5.1 hyper-connections==0.4.11 rotary-embedding-torch==0.9.1 tensordict==0.15.3
  pyvers==0.2.3 x-transformers==2.31.10 torch-einops-utils==0.2.0 loguru==0.7.3
)
mkdir -p .whl
for pkg in "${pkgs[@]}"; do
  case "$pkg" in \#*) continue ;; esac
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
    -d .whl "$pkg"
done
# antlr4-python3-runtime 4.9.3 (omegaconf's pin) is published as a source archive only: build its pure-python wheel here
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
du -sh .whl
