# Entry points. Every target sets up what it needs: a fresh clone runs `make demo` or `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
REPO   ?= model_repository

.PHONY: help setup demo test test-unit test-integration lint serve eval-hdfs eval-params eval-asgnet eval-feedback clean

help:
	@echo "make demo        train, export, start Triton, stream generated HDFS logs, print alerts"
	@echo "make test        lint + the whole test suite (starts real Triton servers)"
	@echo "make eval-hdfs   DeepLog on ../shared/data/hdfs through Triton; writes reports/hdfs_deeplog.md"
	@echo "make eval-params parameter-value model vs injected slowdowns; writes reports/deeplog_params.md"
	@echo "make eval-feedback HDFS false positives (DeepLog) and BGL wrong diagnoses (ASGNet) fed back,"
	@echo "                  retrain, before/after; reports/feedback_hdfs.md, feedback_asgnet_bgl.md"
	@echo "make eval-asgnet ASGNet + ablation on HDFS sessions and BGL windows; writes reports/asgnet.md"
	@echo "make serve       serve $(REPO) on 127.0.0.1 (ports printed) until Ctrl-C"

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing pinned dependencies (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]" > $(VENV)/pip.log 2>&1 \
		|| { grep -v "is ignored: it is neither" $(VENV)/pip.log | tail -30; exit 1; }
	$(PY) -c "import torch, onnxruntime, tritonclient.grpc, pytriton"
	touch $@

setup: $(STAMP)

demo: setup
	$(PY) -m client demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest

test-unit: setup
	$(BIN)/pytest tests/unit

test-integration: setup
	$(BIN)/pytest tests/integration

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

serve: setup
	$(PY) -m server_config serve --repository $(REPO)

eval-hdfs: setup
	$(PY) -m client evaluate-hdfs

eval-params: setup
	$(PY) -m client evaluate-params

eval-asgnet: setup
	$(PY) -m client evaluate-asgnet

eval-feedback: setup
	$(PY) -m client evaluate-feedback
	$(PY) -m client evaluate-asgnet-feedback

clean:
	rm -rf build .pytest_cache .ruff_cache
	find $(REPO) -mindepth 2 -maxdepth 2 -type d -regex '.*/[0-9]+' -exec rm -rf {} +
