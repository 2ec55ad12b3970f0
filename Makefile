# The README's two commands: `make demo` and `make test`. Both create .venv when it is missing.
# torch is pinned here and only here. PyPI's default torch wheel for Linux is the CUDA build,
# several GB of NVIDIA libraries; on a machine without an NVIDIA GPU pass PyTorch's CPU wheel
# index, which serves the CPU-only build of the same version, through TORCH_INDEX:
#   make test TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
# (it is used only when no NVIDIA GPU is found; with one, the default CUDA build is installed).
TORCH_SPEC ?= torch==2.13.0
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

.PHONY: demo test test-fast docs data lint format bench clean

$(STAMP): pyproject.toml Makefile tools/torchaudio_nolib.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: installing the default (CUDA) build of $(TORCH_SPEC)"; \
		$(PY) -m pip install --quiet "$(TORCH_SPEC)"; \
	else \
		echo "No NVIDIA GPU: installing the CPU build of $(TORCH_SPEC)"; \
		$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX); \
	fi
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
# no site build, and without jaxtyping's runtime checks (--jaxtyping-packages= turns pyproject's
# off; make test, CI and a plain pytest run them): about 6,400 tests in 70 s to 160 s on 2 idle
# cores, by the machine (6,406 took 111 s on an idle AMD EPYC 2-core on 2026-11-28, and 180 s
# under the checks; 6,100 took 70.8 s on one, 158 s on another; their number, not their size,
# is the time).
# Both keep bytecode even where the environment sets PYTHONDONTWRITEBYTECODE: pytest caches its
# assertion-rewritten test modules there, and without them each worker rewrites all 290 again
# (collection 31 s -> 15 s per worker from the second run on).
test test-fast: export PYTHONDONTWRITEBYTECODE :=
test: docs $(REAL_DATA)
	$(PY) -m pytest -n auto --maxschedchunk 1 --durations=20 $(PYTEST_ARGS)

test-fast: $(STAMP) $(REAL_DATA)
	$(PY) -m pytest -n auto -m "not slow" --jaxtyping-packages= --durations=10 $(PYTEST_ARGS)

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

lint: $(STAMP)  # ruff, then mypy on the package ([tool.mypy] in pyproject.toml), as CI runs it
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check . && $(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(WHEELS) .data runs site .cache .pytest_cache .ruff_cache .hypothesis
