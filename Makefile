# The README's two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
# The torch to build and run with; override for a CUDA build, e.g. TORCH_SPEC="torch==2.11.0".
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
NATIVE_SOURCES := $(wildcard csrc/*.h csrc/*.cpp csrc/*/*.h csrc/*/*.cpp csrc/*/*.cu)
NVCC ?= nvcc

.PHONY: setup demo test bench cuda-check gpu-check gpu-wheels asan-setup asan-test clean

setup: $(VENV)/.musicrep-installed

$(VENV)/.musicrep-installed: setup.py pyproject.toml CMakeLists.txt $(NATIVE_SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "$(TORCH_SPEC)" numpy  # numpy first: torch warns while building without it
	$(PY) -m pip install -q --no-build-isolation -e ".[test,hf]"
	touch $@

demo: setup
	$(VENV)/bin/musicrep run examples/quickstart.toml

# The devbench (real-audio probe tasks, docs/results.md): render it into examples/devbench-data
# when missing (fluidsynth + the TimGM6mb soundfont from Debian, its tools in their own venv,
# about 10 minutes), then run examples/devbench.toml. Not part of `make test` or of the package.
# examples/devbench.toml reads its tasks here (a folder, or a symlink to one rendered elsewhere)
DEVBENCH_DATA := examples/devbench-data
DEVBENCH_TOOLS ?= ../shared/devbench
DEVBENCH_VENV ?= .venv-devbench
SOUNDFONT ?= $(shell dpkg -L timgm6mb-soundfont 2>/dev/null | grep '\.sf2$$' | head -n 1)

.PHONY: devbench
devbench: setup $(DEVBENCH_DATA)/pretrain
	$(VENV)/bin/musicrep run examples/devbench.toml

$(DEVBENCH_DATA)/pretrain:
	@command -v fluidsynth >/dev/null && [ -n "$(SOUNDFONT)" ] || { echo "devbench: install the renderer first:" \
	  "apt-get install -y fluidsynth timgm6mb-soundfont"; exit 1; }
	test -x $(DEVBENCH_VENV)/bin/python || $(PYTHON) -m venv $(DEVBENCH_VENV)
	$(DEVBENCH_VENV)/bin/pip install -q music21 mido soundfile numpy
	$(DEVBENCH_VENV)/bin/python $(DEVBENCH_TOOLS)/render_tasks.py --out $(DEVBENCH_DATA) --soundfont "$(SOUNDFONT)"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest benchmarks --benchmark-enable -q

# Compile every CUDA source with plain nvcc (no GPU, no CUDA torch needed), so it cannot rot; then
# every glue translation unit as the CUDA build sees it (MUSICREP_WITH_CUDA), syntax only, against
# .venv's torch headers (the CPU wheel ships c10/cuda and ATen/cuda) and the CUDA headers nvcc
# reports itself. The CPU wheel lacks one generated header, c10/cuda/impl/cuda_cmake_macros.h, which
# in a CUDA build only defines C10_CUDA_BUILD_SHARED_LIBS: a one-line stand-in comes from a temp dir.
GLUE_SOURCES := $(wildcard csrc/glue/*.cpp) csrc/bind.cpp
CUDA_CHECK_JOBS ?= 2
TORCH_FLAGS_PY := import sys, sysconfig, torch, torch.utils.cpp_extension as c; \
  print(" ".join(["-isystem" + p for p in c.include_paths() + [sysconfig.get_paths()["include"]]] \
  + ["-D_GLIBCXX_USE_CXX11_ABI=%d" % torch._C._GLIBCXX_USE_CXX11_ABI]))

cuda-check: setup
	@for f in csrc/cuda/*.cu; do [ -e "$$f" ] || continue; echo "nvcc -c $$f"; \
	  $(NVCC) -std=c++17 -O2 -Icsrc -arch=sm_90 -c "$$f" -o /tmp/musicrep-cuda-check.o || exit 1; done
	@stub=$$(mktemp -d) && trap 'rm -rf "$$stub"' EXIT && mkdir -p "$$stub/c10/cuda/impl" && \
	  echo '#define C10_CUDA_BUILD_SHARED_LIBS' >"$$stub/c10/cuda/impl/cuda_cmake_macros.h" && \
	  cuda_inc=$$($(NVCC) --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/.*INCLUDES="-I\([^"]*\)".*/\1/p' | head -n1) && \
	  { [ -d "$$cuda_inc" ] || { echo "cuda-check: nvcc --dryrun named no CUDA include folder" >&2; exit 1; }; } && \
	  torch_flags=$$($(PY) -c '$(TORCH_FLAGS_PY)') && \
	  export GLUE_FLAGS="-std=c++17 -fsyntax-only -DMUSICREP_WITH_CUDA -DTORCH_EXTENSION_NAME=_C \
	    -DTORCH_API_INCLUDE_EXTENSION_H -Icsrc $$torch_flags -isystem$$cuda_inc -isystem$$stub" && \
	  printf '%s\n' $(GLUE_SOURCES) | xargs -P$(CUDA_CHECK_JOBS) -n1 sh -c \
	    'echo "$(CXX) -fsyntax-only -DMUSICREP_WITH_CUDA $$0"; $(CXX) $$GLUE_FLAGS "$$0"'

# On a GPU machine with no network (docs/native.md): the wheels below from .whl/, a CUDA build for
# its GPU, the CUDA tests, the whole suite and the CUDA benchmark rows; logs in $OUT or build/gpu-check.
gpu-check:
	bash tools/gpu-check.sh

# What a GPU machine with PyTorch, pluggy, h5py, numba, scikit-learn, pytest-benchmark, pytest-xdist and
# hypothesis still lacks, as Python 3.12 manylinux x86_64 wheels in .whl/ (git-ignored), one version each.
GPU_WHEELS := soundfile==0.13.1 cffi==2.0.0 pycparser==2.23 soxr==1.0.0 nnAudio==0.3.4 mule-torch==0.2.0 \
  librosa==0.11.0 audioread==3.1.0 decorator==5.2.1 pooch==1.8.2 platformdirs==4.5.0
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
  manylinux1_x86_64
gpu-wheels:
	rm -rf .whl && $(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp $(addprefix --platform ,$(GPU_PLATFORMS)) -d .whl $(GPU_WHEELS)
	@du -sh .whl

# The native ops under AddressSanitizer + UBSan: a separate venv with a sanitized, non-editable
# build (the normal .venv and core/_C*.so are untouched). Python itself is not instrumented, so
# libasan is preloaded, with libstdc++ (else ASan cannot find the real __cxa_throw and aborts on
# the first C++ exception); leak checking is off (CPython and torch keep allocations until exit).
ASAN_VENV ?= .venv-asan
ASAN_PY := $(ASAN_VENV)/bin/python
NATIVE_TESTS ?= tests/test_mel_spectrogram.py tests/test_nt_xent.py tests/test_resample.py \
	tests/test_frontends.py tests/reliability/test_native_bad_input.py

asan-setup: $(ASAN_VENV)/.musicrep-installed

$(ASAN_VENV)/.musicrep-installed: setup.py pyproject.toml CMakeLists.txt $(NATIVE_SOURCES) $(wildcard core/*.py core/*/*.py core/*/*/*.py)
	test -x $(ASAN_PY) || $(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_PY) -m pip install -q --upgrade pip setuptools wheel
	$(ASAN_PY) -m pip install -q "$(TORCH_SPEC)"
	MUSICREP_SANITIZE=ON MUSICREP_BUILD_DIR=$(CURDIR)/build/asan $(ASAN_PY) -m pip install -q --no-build-isolation ".[test]"
	touch $@

asan-test: asan-setup
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 $(ASAN_PY) -m pytest -q -p no:cacheprovider $(NATIVE_TESTS)

clean:
	rm -rf build $(VENV) $(ASAN_VENV) core/_C*.so
