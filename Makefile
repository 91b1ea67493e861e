# Two commands on a fresh machine:  `make lab` opens the course, `make test` checks it (the quick check).
# Each creates .venv and installs what it needs on first use. `make test-all` is what CI runs (.ci/run).
#
# Versions: the exact ones CI passed with, from the lock of this Python (requirements/py3.X.txt, used as a pip
# constraints file); `make upgrade` rewrites the locks with the newest versions pyproject.toml's ranges allow.
# `make lab LOCK=` (empty) installs those newest versions instead, without a lock (CI's newest-versions leg).
#
# PyTorch: without an NVIDIA driver (no nvidia-smi, no /proc/driver/nvidia) the CPU build is installed
# from PyTorch's CPU index (about 1 GB less than the CUDA build PyPI serves); if that index cannot be
# reached, the default index is used and a line says so. torch is pinned here (TORCH), not in the locks.
# Overrides:
#   make lab TORCH_INDEX=https://download.pytorch.org/whl/cu126   # any index; TORCH_INDEX= (empty) = pip's default
#   make lab TORCH=torch==2.5.1 LOCK=                             # another version (its own dependencies: no lock)
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?= auto
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
VENV ?= .venv
BIN := $(VENV)/bin
LAB_PORT ?= 8888
# JupyterLab refuses to run as root (e.g. in a container) unless told to.
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)
# The lock of the Python that creates the venv; none for a Python without one (then: the newest versions).
PY_MINOR := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
LOCK ?= $(wildcard requirements/py$(PY_MINOR).txt)
LOCK_ARGS := $(if $(LOCK),-c $(LOCK))
# Quick check (`make test`): what a student runs; `make test-all`: everything CI runs.
QUICK_MARKERS := not slow and not browser and not site
# `make test` runs in parallel (pytest-xdist): a worker per core, at most 4 (each notebook kernel takes up to ~2 GB);
# --dist loadscope keeps each notebook's cells, and each test file, in one worker and in order. WORKERS=0: serial.
WORKERS ?= auto
XDIST_ARGS := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --maxprocesses 4 --dist loadscope)

.PHONY: lab test test-all test-unit test-browser lint install clean-venv site test-site upgrade

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, so that the dependency resolver never pulls a CUDA build on its own.
# --extra-index-url keeps PyPI for torch's own dependencies; the CPU index's "2.13.0+cpu" sorts above
# PyPI's "2.13.0", so pip takes the CPU build. A wheel in pip's find-links (offline CI) works the same way.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	@if [ -n "$(LOCK)" ]; then \
	  echo "versions: the lock $(LOCK) (those CI passed with; make upgrade refreshes it)"; \
	else \
	  echo "versions: the newest that pyproject.toml allows ($(if $(wildcard requirements/py$(PY_MINOR).txt),LOCK is empty,no lock requirements/py$(PY_MINOR).txt for this Python))"; \
	fi
	@index="$(TORCH_INDEX)"; \
	if [ "$$index" = auto ]; then \
	  index=; \
	  if command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia/version ]; then \
	    echo "torch: NVIDIA driver found: installing $(TORCH) from the default index (CUDA build)"; \
	  elif $(BIN)/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=8)" >/dev/null 2>&1; then \
	    index=$(TORCH_CPU_INDEX); echo "torch: no NVIDIA GPU: installing the CPU build of $(TORCH) from $$index"; \
	  else \
	    echo "torch: no NVIDIA GPU, but $(TORCH_CPU_INDEX) cannot be reached: installing $(TORCH) from the default index (local wheels first; else possibly the large CUDA build)"; \
	  fi; \
	fi; \
	$(BIN)/python -m pip install -q "$(TORCH)" $${index:+--extra-index-url $$index} $(LOCK_ARGS)
	$(BIN)/python -m pip install -q -e ".[test]" $(LOCK_ARGS)
	touch $@

install: $(VENV)/.installed

lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(LAB_PORT) $(ROOT_ARGS) $(LAB_ARGS)

# The quick check: the unit tests (not those marked slow, browser or site) and every notebook under nbval, in
# fast mode. What a student runs after a change.
test: install
	EDUDIFF_FAST=$${EDUDIFF_FAST:-1} $(BIN)/python -m pytest tests --nbval notebooks -m "$(QUICK_MARKERS)" $(XDIST_ARGS) $(PYTEST_ARGS)

# Everything CI runs (bash .ci/run, after make lint): the quick check as a student runs it (make test), then the
# slow and browser tests (one at a time: the browser tests share a JupyterLab server), then the website built and
# checked in Chromium (make test-site). Together: every test and every notebook. Chromium: bash .ci/install_browser.sh.
test-all: install
	$(MAKE) test
	EDUDIFF_FAST=$${EDUDIFF_FAST:-1} $(BIN)/python -m pytest tests -m "(slow or browser) and not site" $(PYTEST_ARGS)
	$(MAKE) test-site

# The package's unit tests only (no notebooks, no browser, no slow tests): the extra legs of .ci/run.
test-unit: install
	EDUDIFF_FAST=$${EDUDIFF_FAST:-1} $(BIN)/python -m pytest tests -m "not browser and not slow" $(PYTEST_ARGS)

# Lint and formatting (ruff; configured in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Only the end-to-end browser tests (Chromium: bash .ci/install_browser.sh).
test-browser: install
	EDUDIFF_FAST=$${EDUDIFF_FAST:-1} $(BIN)/python -m pytest tests/test_browser.py -m browser $(PYTEST_ARGS)

# The course website: the student versions of the notebooks, executed, with the API reference and the instructor
# guide, as a static site in build/site that works offline (docs/build_site.py; README "The course as a website").
# MathJax comes from the npm registry (npm pack), cached under build/; the doc tools from the `site` extra.
MATHJAX ?= mathjax@3.2.2
SITE_CACHE := build/site-cache

$(VENV)/.installed-site: $(VENV)/.installed pyproject.toml $(LOCK)
	$(BIN)/python -m pip install -q -e ".[site]" $(LOCK_ARGS)
	touch $@

# npm keeps what it fetched in its own cache (~/.npm/_cacache, content-addressed and verified), which outlives a
# fresh clone: --prefer-offline takes the tarball from there without asking the registry. Its sha512 is then
# checked against the registry's (npm view mathjax@3.2.2 dist.integrity), so a cached file is the published one.
MATHJAX_SHA512 ?= Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==
$(SITE_CACHE)/mathjax.tgz:
	@command -v npm >/dev/null || { echo "make site needs npm (Node.js) to fetch $(MATHJAX): install it (Debian: apt-get install npm)"; exit 1; }
	mkdir -p $(SITE_CACHE)
	cd $(SITE_CACHE) && rm -f mathjax-*.tgz && npm pack --silent --prefer-offline $(MATHJAX) >/dev/null
	@got=$$($(PYTHON) -c "import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],'rb').read()).digest()).decode())" $(SITE_CACHE)/mathjax-*.tgz); \
	if [ "$$got" != "$(MATHJAX_SHA512)" ]; then \
	  echo "$(SITE_CACHE): the $(MATHJAX) tarball has sha512 $$got, not the registry's $(MATHJAX_SHA512); delete it and ~/.npm/_cacache, then run make site again"; \
	  rm -f $(SITE_CACHE)/mathjax-*.tgz; exit 1; \
	fi
	mv $(SITE_CACHE)/mathjax-*.tgz $@

site: $(VENV)/.installed-site $(SITE_CACHE)/mathjax.tgz
	$(BIN)/python docs/build_site.py --mathjax $(SITE_CACHE)/mathjax.tgz --out build/site $(SITE_ARGS)

# The website in headless Chromium (tests/test_site.py), after bringing build/site up to date.
test-site: site
	$(BIN)/python -m pytest tests -m site $(PYTEST_ARGS)

# Rewrite the locks (requirements/py3.X.txt) with the newest versions pyproject.toml's ranges allow, for each
# supported Python (uv resolves for Pythons that are not installed too). Then run bash .ci/run and commit them.
UV ?= uv==0.13.9
upgrade: install
	$(BIN)/python -m pip install -q "$(UV)"
	bash .ci/lock.sh $(BIN)/uv "$(TORCH)"

clean-venv:
	rm -rf $(VENV)
