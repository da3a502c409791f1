# billops: `make run` serves the demo, `make test` runs the suite. `make help` lists the rest.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FLASK := BILLOPS_ENV=development $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help run test screenshots lint fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

.env:
	@printf 'BILLOPS_ENV=development\nSECRET_KEY=%s\nADMIN_KEY=bok_demo_%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" > $@
	@echo "wrote .env with a new SECRET_KEY and demo ADMIN_KEY"

run: $(VENV)/.installed .env ## Migrate the embedded SQLite database, load demo data, serve on http://localhost:8000
	$(FLASK) db upgrade
	$(FLASK) billing demo-data
	@echo
	@echo "  console: http://localhost:$(PORT)/  (sign in with the demo admin key below)"
	@echo "  API reference: http://localhost:$(PORT)/docs"
	@echo "  demo admin key: $$(sed -n 's/^ADMIN_KEY=//p' .env)"
	@echo "  try: curl -H \"X-Admin-Key: $$(sed -n 's/^ADMIN_KEY=//p' .env)\" http://localhost:$(PORT)/v1/admin/billing/subscriptions/user-alice"
	@echo
	BILLOPS_ENV=development $(BIN)/gunicorn --bind $(HOST):$(PORT) --workers 2 --threads 4 --access-logfile - wsgi:app

test: $(VENV)/.installed ## Run the whole suite (TEST_DATABASE_URL=postgresql://... for PostgreSQL)
	$(BIN)/pytest

screenshots: $(VENV)/.installed ## Refresh docs/screenshots/ by running the console's browser tests
	BILLOPS_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/browser/test_console.py

lint: $(VENV)/.installed ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(VENV)/.installed ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove the virtualenv and the embedded database
	rm -rf $(VENV) instance
