#!/usr/bin/env bash
# One-time set-up of a development install in ./.venv (idempotent: a second run is quick).
#  - torch: TORCH_SPEC (default torch==2.13.0, the CPU wheel these machines carry; on a GPU machine
#    set TORCH_SPEC=torch to get the CUDA build from the normal index).
#  - llama-cpp-python compiles from source (PyPI serves no wheels of it). It is built for portable
#    AVX2 CPUs without AMX: llama.cpp's AMX kernels crash (SIGSEGV) on some virtual machines that
#    advertise AMX. LLAVA_BUILD=OFF skips libmtmd (images and audio, which the harness never loads):
#    about 150 of the build's ~730 CPU seconds. Override with LLAMA_CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
export CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}
.venv/bin/python -m pip install --no-cache-dir "${TORCH_SPEC:-torch==2.13.0}" -e '.[test]'
echo "set-up done: .venv/bin/harness is ready"
