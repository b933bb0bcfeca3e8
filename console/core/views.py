"""What every console view shares: role checks, the actor of a request, and turning service errors into
messages or form errors."""

import uuid
from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from .access import has_role
from .actors import Actor
from .errors import ServiceError
from .models import Task
from .tasks.kinds import task_label

PAGE_SIZES = (25, 50, 100, 200)


def role_required(role: str | None = None) -> Callable:
    """Log-in required; with a role, users below it get 403 (the UI hides what they may not use)."""

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if role is None and not has_role(request.user, "Viewer"):
                raise PermissionDenied("Your account has no role yet; ask an administrator.")
            if role is not None and not has_role(request.user, role):
                raise PermissionDenied(f"This needs the {role} role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def actor(request) -> Actor:
    return Actor.from_request(request)


def task_started(request, task: Task, next_url: str):
    """After a service accepted a change: say so, with a link to its task, and go back."""
    about = f" {task.entity_name}" if task.entity_uuid else ""  # a bulk task's label says it all
    messages.success(request, f"Task started: {task_label(task)}{about}", extra_tags=f"task:{task.uuid}")
    return redirect(next_url)


def confirm_then_start(request, page: dict, start: Callable[[], Task], back: str, done: str | None = None):
    """A change that asks first: on GET its confirmation page (`console/confirm.html`: `page` gives the title,
    text, button, the action to post to and any hidden fields); on the confirming POST, `start()` asks for the
    task, refused back to `back` or started and on to `done` (`back` unless given)."""
    if request.method != "POST":
        return render(request, "console/confirm.html", {**page, "back": back})
    try:
        task = start()
    except ServiceError as error:
        return refuse(request, error, back)
    return task_started(request, task, done or back)


# How messages name a service's fields when the page gives no label of its own: people read "Size", not
# "size_bytes" (the API's errors keep the field names).
FIELD_LABELS = {"size_bytes": "Size", "memory_bytes": "Memory", "vcpus": "vCPUs", "uuids": "Selection",
                "vm": "VM", "vm_id": "VM", "slot": "CD-ROM slot", "container": "Storage container",
                "storage_container": "Storage container", "ip": "IP address", "mac": "MAC address",
                "docker_host": "Docker host", "index": "Disk",
                "high_availability": "High availability"}


def field_label(field: str) -> str:
    return FIELD_LABELS.get(field) or field.replace("_", " ").capitalize()


def refuse(request, error: ServiceError, next_url: str, labels: dict[str, str] | None = None):
    """Say why a service refused, each problem under the label the page shows for its field (`labels`
    maps the service's field names to them; else `field_label`), and go back."""
    for field, problems in error.errors.items():
        label = "" if field == "detail" else f"{(labels or {}).get(field) or field_label(field)}: "
        for problem in problems:
            messages.error(request, f"{label}{problem}")
    return redirect(next_url)


def form_refused(request, form) -> None:
    """A form's errors as messages, each under its field's label (for forms drawn without error slots)."""
    for field, problems in form.errors.items():
        label = "" if field == "__all__" else f"{form.fields[field].label or field_label(field)}: "
        for problem in problems:
            messages.error(request, f"{label}{problem}")


def paginate(request, queryset, default: int = 50):
    """A page of the queryset; the page size is remembered in the session."""
    size = request.GET.get("page_size") or request.session.get("page_size") or default
    try:
        size = int(size)
    except ValueError:
        size = default
    size = size if size in PAGE_SIZES else default
    if request.session.get("page_size") != size:
        request.session["page_size"] = size
    return Paginator(queryset, size).get_page(request.GET.get("page"))


def as_uuid(value: str | None) -> uuid.UUID | None:
    """A form value as a UUID, or None when it is not one (so a lookup finds nothing instead of failing)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def query_without(request, *keys: str) -> str:
    """The current query string minus some keys, to build sort and page links."""
    query = request.GET.copy()
    for key in keys:
        query.pop(key, None)
    return query.urlencode()
