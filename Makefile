# The README's two commands: `make train` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel of torch: pinned before anything else so no dependency pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
export OMP_NUM_THREADS ?= 1

.PHONY: install train test lint typecheck docs zoo-check tune

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[zoo,tests,docs]" "$(TORCH_SPEC)"
	touch $@

install: $(VENV)/.installed

# Train an RN agent (PPO + RN on LunarLander-v3, 1M steps, ~5 min on 1 core) with rl_zoo3; TensorBoard logs and
# per-layer code length go to logs/tb, the model to logs/zoo. Override e.g. `make train ALGO=dqn NORM=ln`.
ALGO ?= ppo
ENV ?= LunarLander-v3
NORM ?= rn
SEED ?= 0
TRAIN_ARGS ?=
train: install
	$(PY) -m rl_zoo3.train --algo $(ALGO) --env $(ENV) --gym-packages sb3_regnorm -conf zoo/$(NORM)/$(ALGO).yml \
		-tb logs/tb -f logs/zoo --num-threads 1 --seed $(SEED) --eval-freq -1 -P $(TRAIN_ARGS)

# Validate every zoo entry (env ids, classes, policy_kwargs) and that zoo/ equals its generator, without training.
# `$(PY) -m sb3_regnorm zoo check --zoo DIR` validates any folder of rl_zoo3 files (your own zoo).
zoo-check: install
	$(PY) -m sb3_regnorm zoo check

# Tune one zoo entry with optuna; e.g. `make tune ALGO=a2c NORM=rn TRIALS=8`. The SQLite study and its summary
# (.json/.md) go to logs/tuning/; rerunning resumes the study. zoo/studies/ changes only through
# `$(PY) -m sb3_regnorm tune promote --study-name <study>`.
TRIALS ?= 8
TUNE_STEPS ?= 150000
tune: install
	$(PY) -m sb3_regnorm tune --algo $(ALGO) --env $(ENV) --norm $(NORM) --n-trials $(TRIALS) --n-timesteps $(TUNE_STEPS) \
		--storage sqlite:///logs/tuning/$(ALGO)-$(ENV)-$(NORM).db --study-name $(ALGO)-$(ENV)-$(NORM) --seed 1000

# CI (.ci/run): lint, formatting, types and the documentation build, then the fast tests.
test: lint typecheck docs
	$(PY) -m pytest -m "not slow" --durations=10 tests

lint: install
	$(PY) -m ruff check sb3_regnorm tests bench
	$(PY) -m ruff format --check sb3_regnorm tests bench

# mypy settings live in pyproject.toml ([tool.mypy]).
typecheck: install
	$(PY) -m mypy sb3_regnorm

# The documentation site (mkdocs.yml, docs/) into site/; --strict turns broken references and missing pages into errors.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet
