"""The Django backend's tests: with Django 6 (Python 3.12+: ``make test-django``
builds that venv; CI runs it after ``make test``), or with Django 5.2 and the
``django-tasks`` backport (Python 3.10 and 3.11: the dev extra installs them, so
``make test`` runs them). Without either, these tests do not collect.
"""

import importlib.util


def _has_django_tasks() -> bool:
    try:
        return importlib.util.find_spec("django.tasks") is not None
    except ImportError:  # no Django at all
        return False


def _has_backport() -> bool:
    return importlib.util.find_spec("django_tasks") is not None


collect_ignore_glob = [] if _has_django_tasks() or _has_backport() else ["*"]
