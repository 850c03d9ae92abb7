# The two commands of the README: `make test` and `make run`. Each installs what it needs, and
# no more: `make run` gets the service alone (no torch, no test tools); `make test` gets
# everything the tests import. Separate stamps, so one never reinstalls for the other.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
DIFFUSERS_STAMP := $(VENV)/.installed-diffusers
# torch is installed first, alone, from this index: CPU wheels (~200 MB) instead of PyPI's
# CUDA build (~2 GB of NVIDIA libraries). For an NVIDIA GPU:
#   make install-diffusers TORCH_INDEX=https://download.pytorch.org/whl/cu124
# Where the index cannot be reached (offline mirrors) pip's configured indexes are used instead.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP := $(BIN)/python -m pip install --quiet
# The test extra pins torch; the diffusers extra takes any recent one.
TEST_TORCH := $(shell sed -n 's/^ *"\(torch==[^"]*\)".*/\1/p' pyproject.toml | head -n 1)
DIFFUSERS_TORCH := $(shell sed -n 's/^ *"\(torch>=[^"]*\)".*/\1/p' pyproject.toml | head -n 1)
define install_torch
	$(PIP) --retries 0 --timeout 30 --index-url $(TORCH_INDEX) '$(1)' || $(PIP) '$(1)'
endef

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
	$(call install_torch,$(TEST_TORCH))
	$(PIP) -e '.[test,bench]'
	@touch $(TEST_STAMP) $(RUN_STAMP)

$(DIFFUSERS_STAMP): pyproject.toml | $(VENV)/bin/python
	$(call install_torch,$(DIFFUSERS_TORCH))
	$(PIP) -e '.[diffusers]'
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
