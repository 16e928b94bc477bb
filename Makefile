# cnnzip: `make demo` and `make test` are the two commands a new user needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FMNIST_DIR := /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed

.PHONY: install data demo test quick lint format bench clean

install: $(STAMP)

# Pinned dependencies first (torch==2.13.0, the CPU build on local disk), then
# the package itself without letting pip resolve anything else.
$(STAMP): pyproject.toml requirements.txt setup.py $(wildcard csrc/*.c csrc/*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Fashion-MNIST comes from Debian's package; elsewhere set CNNZIP_DATA.
data:
	@if [ -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ] || [ -n "$$CNNZIP_DATA" ]; then \
		true; \
	elif command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; \
	else \
		echo "Fashion-MNIST not found: download the four *-ubyte.gz files from"; \
		echo "the zalandoresearch/fashion-mnist repository into a folder and set CNNZIP_DATA to it."; \
		exit 1; \
	fi

# Deep Compression end to end on LeNet-300-100 and Fashion-MNIST: train, compress
# (prune, share, fine-tune, encode) into a .cnnz file, evaluate the decoded file,
# print the stage table, time the file's model dense and with sparse products
# (about a minute on 2 cores).
demo: install data
	$(BIN)/cnnzip train lenet300 --data fashion-mnist --epochs 10 --seed 0 -o demo/lenet300
	$(BIN)/cnnzip eval demo/lenet300 --data fashion-mnist
	$(BIN)/cnnzip compress demo/lenet300 --data fashion-mnist --recipe deep-compression -o demo/lenet300.cnnz
	$(BIN)/cnnzip eval demo/lenet300.cnnz --data fashion-mnist
	$(BIN)/cnnzip inspect demo/lenet300.cnnz
	$(BIN)/cnnzip bench sparse demo/lenet300.cnnz --batch 1 --batch 64
	$(BIN)/cnnzip bench compressed demo/lenet300.cnnz --batch 1

test: install data
	$(BIN)/python -m pytest -q

# While editing: everything but the tests marked slow (@pytest.mark.slow, over ~2 s each).
quick: install data
	$(BIN)/python -m pytest -q -m "not slow"

# No cache: a cached result can hide an import-order error after a module moved.
lint: install
	$(BIN)/ruff check --no-cache src tests benchmarks
	$(BIN)/ruff format --no-cache --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info runs demo
