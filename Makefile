# Two commands on a fresh clone (only Python needed):  make train   |   make test
# CUDA users keep pip's normal path: `make setup` installs $(TORCH) from PyPI. To pin a wheel index,
# e.g. CPU-only wheels elsewhere:  make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
DATASET ?= fashion_mnist
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup data train test lint study report bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Finds Fashion-MNIST (./data, Debian's dataset-fashion-mnist, or a verified download) and says
# what to do when it cannot. As root on Debian/Ubuntu it installs the Debian package first.
data: setup
	@if [ "$(DATASET)" = fashion_mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ] && \
	   [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || true; fi
	$(PY) -m src.data.fetch --name $(DATASET)

train: data
	$(PY) -m src.train $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf outputs/runs outputs/multiruns .pytest_cache
