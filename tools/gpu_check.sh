#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (/work/.library/device/README.md): the
# GPU tests (each kernel and model against its host build and ONNX Runtime, the cuda pipeline
# against the cpu pipeline for every effect), then benchmarks/gpu.py's every section (the chain
# per kernel, each model per layer and batch beside PyTorch and ONNX Runtime, the whole 1080p
# frame). Wheels the lent machine lacks travel in .whl/ (git-ignored): onnx at least, which the
# kernels runtime reads the models with (pip download onnx==1.23.2 --no-deps -d .whl; the run
# tool's carry [".whl"]). Everything lands in $OUT.
# Checked end to end without a GPU by tests/test_gpu_standin.py (the benchmark on the stand-in).
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
  python3 -m pip list 2>/dev/null | grep -iE "^(cuda-bindings|cuda-python|onnx|onnxruntime|numpy|opencv|tensorrt|torch|nvidia-cuda-nvrtc) "
} 2>&1 | tee "$OUT/env.txt"
[ -f build/kernels/livefx.fatbin ] || make kernels 2>&1 | tail -2
[ -f build/liblfx_host.so ] || make build/liblfx_host.so 2>&1 | tail -2
# 1. The GPU tests (tools/gpu_pytest.py stands in for tests/conftest.py where that cannot import).
timeout "${LFX_TEST_S:-240}" python3 -m pytest --noconftest -p tools.gpu_pytest -p no:cacheprovider \
  -q -rfEs --durations=8 tests/test_gpu_net.py tests/test_cuda.py \
  2>&1 | tee "$OUT/pytest.txt" | tail -40
# 2. What a user sees: the backend chosen, and a frame through it.
python3 -m engine -v process samples/astronaut.jpg "$OUT/auto_blur.jpg" 2>&1 | tail -8
# 3. The benchmark: chain, models, whole frame; the JSON is written after every figure set.
timeout "${LFX_BENCH_S:-280}" python3 benchmarks/gpu.py --resolutions "${LFX_RES:-1080p}" \
  --effects "${LFX_EFFECTS:-blur,colour}" -n "${LFX_REPEATS:-100}" \
  --models "${LFX_MODELS:-all}" --batches 1,4,16 --frame "${LFX_FRAME:-blur,replace,colour,mask,none,gan}" \
  --json-out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.txt"
