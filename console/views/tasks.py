from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR
from console.core.errors import ServiceError
from console.core.models import Task
from console.core.registry import registry
from console.core.tasks.control import request_cancel, rerun
from console.core.tasks.entities import entity_gone, link_entities
from console.core.tasks.kinds import task_label
from console.core.views import actor, paginate, query_without, refuse, role_required

from ..filtersets import TaskFilterSet

LIVE = [Task.Status.QUEUED, Task.Status.RUNNING]


@role_required()
def task_list(request):
    """Running tasks first, then recent ones; htmx refreshes the table once a second while any runs."""
    filterset = TaskFilterSet(request.GET, queryset=Task.objects.filter(parent__isnull=True)
                              .select_related("created_by"))
    queryset = filterset.qs if filterset.is_valid() else Task.objects.none()
    running = link_entities(queryset.filter(status__in=LIVE)[:50])
    page = paginate(request, queryset.exclude(status__in=LIVE))
    page.object_list = link_entities(page.object_list)
    template = "console/partials/task_tables.html" if request.htmx else "console/task_list.html"
    return render(request, template, {"filterset": filterset, "running": running, "page": page,
                                      "query": query_without(request, "page"), "task_kinds": kind_choices()})


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) of every labelled task kind, by label, for the list's Kind filter."""
    return sorted(((kind, task_label(Task(kind=kind))) for kind in registry.task_labels), key=lambda item: item[1])


@role_required()
def task_detail(request, uuid):
    task = get_object_or_404(Task.objects.select_related("created_by", "parent"), uuid=uuid)
    link_entities([task])
    children = Paginator(task.children.order_by("id"), 100).get_page(request.GET.get("page"))
    children.object_list = link_entities(children.object_list)
    template = "console/partials/task_panel.html" if request.htmx else "console/task_detail.html"
    return render(request, template, {"task": task, "children": children, "gone": entity_gone(task),
                                      "counts": _child_counts(task) if children.paginator.count else None})


@role_required()
def task_children(request, uuid):
    task = get_object_or_404(Task, uuid=uuid)
    return render(request, "console/partials/task_children.html",
                  {"task": task, "children": link_entities(task.children.order_by("id")[:200])})


@role_required()
def running_indicator(request):
    count = Task.objects.filter(status__in=LIVE, parent__isnull=True).count()
    return render(request, "console/partials/running_indicator.html", {"running_tasks": count})


@require_POST
@role_required(OPERATOR)
def task_rerun(request, uuid):
    task = get_object_or_404(Task, uuid=uuid)
    try:
        rerun(actor(request), task)
    except ServiceError as error:
        return refuse(request, error, reverse("task-detail", args=[uuid]))
    return redirect(reverse("task-detail", args=[uuid]))


@require_POST
@role_required(OPERATOR)
def task_cancel(request, uuid):
    """The task page's Cancel: what has not started is cancelled, what runs finishes, what is made is kept."""
    task = get_object_or_404(Task, uuid=uuid)
    try:
        task = request_cancel(actor(request), task)
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Cancelled what had not started: {task.message}")
    return redirect(reverse("task-detail", args=[uuid]))


def _child_counts(task: Task) -> dict:
    return dict(task.children.values_list("status").annotate(n=Count("id")))
