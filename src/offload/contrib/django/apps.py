"""The Django app: add ``"offload.contrib.django"`` to ``INSTALLED_APPS`` for its command."""

from __future__ import annotations

from django.apps import AppConfig


class OffloadConfig(AppConfig):  # type: ignore[misc]  # Django's class, untyped
    """Makes ``python manage.py offload_worker`` available."""

    name = "offload.contrib.django"
    label = "offload"
    verbose_name = "offload"
