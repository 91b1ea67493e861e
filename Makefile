# Two commands on a fresh machine:  `make lab` opens the course, `make test` runs every test.
# Each creates .venv and installs what it needs on first use.
#
# CPU-only machine? Avoid the multi-GB CUDA build of torch with
#   make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
LAB_PORT ?= 8888
# JupyterLab refuses to run as root (e.g. in a container) unless told to.
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test test-browser lint install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, so that the dependency resolver never pulls a CUDA build on its own.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(LAB_PORT) $(ROOT_ARGS) $(LAB_ARGS)

test: install
	EDUDIFF_FAST=$${EDUDIFF_FAST:-1} $(BIN)/python -m pytest tests --nbval notebooks $(PYTEST_ARGS)

# Lint and formatting (ruff; configured in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Only the end-to-end browser tests (Chromium: bash .ci/install_browser.sh).
test-browser: install
	EDUDIFF_FAST=$${EDUDIFF_FAST:-1} $(BIN)/python -m pytest tests/test_browser.py -m browser $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
