# The two commands of the README: `make test` and `make run`. Each installs what it needs, and
# no more: `make run` gets the service alone (no torch, no test tools); `make test` gets
# everything the tests import. Separate stamps, so one never reinstalls for the other.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
DIFFUSERS_STAMP := $(VENV)/.installed-diffusers
# The vision models (mediapipe 0.10.21: numpy<2, protobuf<5) live in their own environment, run
# as a helper process (src/posegen/vision/helper_main.py); the main one stays on numpy 2. A lean
# install: mediapipe without its declared jax/jaxlib (~1 GB it never uses for these models); pip
# then lists those as missing: expected.
VISION_VENV ?= .venv-vision
VISION_STAMP := $(VISION_VENV)/.installed
VISION_PIP := $(VISION_VENV)/bin/python -m pip install --quiet
# torch is installed first, alone, from this index: CPU wheels (~200 MB) instead of PyPI's
# CUDA build (~2 GB of NVIDIA libraries). For an NVIDIA GPU:
#   make install-diffusers TORCH_INDEX=https://download.pytorch.org/whl/cu124
# Where the index cannot be reached (offline mirrors) pip's configured indexes are used instead.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP := $(BIN)/python -m pip install --quiet
# pytest-xdist workers for `make test` (more than the cores pay: many tests wait on subprocesses,
# sockets and sleeps). `make test PYTEST_ARGS=` runs the suite in one process.
PYTEST_ARGS ?= -n 4 --dist loadgroup
# The test extra pins torch; the diffusers extra takes any recent one.
TEST_TORCH := $(shell sed -n 's/^ *"\(torch==[^"]*\)".*/\1/p' pyproject.toml | head -n 1)
DIFFUSERS_TORCH := $(shell sed -n 's/^ *"\(torch>=[^"]*\)".*/\1/p' pyproject.toml | head -n 1)
define install_torch
	$(PIP) --retries 0 --timeout 30 --index-url $(TORCH_INDEX) '$(1)' || $(PIP) '$(1)'
endef

.PHONY: install install-run install-test install-diffusers install-vision test lint typecheck pytest run bench clean

install: install-test
install-run: $(RUN_STAMP)
install-test: $(TEST_STAMP)
install-diffusers: $(DIFFUSERS_STAMP)
install-vision: $(VISION_STAMP)

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

$(VISION_STAMP): Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 12) else "mediapipe 0.10.21 needs Python 3.9-3.12")'
	$(PYTHON) -m venv $(VISION_VENV)
	$(VISION_PIP) --upgrade pip
	$(VISION_PIP) --no-deps mediapipe==0.10.21
	$(VISION_PIP) 'numpy<2' 'opencv-python-headless>=4.10,<4.12' 'protobuf>=4.25.3,<5' absl-py attrs flatbuffers matplotlib
	@touch $(VISION_STAMP)

lint: install-test
	$(BIN)/ruff check src tests bench

typecheck: install-test
	$(BIN)/mypy

pytest: install-test install-vision
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

run: install-run
	$(BIN)/posegen up

clean:
	rm -rf $(VENV) $(VISION_VENV) .pytest_cache .mypy_cache .ruff_cache
