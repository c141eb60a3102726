# The README's two commands: `make train` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel of torch: pinned before anything else so no dependency pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
export OMP_NUM_THREADS ?= 1

.PHONY: install train test lint bench

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[zoo,tests]" "$(TORCH_SPEC)"
	touch $@

install: $(VENV)/.installed

# Train an RN agent; TensorBoard logs go under logs/.
train: install
	$(PY) -m sb3_regnorm train --algo ppo --env LunarLander-v3 --norm rn --tensorboard-log logs/tb

test: install
	$(PY) -m ruff check sb3_regnorm tests bench
	$(PY) -m pytest -m "not slow" --durations=10 tests

lint: install
	$(PY) -m ruff check sb3_regnorm tests bench
	$(PY) -m ruff format --check sb3_regnorm tests bench
