"""A small real Django project for offload's backend: settings from the environment.

``SHOP_DB`` is ``sqlite`` (``SHOP_SQLITE_PATH``) or ``postgres``
(``SHOP_POSTGRES_SCHEMA``: the tables live in a schema of the test's own);
``OFFLOAD_URL`` is the broker.
"""

import importlib.util
import os

SECRET_KEY = "offload-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "project.urls"
MIDDLEWARE: list[str] = []
INSTALLED_APPS = ["offload.contrib.django", "shop"]
if importlib.util.find_spec("django.tasks") is None:  # Django before 6: the backport
    INSTALLED_APPS.append("django_tasks")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if os.environ.get("SHOP_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("SHOP_POSTGRES_DB", "test"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "OPTIONS": {"options": f"-c search_path={os.environ['SHOP_POSTGRES_SCHEMA']}"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SHOP_SQLITE_PATH", "shop.sqlite3"),
        }
    }

TASKS = {
    "default": {
        "BACKEND": "offload.contrib.django.OffloadBackend",
        "QUEUES": ["default", "mail"],
        "OPTIONS": {"url": os.environ["OFFLOAD_URL"]},
    }
}

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"offload": {"handlers": ["console"], "level": "INFO"}},
}
