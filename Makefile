# Two commands for a fresh clone: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Test processes (pytest-xdist); each test module stays in one process, so it compiles once.
# Modules go out in tests/conftest.py's order, the longest first (xdist's default reorder
# by test count would start a one-test, five-minute module last).
TEST_WORKERS ?= 2

.PHONY: venv peer-venv demo test test-fast clean

# --no-compile: pip would byte-compile every installed module (half of a fresh install's time,
# 138 s against 65 s here); Python compiles the few it imports on first use instead.
PIP := $(PY) -m pip install -q --disable-pip-version-check --no-compile

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The peer harness's own interpreter (experiments/peer.py): d3rlpy 2.8.1 and torch's CPU build,
# never in .venv. d3rlpy pins gymnasium==1.0.0; --no-deps keeps the environments at .venv's.
PEER_VENV := .peer-venv
$(PEER_VENV)/.installed: requirements-peer.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-peer.txt
	$(PEER_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps d3rlpy==2.8.1
	touch $(PEER_VENV)/.installed

peer-venv: $(PEER_VENV)/.installed

demo: $(STAMP)
	$(PY) -m experiments.demo

test: $(STAMP)
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

clean:
	rm -rf $(VENV) $(PEER_VENV) .jax_cache .pytest_cache
