# The README's two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
# The torch to build and run with; override for a CUDA build, e.g. TORCH_SPEC="torch==2.11.0".
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
NATIVE_SOURCES := $(wildcard csrc/*.h csrc/*.cpp csrc/*/*.h csrc/*/*.cpp csrc/*/*.cu)
NVCC ?= nvcc

.PHONY: setup demo test bench cuda-check asan-setup asan-test clean

setup: $(VENV)/.musicrep-installed

$(VENV)/.musicrep-installed: setup.py pyproject.toml CMakeLists.txt $(NATIVE_SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
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

# Compile every CUDA source with plain nvcc (no GPU, no CUDA torch needed), so it cannot rot.
cuda-check:
	@for f in csrc/cuda/*.cu; do [ -e "$$f" ] || continue; echo "nvcc -c $$f"; \
	  $(NVCC) -std=c++17 -O2 -Icsrc -arch=sm_90 -c "$$f" -o /tmp/musicrep-cuda-check.o || exit 1; done

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
