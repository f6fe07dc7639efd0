# shopml — two commands on a fresh machine with only python3:
#   make demo   set up .venv and run the end-to-end demo
#   make test   set up .venv, lint, and run the CPU test suite (Triton kernels under the interpreter)
#   make serve  serve the demo's work directory: http://127.0.0.1:8000/ (PORT=8001 to change)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= demo-out
PORT   ?= 8000
PYTEST_ARGS ?=
# large CPU tensors on transparent huge pages, as the shopml command sets it (src/shopml/cli.py)
export THP_MEM_ALLOC_ENABLE ?= 1

.PHONY: demo serve test test-gpu bench lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/shopml demo --out $(OUT)

serve: $(STAMP)
	@test -d $(OUT)/world || { echo "no $(OUT)/world: run 'make demo' first"; exit 2; }
	$(BIN)/shopml serve --workdir $(OUT) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# TRITON_INTERPRET must be set before Python starts: Triton reads it at import.
test: lint
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -m "not gpu" -q $(PYTEST_ARGS)

# On the GPU machine (torch and triton already installed there): the GPU-marked tests.
test-gpu:
	PYTHONPATH=src $(PYTHON) -m pytest -m gpu -q $(PYTEST_ARGS)

bench:
	PYTHONPATH=src $(PYTHON) benchmarks/bench_jagged_ops.py
	PYTHONPATH=src $(PYTHON) benchmarks/bench_attention.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-out
