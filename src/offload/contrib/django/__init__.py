"""offload for Django: a backend of Django's tasks framework, and a worker command.

.. code-block:: python

    # settings.py
    INSTALLED_APPS = [..., "offload.contrib.django"]      # for `manage.py offload_worker`
    TASKS = {
        "default": {
            "BACKEND": "offload.contrib.django.OffloadBackend",
            "OPTIONS": {"url": "redis://127.0.0.1:6379/0"},
        }
    }

Tasks are declared with Django's own ``@task`` (``django.tasks``, Django 6)
and run by ``python manage.py offload_worker``.
"""

from __future__ import annotations

from .backend import CloseDatabaseConnections, OffloadBackend, OffloadTask

__all__ = ["CloseDatabaseConnections", "OffloadBackend", "OffloadTask"]
