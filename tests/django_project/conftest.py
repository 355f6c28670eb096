"""Django 6's tasks framework needs Python 3.12+: elsewhere these tests do not collect.

They run in a Python 3.12 virtual environment of their own: ``make
test-django`` (CI runs it after ``make test``).
"""

import importlib.util


def _has_django_tasks() -> bool:
    try:
        return importlib.util.find_spec("django.tasks") is not None
    except ImportError:  # no Django at all
        return False


collect_ignore_glob = [] if _has_django_tasks() else ["*"]
