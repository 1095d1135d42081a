# Two commands on a fresh machine: `make demo` and `make test` (each sets up .venv first).
# Where no NVIDIA GPU is present, the CPU build of PyTorch is installed first (TORCH_CPU), so
# that the project's `torch>=2.6` is already met and no multi-gigabyte CUDA build is pulled.
# On a machine without a local CPU wheel, pass e.g.
#   make demo TORCH_CPU="torch --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU ?= torch==2.13.0
EXTRAS ?= test
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: demo test test-slow bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: installing PyTorch from the package index"; \
	else \
	  $(PY) -m pip install -q $(TORCH_CPU); \
	fi
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

demo: $(STAMP)
	$(PY) -m sast.demo

# tonic reads the real N-MNIST files (the tests write tiny ones). Its librosa/numba requirement
# serves audio data sets this project never reads, so it is installed without dependencies and
# its light requirements by name.
TONIC_DEPS := importRosbag expelliarmus h5py requests
TONIC_STAMP := $(VENV)/.installed-tonic

$(TONIC_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps tonic
	$(PY) -m pip install -q $(TONIC_DEPS)
	touch $@

# The NIR equality tests compare imported networks with Norse's and SpikingJelly's own forward
# passes. Both require torchvision (SpikingJelly also torchaudio), which would replace the CPU torch
# with a CUDA build, and neither imports it on the paths the tests use: installed without
# dependencies, and SpikingJelly's one further import (loguru) by name. snnTorch, nir and nirtorch
# come with the `test` extra.
NIR_LIBS := norse==1.1.0 spikingjelly==2.0.0
NIR_STAMP := $(VENV)/.installed-nir-libs

$(NIR_STAMP): $(TONIC_STAMP)
	$(PY) -m pip install -q --no-deps $(NIR_LIBS)
	$(PY) -m pip install -q loguru
	touch $@

test: $(NIR_STAMP)
	$(PY) -m pytest -q

test-slow: $(NIR_STAMP)
	$(PY) -m pytest -q -m slow

# The comparison libraries of bench/ (the pyproject `bench` extra). Installed with --no-deps:
# spikingjelly and tonic pin torchvision/torchaudio and would replace the CPU torch with a CUDA
# build; their light requirements follow by name. BENCH_THREADS: intra-op threads of the timed
# runs (1: reproducible ratios on a shared machine; the demo step is also timed with torch's
# default). The summary goes to runs/bench/results.json (runs/ is gitignored).
BENCH_PKGS := snntorch spikingjelly pyhessian tonic
BENCH_DEPS := loguru $(TONIC_DEPS)
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_THREADS ?= 1

$(BENCH_STAMP): $(TONIC_STAMP)
	$(PY) -m pip install -q --no-deps $(BENCH_PKGS)
	$(PY) -m pip install -q $(BENCH_DEPS)
	touch $@

bench: $(BENCH_STAMP)
	$(PY) bench/run_all.py --threads $(BENCH_THREADS) --out runs/bench/results.json

clean-venv:
	rm -rf $(VENV)
