"""``python manage.py offload_worker``: an offload worker with Django set up."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules

from offload._serving import serve
from offload.contrib.django._compat import task_backends
from offload.contrib.django.backend import OffloadBackend


class Command(BaseCommand):  # type: ignore[misc]  # Django's class, untyped
    help = (
        "Run the tasks of a TASKS backend that is offload.contrib.django.OffloadBackend. "
        "Imports each installed app's tasks module first. SIGTERM or Ctrl-C stops "
        "claiming and gives running tasks --grace seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default="default", help="The TASKS alias (default).")
        parser.add_argument(
            "-q", "--queues", default=None, help="Comma-separated (default: the backend's QUEUES)."
        )
        parser.add_argument("-c", "--concurrency", type=int, default=None, help="Threads.")
        parser.add_argument(
            "--grace", type=float, default=30.0, help="Seconds to finish running tasks (30)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        own = logging.root.manager.loggerDict.get("offload")  # set up by LOGGING, or not
        if not logging.root.handlers and not getattr(own, "handlers", None):
            # Django's LOGGING left offload's lines (worker started, stopped) unseen.
            logging.basicConfig(
                level=logging.INFO,
                format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
            )
        alias = options["backend"]
        backend = task_backends[alias]
        if not isinstance(backend, OffloadBackend):
            raise CommandError(
                f'TASKS["{alias}"] is {type(backend).__name__}, not '
                "offload.contrib.django.OffloadBackend: there is nothing for offload to run"
            )
        # The declared tasks: each app's tasks module, as Django's admin finds admin.py.
        autodiscover_modules("tasks")
        given = options["queues"]
        queues = (
            [name.strip() for name in given.split(",") if name.strip()]
            if given
            else sorted(backend.queues)
        )
        concurrency = options["concurrency"]
        if concurrency is not None and concurrency < 1:
            raise CommandError("--concurrency takes a whole number of 1 or more")
        app = backend.app
        runner = app.worker(queues=queues or None, concurrency=concurrency)
        serve(app, runner, queues or None, "thread", options["grace"])
