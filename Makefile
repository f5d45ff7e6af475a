# LiveFX: `make run` and `make test` set up a fresh machine (they create .venv themselves).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
OUT    := out
# MediaPipe 0.10.21 pins numpy<2, so its runtime lives in a throw-away venv of its own.
MP_VENV ?= /tmp/livefx-mediapipe-venv
# CUDA kernels (make kernels) and their pixel math built for the host tests.
NVCC        ?= nvcc
KERNELS_DIR := build/kernels
FATBIN      := $(KERNELS_DIR)/livefx.fatbin
HOST_LIB    := build/liblfx_host.so
HOST_SRC    := kernels/host_api.cpp kernels/net_host.cpp
GENCODE     := $(foreach a,75 80 86 89 90,-gencode arch=compute_$(a),code=sm_$(a)) -gencode arch=compute_90,code=compute_90

.PHONY: install dev run demo test lint format models fixtures bench bench-e2e bench-whip soak train kernels clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# pip builds the cpu backend's compiled loops (setup.py: kernels/cpu_fused.cpp) in place.
$(VENV)/.installed: pyproject.toml setup.py kernels/cpu_fused.cpp kernels/pixel.cuh | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py kernels/cpu_fused.cpp kernels/pixel.cuh | $(PY)
	$(PIP) install -e '.[dev,train]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# The main job on the CPU default: the server and web client on http://127.0.0.1:8080/.
run: $(VENV)/.installed
	$(VENV)/bin/livefx serve

# Offline: the sample photo's matte, and a moving sample clip blurred.
demo: $(VENV)/.installed
	mkdir -p $(OUT)
	$(VENV)/bin/livefx process samples/astronaut.jpg $(OUT)/astronaut_matte.png --effect mask
	$(PY) -m engine.samples $(OUT)/sample_clip.mp4 --width 1280 --height 720 --frames 90
	$(VENV)/bin/livefx process $(OUT)/sample_clip.mp4 $(OUT)/sample_clip_blur.mp4 --effect blur
	@echo "wrote $(OUT)/astronaut_matte.png and $(OUT)/sample_clip_blur.mp4"

test: $(VENV)/.installed-dev $(HOST_LIB)
	@if command -v $(NVCC) >/dev/null 2>&1; then $(MAKE) --no-print-directory kernels; \
	else echo "make kernels: skipped ($(NVCC) not found)"; fi
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(CXX) -fsyntax-only -std=c++17 -Wall -Wextra -Werror -I$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])") kernels/cpu_fused.cpp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# CUDA kernels: a fatbin for sm_75…sm_90 plus PTX for newer GPUs. ptxas reports every entry
# point (-Xptxas -v); any warning or register spill fails the build.

kernels: $(FATBIN)

$(FATBIN): kernels/livefx.cu $(wildcard kernels/*.cuh)
	@mkdir -p $(KERNELS_DIR)
	$(NVCC) -fatbin -std=c++17 -O3 -Xptxas -v -Werror all-warnings $(GENCODE) -o $@ $< > $(KERNELS_DIR)/ptxas.log 2>&1 \
	  || { cat $(KERNELS_DIR)/ptxas.log; rm -f $@; exit 1; }
	@if grep -E "[1-9][0-9]* bytes spill (stores|loads)|[Ww]arning" $(KERNELS_DIR)/ptxas.log; then \
	  echo "kernels: register spills or warnings (see $(KERNELS_DIR)/ptxas.log)"; rm -f $@; exit 1; fi
	@echo "kernels: $@ ($$(grep -c "Compiling entry function" $(KERNELS_DIR)/ptxas.log) entry points compiled, no spills, no warnings)"

# The same pixel math compiled by the host compiler, for the host tests.
$(HOST_LIB): $(HOST_SRC) $(wildcard kernels/*.cuh)
	@mkdir -p build
	$(CXX) -O2 -std=c++17 -shared -fPIC -Wall -Wextra -Werror -o $@ $(HOST_SRC)

# Fetch mediapipe==0.10.21 (pip download --no-deps) and @mediapipe/pose (npm pack), convert, and
# compare with the committed .onnx.
models: $(VENV)/.installed-dev
	$(VENV)/bin/livefx models build --check

$(MP_VENV)/bin/python:
	$(PYTHON) -m venv $(MP_VENV)
	$(MP_VENV)/bin/python -m pip -q install mediapipe==0.10.21 scikit-image "numpy<2"

# Re-record MediaPipe's own masks (committed under tests/fixtures).
fixtures: $(MP_VENV)/bin/python
	$(MP_VENV)/bin/python tools/mediapipe_fixtures.py tests/fixtures/mediapipe_masks.npz
	$(MP_VENV)/bin/python tools/mediapipe_pose_fixtures.py tests/fixtures/mediapipe_pose.npz

# LiveFX next to MediaPipe's own runtime and the usual way (run in MediaPipe's venv), same run.
bench: $(VENV)/.installed-dev $(MP_VENV)/bin/python
	$(PY) benchmarks/segment.py --mediapipe-python $(MP_VENV)/bin/python
	$(PY) benchmarks/pipeline.py --mediapipe-python $(MP_VENV)/bin/python
	$(PY) benchmarks/quality.py

# Train the GAN generators again (about 9 minutes on one core and 5 on two) and their held-out metrics.
train: $(VENV)/.installed-dev
	$(PY) -m engine.models.train enhance --steps 12000 --seed 0 --threads 1 --out engine/models/enhance.onnx --metrics engine/models/enhance.metrics.json
	$(PY) -m engine.models.train cartoon --steps 5000 --seed 0 --out engine/models/cartoon.onnx --metrics engine/models/cartoon.metrics.json

# WebRTC round trips against `livefx serve` and a bare aiortc echo (about 5 minutes).
bench-e2e: $(VENV)/.installed-dev
	$(PY) benchmarks/e2e.py

# WHIP publish → WHEP play: latency and A/V offset vs pass-through, 1 vs 8 players (about 2 minutes).
bench-whip: $(VENV)/.installed-dev
	$(PY) benchmarks/whip.py

# Soak: sessions through one server for an hour, its RSS, descriptors, threads and round trip
# sampled every 10 s (build/soak/soak.csv, soak.png, soak.json).
soak: $(VENV)/.installed-dev
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
