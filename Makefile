# tradeloop — `make demo` runs the main job on embedded defaults, `make test` runs the tests.
# Every target bootstraps .venv from the pinned requirements when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
DEMO_HOME ?= .tradeloop/demo
TL := $(VENV)/bin/tradeloop --home $(DEMO_HOME)
BT_DATA = $(shell $(PY) -c 'import backtesting, pathlib; print(pathlib.Path(backtesting.__file__).parent / "test")')
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

demo: $(STAMP)
	$(TL) data import $(BT_DATA)/GOOG.csv --symbol GOOG
	$(TL) data import $(BT_DATA)/EURUSD.csv --symbol EURUSD
	$(TL) data resample --to 4h --from 1h
	$(TL) data list
	$(TL) features build
	$(TL) features verify
	$(TL) features apply
	$(TL) features materialize --incremental
	$(TL) features get EURUSD 1h
	$(TL) train --preset fast --timeframes 1h,4h --promote
	@$(TL) models show champion >/dev/null 2>&1 || $(TL) models promote challenger \
	  --reason "demo: the first model did not earn promotion; served by hand so later stages have a champion"
	$(TL) models list
	bash scripts/demo_serve.sh $(DEMO_HOME)
	GITHUB_REPOSITORY=$${GITHUB_REPOSITORY:-example/tradeloop} $(TL) monitor check --dry-run --consecutive 1 \
	  || test $$? -eq 10

bench: $(STAMP)
	$(PY) bench/features.py
	$(PY) bench/online.py
	$(PY) bench/train.py
	$(PY) bench/drift.py
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) .tradeloop .pytest_cache .ruff_cache

# Kubernetes packaging: helm lint + every values profile (Helm 4 and 3), schemas, CRD fields,
# security scan, hadolint, k8s/ in sync with the chart. helm/kubectl: scripts/get_helm.py.
.PHONY: chart-check
chart-check: $(STAMP)
	$(PY) scripts/render_k8s.py --check
	$(VENV)/bin/pytest tests/k8s $(PYTEST_ARGS)
