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

.PHONY: venv test study docs readme sync-check lint nbtest pytest bench clean

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

## make bench: the benchmarks in benchmarks/ (they write benchmarks/RESULTS.md)
bench: venv
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

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
