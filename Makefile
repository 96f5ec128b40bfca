# Two commands on a fresh machine with Python 3.11 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned, so pip never resolves a newer (CUDA) build; the project's range admits it.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: venv install install-dev demo test test-fast lint doctest bench peers triton clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/overlooked demo

test: install-dev lint
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

test-fast: install-dev
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check src tests

bench: install
	$(VENV)/bin/overlooked bench

peers: install-dev
	PYTHON=$(PY) bash scripts/install_peers.sh

# Triton, for the tests that run the GPU neuron kernels on CPU through its interpreter (TRITON_INTERPRET=1);
# never a dependency of the package (a GPU machine brings its own with its torch). About 290 MB.
triton: install-dev
	$(PIP) install -q --disable-pip-version-check "triton>=3.2"

clean:
	rm -rf $(VENV) build dist src/*.egg-info
