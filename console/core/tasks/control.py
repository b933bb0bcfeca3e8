"""What a user asks of a task that exists: stop it (or a bulk task's waiting children), or run a failed one again."""

from types import SimpleNamespace

from django.db import transaction
from django.utils import timezone

from .. import audit
from ..actors import Actor
from ..errors import Conflict, InvalidRequest
from ..models import Task
from ..registry import registry
from .ending import roll_up
from .entities import entity_gone
from .sending import requeue

Status = Task.Status


def request_cancel(actor: Actor, task: Task) -> Task:
    """Stop a task, or a bulk task's children, cleanly: those still waiting that never started are cancelled
    and what their requests wrote is dropped (their kind's `discard`); running ones finish; what is made is
    kept. A bulk task then reports the counts (see `roll_up`). Answers the task, up to date."""
    if task.ended:
        raise Conflict({"status": [f"the task has already ended ({task.status})"]})
    is_bulk = task.children.exists()
    with transaction.atomic():
        waiting = (task.children.all() if is_bulk else Task.objects.filter(pk=task.pk)).select_for_update()
        waiting = [t for t in waiting.filter(status=Status.QUEUED, started_at__isnull=True)
                   if (kind := registry.task_kinds.get(t.kind)) is not None and kind.discard]
        if not is_bulk and not waiting:
            raise Conflict({"status": [f"the task is {task.status} and cannot be stopped now; it finishes"
                                       if task.status == Status.RUNNING or task.started_at
                                       else f"tasks of kind {task.kind} cannot be cancelled"]})
        who = actor.user.get_username() if actor.user else "the system"
        Task.objects.filter(pk__in=[t.pk for t in waiting]).update(
            status=Status.CANCELLED, finished_at=timezone.now(), message=f"cancelled by {who}"[:255])
        for waiting_task in waiting:
            registry.task_kinds[waiting_task.kind].discard(waiting_task)
        if is_bulk:
            roll_up(task.pk)
        audit.record(actor, "task.cancel", task, entity_type="task", kind=task.kind, cancelled=len(waiting))
    task.refresh_from_db()
    return task


def rerun(actor: Actor, task: Task) -> Task:
    """Run a failed task (or a bulk task's unfinished children) again, on behalf of `actor`, who becomes its
    requester (the audit record keeps the first one); done work is skipped. Only a task still failed is
    rerun: of two reruns at once, the second finds it queued and is refused. A task whose entity is gone (a
    create that was rolled back) cannot run again: asking for it again can."""
    if entity_gone(task):
        raise Conflict(f"{task.entity_name} no longer exists (the failure undid it): ask for it again instead")
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        if locked.status != Status.FAILED:
            raise InvalidRequest({"status": [f"only a failed task can be rerun; this one is {locked.status}"]})
        first_requester = locked.created_by.username if locked.created_by else ""
        children = [child for child in locked.children.exclude(status=Status.SUCCEEDED) if not entity_gone(child)]
        attempt = locked.attempts if children else locked.attempts + 1
        who = actor.user.get_username() if actor.user else "system"
        for child in children or [locked]:
            requeue(child, f"rerun by {who}", [Status.FAILED, Status.CANCELLED], created_by=actor.user)
        if children:
            Task.objects.filter(pk=locked.pk).update(created_by=actor.user)
            roll_up(locked.pk)
        named = SimpleNamespace(uuid=locked.uuid, name=f"{locked.kind} {locked.entity_name}")
        audit.record(actor, "task.rerun", named, entity_type="task", first_requested_by=first_requester,
                     attempt=attempt, children_rerun=len(children))
    task.refresh_from_db()
    return task
