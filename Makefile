# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: demo demo-reddit test test-slow lint types bench clean env

env: $(STAMP)

# torch first, from the local CPU wheel; then the pinned lock; then the package itself.
$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

DEMO_DAY ?= 2013-07-01

# The full run, then one incremental day on top of it: the synthetic world's next day (new pages, their pins
# and links, more pins on old pages) is written as input tables and applied with `linksage update`.
demo: $(STAMP)
	$(VENV)/bin/linksage run --config configs/demo.toml --run-dir $(RUN_DIR)
	$(VENV)/bin/linksage synthetic-day --config configs/demo.toml --day $(DEMO_DAY) --out $(RUN_DIR)-days/$(DEMO_DAY)
	$(VENV)/bin/linksage update --config configs/demo.toml --run-dir $(RUN_DIR) --input $(RUN_DIR)-days/$(DEMO_DAY) --day $(DEMO_DAY)
	$(VENV)/bin/linksage store history --run-dir $(RUN_DIR)
	@echo "report:    $(RUN_DIR)/evaluate/report.html"
	@echo "serve it:  $(VENV)/bin/linksage serve --run-dir $(RUN_DIR)   then open http://127.0.0.1:8000/browse"

demo-reddit: $(STAMP)
	@test -d ../shared/data/reddit-top-2.5m || { echo "../shared/data/reddit-top-2.5m is missing: demo-reddit needs the shared data beside the repository"; exit 1; }
	$(VENV)/bin/linksage run --config configs/demo-reddit.toml --run-dir runs/demo-reddit
	@echo "report:    runs/demo-reddit/evaluate/report.html"
	@echo "serve it:  $(VENV)/bin/linksage serve --run-dir runs/demo-reddit   then open http://127.0.0.1:8000/browse"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

types: $(STAMP)
	$(VENV)/bin/mypy

test: lint types
	$(VENV)/bin/pytest

test-slow: $(STAMP)
	$(VENV)/bin/pytest -m slow

# every benchmark that runs on its own; the others need a run directory or an output path (see their docstrings)
BENCH_WITH_ARGS := benchmarks/_machine.py benchmarks/pack_minilm.py benchmarks/reddit_replay.py benchmarks/train_ab.py
bench: $(STAMP)
	@for b in $(filter-out $(BENCH_WITH_ARGS),$(wildcard benchmarks/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
