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

.PHONY: setup data train test test-all test-slow lint study study-extended study-extended-search study-extended-report audit study-report study-quick evaluate report bench tb-screenshots clean

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

# The margin-loss study (docs/study.md): 7 (loss, m) configurations x seeds 0,1,2 in one Hydra
# sweep into experiments/study/runs/; rerunning it continues the study. Two jobs side by side with
# one thread each (hydra/launcher=local_parallel; 1.2-1.6x one 2-thread job on a 2-core CPU,
# experiments/bench/ run P1); more jobs with STUDY_JOBS=7 on a big machine or GPU. study-quick is the
# same grid shrunk for a 2-core CPU (a smoke test, not results). Extra overrides go in ARGS, e.g.
# make study ARGS="seed=0,1,2,3,4".
STUDY_JOBS ?= 2
study: data
	$(PY) -m src.train -m experiment=study hydra/launcher=local_parallel hydra.launcher.n_jobs=$(STUDY_JOBS) $(ARGS)

# The reference study's own protocol reproduced (AUDIT ONLY, docs/reference_protocol.md): 3
# configurations x seeds 0,1,2 into experiments/reference_audit/runs/, continued by rerunning; then
# study-report writes experiments/study/report.md with the gap table from both folders.
audit: data
	$(PY) -m src.train -m experiment=reference_audit hydra/launcher=local_parallel hydra.launcher.n_jobs=$(STUDY_JOBS) $(ARGS)

# The margin family's descendants (conf/experiment/study_extended.yaml) into
# experiments/study_extended/runs/, continued by rerunning; its report reads the study's runs too.
study-extended: data
	$(PY) -m src.train -m experiment=study_extended hydra/launcher=local_parallel hydra.launcher.n_jobs=$(STUDY_JOBS) $(ARGS)

# The validation-only search for heads whose paper values fail here (conf/experiment/study_extended_search.yaml).
study-extended-search: data
	$(PY) -m src.train -m experiment=study_extended_search hydra/launcher=local_parallel hydra.launcher.n_jobs=$(STUDY_JOBS) $(ARGS)

study-extended-report: setup
	$(PY) -m src.report experiments/study/runs experiments/study_extended/runs experiments/study_extended/search --out experiments/study_extended

study-report: setup
	$(PY) -m src.report experiments/study/runs experiments/reference_audit/runs --out experiments/study

study-quick: data
	$(PY) -m src.train -m experiment=study_quick $(ARGS)

# Re-test finished runs from their best checkpoints and re-run every analysis, without training
# (writes evaluation.json beside each run; the report prefers it). RUNS: run or sweep folders or
# checkpoints; ARGS: config overrides, e.g. make evaluate RUNS=outputs/multiruns/<sweep> ARGS=trainer.accelerator=cpu
evaluate: setup
	$(PY) -m src.evaluate $(RUNS) $(ARGS)

# The report over finished runs (never trains): make report RUNS="outputs/multiruns/<sweep> ..." REPORT_DIR=experiments/study
RUNS ?= outputs/multiruns
REPORT_DIR ?= outputs/reports/latest
report: setup
	$(PY) -m src.report $(RUNS) --out $(REPORT_DIR)

# Framework (Lightning) vs a plain PyTorch loop on the same model and batches (experiments/bench/,
# docs/performance.md). Needs the dataset (make data). E.g. make bench ARGS="--device cuda --batch-size 512"
bench: data
	$(PY) -m src.bench $(ARGS)

# Headless-Chromium screenshots of TensorBoard's Time Series, Images, HParams and Projector tabs
# over a finished sweep, for a person to look at before a release (needs: apt-get install chromium).
# make tb-screenshots LOGDIR=outputs/multiruns/<sweep> SHOTS=docs/img ARGS=--palette  (default: newest sweep)
LOGDIR ?= $(patsubst %/,%,$(lastword $(sort $(wildcard outputs/multiruns/*/))))
SHOTS ?= outputs/screenshots
tb-screenshots: setup
	$(if $(strip $(LOGDIR)),,$(error no LOGDIR given and no sweep folder in $(CURDIR)/outputs/multiruns/; name one: make tb-screenshots LOGDIR=<run or sweep folder>))
	$(PY) -m src.tb.screenshots $(LOGDIR) --out $(SHOTS) $(ARGS)

# make test: the suite a maintainer runs often (a few minutes on a 2-core machine), on every core
# (pytest-xdist; TEST_JOBS=1 runs it in one process). It leaves out the long end-to-end checks marked
# slow (fault injection loops, real DDP processes, sweeps and servers, cluster runs); make test-all
# (and .ci/run) runs make test and then the slow group (make test-slow), in one process.
TEST_JOBS ?= auto
test: setup
	$(PY) -m pytest -m "not slow" $(if $(filter 1,$(TEST_JOBS)),,-n $(TEST_JOBS)) $(PYTEST_ARGS)
	@echo "make test left out the end-to-end checks marked slow (fault injection, real processes and servers, cluster runs): make test-all runs them too"

test-all: test test-slow

# The slow group alone, in one process (its tests start processes, servers and cluster jobs of their own).
test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf outputs/runs outputs/multiruns .pytest_cache
