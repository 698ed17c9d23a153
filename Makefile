# tradeloop — `make demo` runs the main job on embedded defaults, `make test` runs the tests.
# Every target bootstraps .venv from the pinned requirements when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
DEMO_HOME ?= .tradeloop/demo$(if $(filter 1 true yes,$(DEMO_FAST)),-fast)
TL := $(VENV)/bin/tradeloop --home $(DEMO_HOME)
PYTEST_ARGS ?=

.PHONY: setup test lint format demo bench clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The whole loop (tradeloop demo): import → features → Feast → train → serve → stream → monitor →
# retrain → report. Finished stages are skipped on a re-run; DEMO_FAST=1 is the reduced mode CI runs.
demo: $(STAMP)
	$(TL) demo

bench: $(STAMP)
	$(PY) bench/features.py
	$(PY) bench/online.py
	$(PY) bench/train.py
	$(PY) bench/drift.py
	$(PY) bench/predict_core.py
	$(PY) bench/serve.py
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) .tradeloop .pytest_cache .ruff_cache

# Kubernetes packaging: helm lint + every values profile (Helm 4 and 3), schemas, CRD fields,
# security scan, hadolint, k8s/ in sync with the chart. helm/kubectl: scripts/get_helm.py.
.PHONY: chart-check
chart-check: $(STAMP)
	$(PY) scripts/render_k8s.py --check
	$(VENV)/bin/pytest tests/k8s $(PYTEST_ARGS)
