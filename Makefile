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
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
# make serve TLS_CERT=server.pem TLS_KEY=server.key [TLS_CLIENT_CA=ca.pem] ADMIN_KEY_FILE=admin.key
SERVE_SECURITY = $(if $(TLS_CERT),--tls-cert $(TLS_CERT) --tls-key $(TLS_KEY)) \
	$(if $(TLS_CLIENT_CA),--tls-client-ca $(TLS_CLIENT_CA)) \
	$(if $(ADMIN_KEY_FILE),--admin-key-file $(ADMIN_KEY_FILE))
BENCH_STAMP := $(VENV)/.bench-installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup bench-setup bench-follow bench-scale bench-parsers demo test test-unit test-integration lint serve bench loadtest eval-hdfs eval-params eval-asgnet eval-feedback eval-new-templates eval-workflow clean

help:
	@echo "make demo        train, export, start Triton, stream generated HDFS logs, print alerts"
	@echo "make test        lint + the whole test suite (starts real Triton servers)"
	@echo "make eval-hdfs   DeepLog on ../shared/data/hdfs through Triton; writes reports/hdfs_deeplog.md"
	@echo "make eval-params parameter-value model vs injected slowdowns; writes reports/deeplog_params.md"
	@echo "make eval-feedback HDFS false positives (DeepLog) and BGL wrong diagnoses (ASGNet) fed back,"
	@echo "                  retrain, before/after; reports/feedback_hdfs.md, feedback_asgnet_bgl.md"
	@echo "make eval-workflow  task separation with ids hidden (HDFS, OpenStack), workflow edges vs"
	@echo "                 the true DFG, the demo's divergence points; writes reports/workflow.md"
	@echo "make eval-new-templates  templates new after a deployment: alerts before and after"
	@echo "                  one round of template feedback; reports/new_templates.md"
	@echo "make eval-asgnet ASGNet + ablation on HDFS sessions and BGL windows; writes reports/asgnet.md"
	@echo "make bench       perf_analyzer sweep of every model and ensemble, end to end, side by side,"
	@echo "                 parser vs Drain3; writes benchmarks/reports/ (about 10 min on 2 cores)"
	@echo "make bench-follow detect --follow on 2M lines per path: lines/s, memory, alert latency,"
	@echo "                 SIGKILL and resume, server restart; benchmarks/reports/follow.md"
	@echo "make bench-scale 2 Triton replicas + NATS + workers: a replica and a worker SIGKILLed"
	@echo "                 mid-stream, 10 version swaps under load, 1-3 workers;"
	@echo "                 benchmarks/reports/scale.md"
	@echo "make bench-parsers parser vs Drain3 on loghub's samples (GA, PA, lines/s), template"
	@echo "                 memory on 5M lines; benchmarks/reports/parsers.md"
	@echo "make loadtest    a sustained request rate against Triton for 2 min: achieved rate, errors,"
	@echo "                 latency over time, server memory; LOADTEST_ARGS=\"--rate 200 --duration 60\""
	@echo "make serve       serve $(REPO) on 127.0.0.1 until Ctrl-C; GRPC_PORT HTTP_PORT METRICS_PORT,"
	@echo "                 TLS_CERT TLS_KEY [TLS_CLIENT_CA] for gRPC over TLS, ADMIN_KEY_FILE to keep"
	@echo "                 loading/unloading models to holders of that key"

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing pinned dependencies (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[train,server,dev]" > $(VENV)/pip.log 2>&1 \
		|| { grep -v "is ignored: it is neither" $(VENV)/pip.log | tail -30; exit 1; }
	$(PY) -c "import torch, onnxruntime, tritonclient.grpc, pytriton, prometheus_client"
	touch $@

# kustomize renders the Kubernetes manifests in the tests (a pinned, hash-checked binary).
KUSTOMIZE := $(BIN)/kustomize
$(KUSTOMIZE): | $(STAMP)
	$(PY) -m server_config.fetch_tool kustomize $@

# The log bus and the metrics server the scale-out tests run for real, and Graphviz, which
# draws the workflows (`logad workflow`): Debian's packages. The services are not enabled:
# the tests and the demo start their own, on 127.0.0.1.
SYSTEM_STAMP := $(VENV)/.system-installed
$(SYSTEM_STAMP): | $(STAMP)
	@command -v nats-server >/dev/null && command -v prometheus >/dev/null \
		&& command -v dot >/dev/null || { \
		echo ">> installing Debian's nats-server, prometheus and graphviz"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			nats-server prometheus graphviz > $(VENV)/apt.log 2>&1 \
			|| { tail -20 $(VENV)/apt.log; exit 1; }; }
	nats-server --version
	dot -V
	touch $@

setup: $(STAMP) $(KUSTOMIZE) $(SYSTEM_STAMP)

# perf_analyzer ships in the tritonclient wheel (already installed) and links Debian's libb64
# and CUDA's runtime library (a PyPI wheel; no GPU needed to load it).
$(BENCH_STAMP): $(STAMP)
	@ldconfig -p | grep -q libb64.so.0d || { \
		echo ">> installing Debian's libb64-0d for perf_analyzer"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libb64-0d; }
	$(BIN)/pip install -q --disable-pip-version-check -e ".[train,server,dev,bench]" > $(VENV)/pip-bench.log 2>&1 \
		|| { grep -v "is ignored: it is neither" $(VENV)/pip-bench.log | tail -30; exit 1; }
	$(PY) -c "from benchmarks.perf_analyzer import check; check()"
	touch $@

bench-setup: $(BENCH_STAMP)

bench: bench-setup
	$(PY) -m benchmarks bench

# Our parser against Drain3 on loghub's eleven samples, and template memory on 5M lines (~3 min).
bench-parsers: bench-setup
	$(PY) -m benchmarks parsers

# The always-on client as a process of its own: 2M lines followed per path, alert latency,
# SIGKILL-and-resume and a server restart (about 25 min on 2 cores).
bench-follow: setup
	$(PY) -m benchmarks follow $(FOLLOW_ARGS)

# Scale-out: 2 replicas, NATS, workers as processes; replica and worker SIGKILLed mid-stream,
# 10 version swaps under load, 1-3 workers (about 10 min on 2 cores).
bench-scale: setup
	$(PY) -m benchmarks scale

# Against a server of its own unless LOADTEST_ARGS names one (--url 127.0.0.1:8001 --repository ..).
loadtest: setup
	$(PY) -m benchmarks loadtest $(LOADTEST_ARGS)

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
	$(PY) -m server_config serve --repository $(REPO) --grpc-port $(GRPC_PORT) \
		--http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT) $(strip $(SERVE_SECURITY))

eval-hdfs: setup
	$(PY) -m benchmarks evaluate-hdfs

eval-params: setup
	$(PY) -m benchmarks evaluate-params

eval-asgnet: setup
	$(PY) -m benchmarks evaluate-asgnet

eval-feedback: setup
	$(PY) -m benchmarks evaluate-feedback
	$(PY) -m benchmarks evaluate-asgnet-feedback

eval-new-templates: setup
	$(PY) -m benchmarks evaluate-new-templates

eval-workflow: setup
	$(PY) -m benchmarks evaluate-workflow

clean:
	rm -rf build .pytest_cache .ruff_cache
	find $(REPO) -mindepth 2 -maxdepth 2 -type d -regex '.*/[0-9]+' -exec rm -rf {} +
