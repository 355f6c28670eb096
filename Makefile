# The README's two commands. Each builds its own virtual environment from
# nothing, with only Python 3.10+ on the machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check docs bench clean dist test-django test-oldest test-newest

$(BIN)/offload: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/offload
	$(BIN)/offload demo

check: $(BIN)/offload
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/ruff format --check src tests benchmarks examples docs
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

# The sdist and the wheel, in dist/, checked as the package index would
# (twine check: metadata, and the README rendered as the project page).
$(BIN)/twine: pyproject.toml $(BIN)/offload
	$(BIN)/python -m pip install --quiet -e ".[dev,release]"  # the release extra
	touch $@

dist: $(BIN)/twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

# The Django backend's tests (tests/django_project): Django 6 needs Python 3.12+,
# so they run in a venv of their own on this machine's pyenv 3.12.
DJANGO_VENV ?= .venv-django
DJANGO_PYTHON ?= env PYENV_VERSION=3.12.1 python3.12

$(DJANGO_VENV)/bin/offload: pyproject.toml
	$(DJANGO_PYTHON) -m venv $(DJANGO_VENV)
	$(DJANGO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DJANGO_VENV)/bin/python -m pip install --quiet -e ".[dev,django]"
	touch $@

test-django: $(DJANGO_VENV)/bin/offload
	$(DJANGO_VENV)/bin/pytest tests/django_project

# The oldest Python offload supports with the oldest broker clients pyproject.toml
# allows (.ci/oldest.txt), and the newest Python with the newest ones: unit and
# integration tests and the Django project (the backport on 3.10, Django 6 on 3.13),
# in venvs of their own (CI runs both at once: make -j2 -O).
COMPAT_TESTS ?= tests/unit tests/integration tests/django_project
OLDEST_PYTHON ?= env PYENV_VERSION=3.10.13 python3.10
NEWEST_PYTHON ?= env PYENV_VERSION=3.13.0 python3.13
VERSIONS := import sys, redis, hiredis, psycopg; print("python", sys.version.split()[0], \
	"redis", redis.__version__, "hiredis", hiredis.__version__, "psycopg", psycopg.__version__)

.venv-oldest/bin/offload: pyproject.toml .ci/oldest.txt
	$(OLDEST_PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/python -m pip install --quiet --upgrade pip
	.venv-oldest/bin/python -m pip install --quiet -c .ci/oldest.txt -e ".[dev]"
	touch $@

.venv-newest/bin/offload: pyproject.toml
	$(NEWEST_PYTHON) -m venv .venv-newest
	.venv-newest/bin/python -m pip install --quiet --upgrade pip
	.venv-newest/bin/python -m pip install --quiet --upgrade -e ".[dev]"
	touch $@

test-oldest test-newest: test-%: .venv-%/bin/offload
	.venv-$*/bin/python -c '$(VERSIONS)'
	.venv-$*/bin/pytest -q -p no:cacheprovider $(COMPAT_TESTS)

clean:
	rm -rf $(VENV) $(DJANGO_VENV) .venv-oldest .venv-newest build dist site .mypy_cache \
		.pytest_cache .ruff_cache
