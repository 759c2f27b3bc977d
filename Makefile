# Two commands for users: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MEMBERS := core testing plugins/gmail plugins/yandex plugins/mailru plugins/rambler plugins/internal_smtp \
           examples/mailfleet-gmx
PYPROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(MEMBERS)) requirements-dev.txt

.PHONY: demo test lint bench chaos clean

$(STAMP): $(PYPROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mailfleet.cli.demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check core testing plugins examples tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/send_rate.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/create_rate.py
	$(BIN)/python bench/bounce_parse.py
	$(BIN)/python bench/bounce_fetch.py
	$(BIN)/python bench/template_render.py

chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache
