# The README's two commands: `make demo` and `make test`. Both create .venv when it is missing.
# torch is pinned here and only here. TORCH_SPEC is the build `make test` and CI run: the upper
# end of the range pyproject.toml allows (torch>=2.10,<2.14, the README says it); TORCH_LOWER is
# its lower end, which `make test-lower` runs `make test-fast`'s tests on (in .venv-lower).
# PyPI's default torch wheel for Linux is the CUDA build, several GB of NVIDIA libraries; on a
# machine without an NVIDIA GPU pass PyTorch's CPU wheel index, which serves the CPU-only build
# of the same version, through TORCH_INDEX:
#   make test TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
# (it is used only when no NVIDIA GPU is found; with one, the default CUDA build is installed).
# Without TORCH_INDEX, pip takes torch from wherever its configuration points (`pip config
# list`: its index, extra indexes and find-links); from PyPI alone, that is the CUDA build. The
# set-up says which case it is in, and then which build it installed.
TORCH_SPEC ?= torch==2.13.0
TORCH_LOWER ?= torch==2.10.0
TORCH_INDEX ?=
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# braindecode (the [braindecode] extra, also in [dev]: the parity tests of
# emg_lens.models.from_braindecode) needs torchaudio, whose newest release (2.11) ships compiled
# extensions built for torch 2.11 that fail to load into the torch above; without them
# torchaudio runs in its pure-Python mode, which is all braindecode's models use. So `make`
# installs, before the extras, the official torchaudio wheel repacked without torchaudio/lib/*.so
# (tools/torchaudio_nolib.py: version 2.11.0+nolib, py3-none-any; the repack is kept in .whl/).
# A user whose torch matches torchaudio's build needs none of this:
# `pip install "emg_lens[braindecode]"`.
TORCHAUDIO_VERSION ?= 2.11.0
WHEELS := .whl

# Real recordings the tests read that the repository cannot hold (GPL): fetched from PyPI at
# set-up, checked by SHA-256 (tools/fetch_real_data.py); `make data` fetches them alone.
REAL_DATA := .data/openhdemg/otb_testfile.mat

.PHONY: demo test test-fast test-lower wheel docs docs-api data lint format bench clean

# $(call install_torch,PYTHON,SPEC): installs SPEC into PYTHON's environment, saying first
# which build it asks for and why, then which build pip installed (the version's local label:
# 2.13.0+cpu is the CPU-only build; a CUDA build names its CUDA version).
define install_torch
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing $(2) from pip's configured indexes (PyPI: the CUDA build)"; \
		$(1) -m pip install --quiet "$(2)"; \
	elif [ -n '$(TORCH_INDEX)' ]; then \
		echo "No NVIDIA GPU: installing $(2) from TORCH_INDEX ($(TORCH_INDEX))"; \
		$(1) -m pip install --quiet "$(2)" $(TORCH_INDEX); \
	else \
		echo "No NVIDIA GPU and no TORCH_INDEX: installing $(2) from pip's configured indexes" \
			"and find-links ('pip config list'); from PyPI alone that is the CUDA build, several GB;" \
			"TORCH_INDEX=\"--index-url https://download.pytorch.org/whl/cpu\" gives the CPU build"; \
		$(1) -m pip install --quiet "$(2)"; \
	fi
	@$(1) -W ignore -c "import torch; print('installed: torch', torch.__version__, \
		f'(CUDA {torch.version.cuda} build)' if torch.version.cuda else '(CPU-only build)')"
endef

$(STAMP): pyproject.toml Makefile tools/torchaudio_nolib.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(call install_torch,$(PY),$(TORCH_SPEC))
	$(PY) -m pip install --quiet --no-deps \
		"$$($(PY) tools/torchaudio_nolib.py $(WHEELS) --version $(TORCHAUDIO_VERSION))"
	$(PY) -m pip install --quiet -e ".[dev,docs]"
	@touch $(STAMP)

$(REAL_DATA): tools/fetch_real_data.py | $(STAMP)
	$(PY) tools/fetch_real_data.py $@

data: $(REAL_DATA)

demo: $(STAMP)
	$(VENV)/bin/emg-lens demo

# `make test` checks everything CI checks, in this order: the documentation site (`docs`: the
# notebooks execute once, one kernel per core, for its gallery; then mkdocs --strict), then the
# whole suite, the notebook tests asserting on the gallery's executed copies and the site test
# on site/. One pytest worker per core (pytest-xdist), tests handed out one at a time
# (--maxschedchunk 1: larger chunks leave minute-long trainings queued on one worker while the
# other idles). The 20 slowest are listed at the end, to see where time goes.
# `make test-fast` is the inner loop: everything not marked slow (a test over 2 s on one idle
# core is marked: tests/slow_marker.py lists unmarked ones over it and fails CI on one over 10 s),
# no site build; the runtime checks of the exported names on, as in make test (tests/typecheck.py:
# they cost little since issue 87, checking only the public surface): about 6,400 tests in 70 s
# to 160 s on 2 idle cores, by the machine (6,406 took 111 s on an idle AMD EPYC 2-core on
# 2026-11-28; 6,100 took 70.8 s on one, 158 s on another; their number, not their size, is the
# time).
# Both keep bytecode even where the environment sets PYTHONDONTWRITEBYTECODE: pytest caches its
# assertion-rewritten test modules there, and without them each worker rewrites all 290 again
# (collection 31 s -> 15 s per worker from the second run on).
test test-fast: export PYTHONDONTWRITEBYTECODE :=
test: docs $(REAL_DATA)
	$(PY) -m pytest -n auto --maxschedchunk 1 --durations=20 $(PYTEST_ARGS)

FAST := -m pytest -n auto -m "not slow" --durations=10
test-fast: $(STAMP) $(REAL_DATA)
	$(PY) $(FAST) $(PYTEST_ARGS)

# `make test-lower`: `make test-fast`'s tests on the lower end of the torch range (TORCH_LOWER),
# in a virtual environment of its own, .venv-lower (the project with its dev and docs extras and
# the torchaudio repack above, as .venv has them: test-fast's tests read docs/hooks.py, which
# imports mkdocs).
# TORCH_INDEX works as for .venv. Run it before changing the range (pyproject.toml's torch
# dependency and the README's install section say it); CI runs the upper end (make test).
LOWER := .venv-lower
LOWER_STAMP := $(LOWER)/.installed
$(LOWER_STAMP): pyproject.toml Makefile tools/torchaudio_nolib.py
	@test -x $(LOWER)/bin/python || $(PYTHON) -m venv $(LOWER)
	$(LOWER)/bin/python -m pip install --quiet --upgrade pip
	$(call install_torch,$(LOWER)/bin/python,$(TORCH_LOWER))
	$(LOWER)/bin/python -m pip install --quiet --no-deps \
		"$$($(LOWER)/bin/python tools/torchaudio_nolib.py $(WHEELS) --version $(TORCHAUDIO_VERSION))"
	$(LOWER)/bin/python -m pip install --quiet -e ".[dev,docs]"
	@touch $(LOWER_STAMP)

test-lower: export PYTHONDONTWRITEBYTECODE :=
test-lower: $(LOWER_STAMP)
	@test -f $(REAL_DATA) || $(LOWER)/bin/python tools/fetch_real_data.py $(REAL_DATA)
	$(LOWER)/bin/python $(FAST) $(PYTEST_ARGS)

# The documentation site (mkdocs.yml) into site/, to open as site/index.html: the notebooks are
# executed first (docs/gallery.py, one kernel per core, on kernels isolated from the user's
# IPython profile and PYTHONPATH; cached in .cache/docs/ by their content, the code and the
# installed versions; the kernels' trainings kept in .cache/gallery/, which the test suite's
# private cache starts from), then `mkdocs build --strict`, where any warning (a broken link, a module
# without its API page, a notebook that failed) fails.
docs: $(STAMP)
	$(PY) docs/gallery.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	@echo "site: $(CURDIR)/site/index.html"

# The same site without executing the notebooks (the API pages from the docstrings and the
# guide, in about 30 s on two cores against minutes), not strict: the Gallery's notebook pages
# are missing and each link to them is a warning; `make docs` builds the whole site over it.
docs-api: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --no-strict
	@echo "site without the gallery: $(CURDIR)/site/index.html"

# The wheel a user installs with pip (`pip install dist/emg_lens-*.whl`: the package and its
# data, no repository file), built by pip with the build backend (hatchling) fetched into an
# isolated environment: no .venv needed. tests/integration/test_wheel.py builds one offline, with
# .venv's hatchling, and runs the demo from it outside the checkout.
wheel:
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls -1 $(CURDIR)/dist/emg_lens-*-py3-none-any.whl

lint: $(STAMP)  # ruff, then mypy on the package ([tool.mypy] in pyproject.toml), as CI runs it
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check . && $(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(LOWER) dist $(WHEELS) .data runs site .cache .pytest_cache .ruff_cache .hypothesis
