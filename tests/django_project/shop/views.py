"""Views that enqueue Django tasks and read their results through Django's API."""

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

try:
    from django.tasks import TaskResultStatus
    from django.tasks.exceptions import TaskResultDoesNotExist
except ImportError:  # Django before 6: the django-tasks backport
    from django_tasks import TaskResultStatus
    from django_tasks.exceptions import TaskResultDoesNotExist

from .models import Order
from .tasks import TASKS, add, fulfil


def create_order(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        order = Order.objects.create(item=request.GET["item"])
        result = fulfil.enqueue(order.id)  # sent when the transaction commits
    return JsonResponse({"order": order.id, "result": result.id, "status": result.status})


class Refused(Exception):
    pass


def create_order_then_fail(request: HttpRequest) -> JsonResponse:
    try:
        with transaction.atomic():
            order = Order.objects.create(item=request.GET["item"])
            result = fulfil.enqueue(order.id)
            raise Refused
    except Refused:
        return JsonResponse({"result": result.id}, status=409)


def order(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"status": Order.objects.get(pk=pk).status})


async def add_async(request: HttpRequest) -> JsonResponse:
    result = await add.aenqueue(int(request.GET["a"]), int(request.GET["b"]))
    return JsonResponse({"result": result.id})


def enqueue(request: HttpRequest, name: str) -> JsonResponse:
    task = TASKS[name]
    options: dict[str, Any] = {}
    if "priority" in request.GET:
        options["priority"] = int(request.GET["priority"])
    if "queue" in request.GET:
        options["queue_name"] = request.GET["queue"]
    if "after" in request.GET:
        options["run_after"] = timezone.now() + timedelta(seconds=float(request.GET["after"]))
    args = request.GET.getlist("arg")
    result = task.using(**options).enqueue(*args)
    return JsonResponse({"result": result.id})


def result(request: HttpRequest, name: str, result_id: str) -> JsonResponse:
    task = TASKS[name]
    try:
        found = task.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"status": "missing"}, status=404)
    body: dict[str, Any] = {
        "status": found.status,
        "attempts": found.attempts,
        "args": found.args,
        "finished": found.is_finished,
    }
    if found.status == TaskResultStatus.SUCCESSFUL:
        body["return_value"] = found.return_value
    if found.errors:
        body["error"] = found.errors[0].exception_class_path
    return JsonResponse(body)
