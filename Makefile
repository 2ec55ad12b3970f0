# The README's two commands: `make demo` and `make test`. Both create .venv when it is missing.
# torch is pinned here and only here. On a machine without an NVIDIA GPU the CPU build is
# installed (this workplace's pip finds it locally; elsewhere set TORCH_INDEX to PyTorch's CPU
# wheel index, e.g. `make test TORCH_INDEX="--index-url <cpu index>"`).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing the default (CUDA) build of $(TORCH_SPEC)"; \
		$(PY) -m pip install --quiet "$(TORCH_SPEC)"; \
	else \
		echo "No NVIDIA GPU: installing the CPU build of $(TORCH_SPEC)"; \
		$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX); \
	fi
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/emg-lens demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
