"""The shop's tasks, declared with Django's own ``@task``."""

from typing import Any

from django.db import connection

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django before 6: the django-tasks backport
    from django_tasks import TaskContext, task

from .models import Order


@task(enqueue_on_commit=True)
def fulfil(order_id: int) -> dict[str, Any]:
    order = Order.objects.get(pk=order_id)  # enqueued on commit: the row is there
    order.status = "fulfilled"
    order.save()
    return {"order": order_id, "item": order.item}


@task
def out_of_stock(item: str) -> None:
    raise LookupError(f"no {item} left")


@task(takes_context=True)
def describe(context: TaskContext, label: str) -> dict[str, Any]:
    return {"label": label, "id": context.task_result.id, "attempt": context.attempt}


@task
def connection_left_open() -> bool:
    """Whether this worker thread still held a connection from its previous job."""
    was_open = connection.connection is not None
    Order.objects.count()  # opens one, which the worker must close after the job
    return was_open


@task
async def add(a: int, b: int) -> int:
    return a + b


TASKS = {task.name: task for task in (fulfil, out_of_stock, describe, connection_left_open, add)}
