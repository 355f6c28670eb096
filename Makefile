# The README's two commands. Each builds its own virtual environment from
# nothing, with only Python 3.10+ on the machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check docs bench clean

$(BIN)/offload: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/offload
	$(BIN)/offload demo

check: $(BIN)/offload
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy
	$(BIN)/lint-imports

test: check docs
	$(BIN)/pytest

# The site, into site/; --strict: a broken link, a moved snippet or a docstring
# the reference cannot read fails the build.
docs: $(BIN)/offload
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(BIN)/offload
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist site .mypy_cache .pytest_cache .ruff_cache
