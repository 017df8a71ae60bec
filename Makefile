# The same verbs everywhere: make run, make test, make lint, make bench.
# On a fresh machine with only Python 3.11 these install uv and the locked dependencies first.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup run test lint format bench

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv || \
		python3 -m pip install --quiet --break-system-packages uv
	@$(UV) sync --frozen --python 3.11 --quiet

run: setup
	$(UV) run --frozen journeygraph up

test: setup
	$(UV) run --frozen pytest

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

format: setup
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

bench: setup
	$(UV) run --frozen python -m bench
