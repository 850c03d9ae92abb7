# The two commands of the README: `make test` and `make run`. Each installs what it needs, and
# no more: `make run` gets the service alone (no torch, no test tools); `make test` gets
# everything the tests import. Separate stamps, so one never reinstalls for the other.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
DIFFUSERS_STAMP := $(VENV)/.installed-diffusers
# torch comes from this index (CPU wheels, ~200 MB instead of ~1.7 GB with CUDA libraries).
# For an NVIDIA GPU: make install-diffusers TORCH_INDEX=https://download.pytorch.org/whl/cu124
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP := $(BIN)/python -m pip install --quiet
TORCH_PIP := $(PIP) --extra-index-url $(TORCH_INDEX)

.PHONY: install install-run install-test install-diffusers test lint typecheck pytest run bench clean

install: install-test
install-run: $(RUN_STAMP)
install-test: $(TEST_STAMP)
install-diffusers: $(DIFFUSERS_STAMP)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "posegen needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	@touch $(RUN_STAMP)

# The test extra includes the diffusers stack (torch from TORCH_INDEX) and the bench rivals.
$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(TORCH_PIP) -e '.[test,bench]'
	@touch $(TEST_STAMP) $(RUN_STAMP)

$(DIFFUSERS_STAMP): pyproject.toml | $(VENV)/bin/python
	$(TORCH_PIP) -e '.[diffusers]'
	@touch $(DIFFUSERS_STAMP) $(RUN_STAMP)

lint: install-test
	$(BIN)/ruff check src tests bench

typecheck: install-test
	$(BIN)/mypy

pytest: install-test
	$(BIN)/pytest

test: lint typecheck pytest

run: install-run
	$(BIN)/posegen up

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
