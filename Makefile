# mtlsyn — the README's two commands (`make study`, `make test`) and the docs.
# Each target sets up .venv on first use and re-installs whenever pyproject.toml or the pins change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch/torchvision releases this project is tested on. `make PINS=` installs without them.
PINS ?= requirements/pins.txt
SETUP_HASH := $(shell cat pyproject.toml $(PINS) 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(SETUP_HASH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: venv test study docs readme sync-check lint nbtest pytest bench bench-medmnist bench-medmnist-summary bench-convergence gpu-check gpu-wheels clean

venv: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup: installing mtlsyn[dev] into $(VENV) (pyproject hash $(SETUP_HASH))"
	@start=$$(date +%s); \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' $(if $(PINS),-c $(PINS)) && \
	  echo "setup: installed in $$(( $$(date +%s) - start )) s"
	@rm -f $(VENV)/.installed-*
	@touch $@

## make test: notebooks and library in sync and clean, the library lint-clean, then every notebook and the pytest suite
test: venv sync-check lint nbtest pytest

sync-check: venv
	@before=$$(git status --porcelain --untracked-files=all -- nbs mtlsyn; git diff -- nbs mtlsyn | sha256sum); \
	  $(BIN)/nbdev-export && $(BIN)/nbdev-clean || exit 1; \
	  after=$$(git status --porcelain --untracked-files=all -- nbs mtlsyn; git diff -- nbs mtlsyn | sha256sum); \
	  if [ "$$before" != "$$after" ]; then \
	    echo "sync-check: FAILED: nbdev-export/nbdev-clean changed these files (notebooks and library out of sync, or notebooks unclean):"; \
	    git status --porcelain --untracked-files=all -- nbs mtlsyn; \
	    echo "sync-check: review them with 'git diff', commit, and run 'make test' again."; exit 1; \
	  fi; echo "sync-check: notebooks and library are in sync and clean"

## lint: no unused imports (F401) and no undefined names (F821) in the library
lint: venv
	@$(BIN)/ruff check mtlsyn --select F401,F821 && echo "lint: ruff F401/F821 clean"

nbtest: venv
	@start=$$(date +%s); OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 && \
	  echo "nbdev-test: all notebooks passed in $$(( $$(date +%s) - start )) s"

pytest: venv
	@$(BIN)/python -m pytest tests -q -p no:cacheprovider

## make study: the quick study on the built-in phantom benchmark, offline, into runs/quick/
study: venv
	@start=$$(date +%s); $(BIN)/mtlsyn-study studies/quick.yaml --out runs/quick && \
	  echo "study: finished in $$(( $$(date +%s) - start )) s"

# make bench: every CPU benchmark, one thread each (the machine is shared), each rewriting only its own section of benchmarks/RESULTS.md
BENCH := overhead throughput memory diffusion channels_last_auc study_throughput
bench: venv
	@start=$$(date +%s); export OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}; \
	  for b in $(BENCH); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done; \
	  echo "bench: finished in $$(( $$(date +%s) - start )) s; results in benchmarks/RESULTS.md"

## make bench-medmnist: the full MedMNIST ResNet-18 (28) recipe (BreastMNIST seeds 0-2, PneumoniaMNIST seed 0) in the background,
## resumable (finished runs are skipped); `make bench-medmnist-summary` writes their section of benchmarks/RESULTS.md. Needs MEDMNIST_ROOT.
bench-medmnist: venv
	@mkdir -p runs; export OMP_NUM_THREADS=1; \
	  nohup $(BIN)/python studies/medmnist_resnet18.py --datasets breastmnist --seeds 0 1 2 > runs/recipe-breast.log 2>&1 & echo "breastmnist: pid $$!, log runs/recipe-breast.log"; \
	  nohup $(BIN)/python studies/medmnist_resnet18.py --datasets pneumoniamnist --seeds 0 > runs/recipe-pneumonia.log 2>&1 & echo "pneumoniamnist: pid $$!, log runs/recipe-pneumonia.log"

bench-medmnist-summary: venv
	@$(BIN)/python benchmarks/medmnist_summary.py

## make bench-convergence: the convergence headline (6 settings × 3 seeds on BreastMNIST, resumable) and its RESULTS.md section,
## against the recipe records of bench-medmnist. Needs MEDMNIST_ROOT. Minutes on a GPU; about an hour at 2 CPU threads.
bench-convergence: venv
	@$(BIN)/mtlsyn-study studies/convergence.yaml --out studies/results/convergence && $(BIN)/python benchmarks/convergence_headline.py

## make gpu-check: mtlsyn's CUDA paths on a GPU machine's bare python3 (no venv): wheels from .whl/ (make gpu-wheels, here),
## the repository on PYTHONPATH; prints a PASS/FAIL table (also runs/gpu-check.md); exits 2 at once without CUDA. Back here:
## python benchmarks/gpu_check.py --write-results <table> [--overhead-log <benchmarks/gpu_overhead.py log>] writes RESULTS.md's gpu section.
gpu-check:
	@if ls .whl/*.whl >/dev/null 2>&1; then python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mtlsyn-site .whl/*.whl || exit 1; fi; \
	  PYTHONPATH=$(CURDIR):/tmp/mtlsyn-site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out runs/gpu-check.md

## make gpu-wheels: download the wheels gpu-check needs (benchmarks/gpu_wheels.txt) for Python 3.12 into .whl/ (add /.whl/ to .git/info/exclude)
gpu-wheels:
	@mkdir -p .whl; grep -v '^#' benchmarks/gpu_wheels.txt | xargs python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl

## make docs: the Quarto site with nbdev-docs where Quarto is installed; else tools/build_docs.py renders the same
## pages from nbdev's processing (titles, the _quarto.yml sidebar, cell options, local links) into _docs/
docs: venv
	@if command -v quarto >/dev/null 2>&1; then \
	  echo "docs: Quarto found: building the site with nbdev-docs into _docs/"; $(BIN)/nbdev-docs; \
	else \
	  echo "docs: Quarto not found: rendering nbdev's processed notebooks with tools/build_docs.py into _docs/"; \
	  $(BIN)/python tools/build_docs.py; \
	fi

## make readme: README.md from nbs/index.ipynb (the only target that writes README.md)
readme: venv
	@if command -v quarto >/dev/null 2>&1; then $(BIN)/nbdev-readme; \
	else $(BIN)/python tools/build_docs.py --readme; fi

clean:
	rm -rf _proc _docs runs .pytest_cache
