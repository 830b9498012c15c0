# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
DEMO_COLLECTION ?= $(CURDIR)/indexes/demo

.PHONY: run serve test lint bench bench-scale soak install install-dev browser demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## Debian's chromium for the real-browser test (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(BIN)/imgfinder demo build --if-missing --collection $(DEMO_COLLECTION)

run: demo
	IMGFINDER_COLLECTION=$(DEMO_COLLECTION) $(BIN)/streamlit run app.py \
		--server.address 127.0.0.1 --server.port $(PORT) --server.headless true

## The HTTP API on 127.0.0.1:8000 (OpenAPI at /docs), over the demo collection.
serve: demo
	IMGFINDER_COLLECTION=$(DEMO_COLLECTION) $(BIN)/imgfinder serve

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint browser
	$(BIN)/python -m pytest -q

bench: install-dev
	$(BIN)/python bench/run_all.py

## Indexers at 10^5 vectors (SCALE=--million for 10^6: about 15 minutes, 4 GB of disk).
bench-scale: install-dev
	$(BIN)/python bench/bench_scale.py $(SCALE)

## Crash and concurrency soak (100 kills, 200 two-writer and 100 stale-index trials).
soak: install-dev
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
