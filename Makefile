# Set-up and the two README commands.  `make demo` and `make test` create .venv when it is missing.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.spikec-installed

.PHONY: demo test lint test-long bench bench-lava-scale bench-compile-scale examples install clean

# torch==2.13.0 first (a CPU wheel here; anything else pulls a multi-GB CUDA build), then
# spikingjelly / lava-nc with --no-deps (their pins pull CUDA torchvision or refuse Python 3.11),
# then what their imports really need and spikec itself (editable).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	$(PIP) install -q --no-deps --ignore-requires-python lava-nc==0.10.0
	$(PIP) install -q --no-deps norse==1.1.0 sinabs==3.1.3  # NIR consumers (tests): their pins pull torchvision / CUDA or old nir
	$(PIP) install -q -e '.[frameworks,nir,onnx,interop,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

LINTED := spikec passes targets tests examples benchmarks

lint: $(STAMP)
	$(PY) -m ruff check $(LINTED)

test: lint
	$(PY) -m pytest -q tests

# bigger model configurations (minutes)
test-long: $(STAMP)
	SPIKEC_LONG_TESTS=1 $(PY) -m pytest -q tests

examples: $(STAMP)
	$(PY) examples/compile_family.py all

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# Lava at real sizes: Spikformer embed 64 and the CIFAR Spikformer-4-384 (several minutes, ~3 GB)
bench-lava-scale: $(STAMP)
	$(PY) benchmarks/lava_scale.py

# compile time and peak memory vs parameter count, 0.16M to the 66M ImageNet Spikformer-8-768 (~4 min idle, ~3 GB)
bench-compile-scale: $(STAMP)
	$(PY) benchmarks/compile_scale.py --set full

clean:
	rm -rf $(VENV) build dist *.egg-info out
