# Two commands do all the set-up on a fresh machine:
#   make demo   a grid: LSTM and GRU x serial and reverse recall x 3 seeds, trained, tested and compared
#               (configs/grids/quickstart.yaml); prints the comparison table and the plots' paths
#   make test   lint + the whole test suite
#   make results  the results book docs/results/*.md rendered from the committed results (seconds);
#               make check-results re-runs its drift check (a few minutes)
# Both create (once) and reuse the virtual environment .venv.

VENV ?= .venv
PYTHON ?= python3
# The CPU build of PyTorch for this project's own environment. A GPU user installs their CUDA
# build of torch first and then `pip install -e .` (see README).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo experiment test results check-results bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mip grid run configs/grids/quickstart.yaml --no-progress $(ARGS)

experiment: $(STAMP)
	$(VENV)/bin/mip train configs/algorithmic/lstm_serial_recall.yaml --test --no-progress $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q $(ARGS)

results: $(STAMP)
	$(VENV)/bin/mip book $(ARGS)

check-results: $(STAMP)
	$(VENV)/bin/mip book --check $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python bench/overhead.py
	$(VENV)/bin/python bench/cli_startup.py
	$(VENV)/bin/python bench/memory_splits.py
	$(VENV)/bin/python bench/grid_scaling.py
	$(VENV)/bin/python bench/algorithmic_generation.py
	$(VENV)/bin/python bench/cifar_vision.py

clean:
	rm -rf $(VENV) experiments .pytest_cache .ruff_cache
