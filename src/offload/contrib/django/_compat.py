"""Django's tasks framework: ``django.tasks`` (Django 6), else the ``django-tasks`` backport.

The backport (``django_tasks``, for Django 4.2 to 5.2 on Python 3.10 and 3.11)
has the same classes under another package, and one exception renamed.
"""

from __future__ import annotations

try:
    from django.tasks import task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued
except ImportError:  # Django before 6.0: the backport, if installed
    try:
        from django_tasks import task_backends
    except ImportError as error:
        raise ImportError(
            "offload.contrib.django needs Django's tasks framework: Django 6.0 or later "
            "(Python 3.12+), or the django-tasks backport for older Django: "
            f"pip install django-tasks ({error})"
        ) from None
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued

__all__ = [
    "BaseTaskBackend",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "task_backends",
    "task_enqueued",
]
