# The README's two commands: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV ?= .venv
# The torch to build and run with; override for a CUDA build, e.g. TORCH_SPEC="torch==2.11.0".
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
NATIVE_SOURCES := $(wildcard csrc/*.h csrc/*.cpp csrc/*/*.h csrc/*/*.cpp csrc/*/*.cu)
NVCC ?= nvcc

.PHONY: setup demo test bench cuda-check clean

setup: $(VENV)/.musicrep-installed

$(VENV)/.musicrep-installed: setup.py pyproject.toml CMakeLists.txt $(NATIVE_SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/musicrep run examples/quickstart.toml

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest benchmarks --benchmark-enable -q

# Compile every CUDA source with plain nvcc (no GPU, no CUDA torch needed), so it cannot rot.
cuda-check:
	@for f in csrc/cuda/*.cu; do [ -e "$$f" ] || continue; echo "nvcc -c $$f"; \
	  $(NVCC) -std=c++17 -O2 -Icsrc -arch=sm_90 -c "$$f" -o /tmp/musicrep-cuda-check.o || exit 1; done

clean:
	rm -rf build $(VENV) core/_C*.so
