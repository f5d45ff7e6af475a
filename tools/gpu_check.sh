#!/usr/bin/env bash
# The GPU checks of the cuda backend, as one script for a lent GPU machine (see
# /work/.library/device/README.md): the GPU tests, then the 1080p benchmark.
# Wheels missing there (PyAV) travel in .whl/; logs and results go to $OUT.
set -u
OUT=${OUT:-/tmp/livefx-gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1
{
  nvidia-smi -L; nvcc --version | tail -1; python3 --version
  python3 -m pip list 2>/dev/null | grep -iE "^(cuda-bindings|cuda-python|onnxruntime|numpy|opencv|tensorrt|nvidia-cuda-nvrtc)"
} 2>&1 | tee "$OUT/env.txt"
[ -f build/kernels/livefx.fatbin ] || make kernels 2>&1 | tail -2
python3 -m pytest --noconftest -p no:cacheprovider -q -rfEs --durations=5 tests/test_cuda.py \
  2>&1 | tee "$OUT/pytest.txt" | tail -40
python3 -m engine -v process samples/astronaut.jpg "$OUT/cuda_blur.jpg" --backend cuda \
  --effect blur 2>&1 | grep -vi "^$" | tail -12
python3 -m engine process samples/astronaut.jpg "$OUT/auto_blur.jpg" 2>&1 | tail -8
python3 benchmarks/pipeline.py --backend cuda --resolutions "${LFX_RES:-1080p}" \
  --effects "${LFX_EFFECTS:-blur,colour}" -n "${LFX_REPEATS:-100}" --json-out "$OUT/bench.json" \
  2>&1 | tee "$OUT/bench.txt"
