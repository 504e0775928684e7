# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepmat-installed

.PHONY: demo test lint docs install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# compile the Numba caches of orix, kikuchipy and umap in one process: two processes
	# compiling into them at once can leave caches that crash every later import
	$(BIN)/python tools/compile_numba_caches.py
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/deepmat demo --out runs/demo

# two test workers (pytest-xdist) on a two-core machine, at most four on a larger one
test: $(STAMP)
	$(BIN)/python -m pytest -q --numprocesses auto --maxprocesses 4 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

# HTML API reference from the docstrings, with pdoc. pdoc walks only into the submodules that a
# package's __all__ names (ours name none), so every public module under src/deepmat is named;
# the "!<package>\." after each package drops what pdoc found under it by itself (in a package
# without __all__), which it would otherwise warn about when those modules are named again.
# PDOC_ALLOW_EXEC: a library runs `uname -p` on import, which pdoc would stop and warn about.
# tests/test_docs.py builds the same reference and fails on any warning.
docs: $(STAMP)
	rm -rf docs/api
	PDOC_ALLOW_EXEC=1 $(BIN)/pdoc --docformat restructuredtext --math -o docs/api \
	    $$($(BIN)/python -c "import pathlib, re; \
	    files = sorted(pathlib.Path('src').glob('deepmat/**/*.py')); \
	    names = ['.'.join(f.relative_to('src').with_suffix('').parts) for f in files]; \
	    names = [n.removesuffix('.__init__') + ' !' + re.escape(n[:-8]) if n.endswith('.__init__') \
	             else n for n in names if '._' not in n.removesuffix('.__init__')]; \
	    print(*names)")

clean:
	rm -rf runs .pytest_cache docs/api
