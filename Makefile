# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepmat-installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# compile orix's and kikuchipy's Numba caches in one process: two processes writing
	# them at once (tests, Dask workers, a training run) have left corrupt caches that
	# crash every later import with a segmentation fault
	$(BIN)/python -c "import kikuchipy, orix.crystal_map"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/deepmat demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf runs .pytest_cache
