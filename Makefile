# The two commands a new user runs: `make run` and `make test`.
# Both create .venv and install the pinned project on first use (re-run when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test serve bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: set up, then run the node on the embedded SQLite default (gateway, FHIR server, simulated ICU, dashboard)
run: $(STAMP)
	$(BIN)/vitalgate demo

## serve: the node alone, no simulated beds
serve: $(STAMP)
	$(BIN)/vitalgate serve

## test: set up, then run the whole suite (PostgreSQL-backed tests skip with a reason unless VITALGATE_REQUIRE_SERVICES=1)
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy fhir_server gateway mappers inference

clean:
	rm -rf $(VENV) var .pytest_cache
