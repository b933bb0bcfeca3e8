"""Ending a task's attempt (succeeded, failed after its undo, or from outside its run), written only while that
attempt is still the one running, and rolling a bulk task up from its children."""

import logging
import uuid

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from ..models import Task
from ..registry import registry

log = logging.getLogger(__name__)
Status = Task.Status


def still_running(task: Task) -> bool:
    """Whether this attempt of the task is still the one running (not requeued, not ended by the reaper)."""
    return Task.objects.filter(pk=task.pk, status=Status.RUNNING, attempts=task.attempts).exists()


def fail(task: Task, error: str, roll_up_parent: bool = True) -> None:
    """End this attempt as failed, undoing its written intent first; an attempt that is no longer the
    running one undoes nothing (its successor may be building on that intent)."""
    if not still_running(task):
        log.warning("task %s attempt %s is no longer running; its failure is dropped: %s",
                    task.uuid, task.attempts, error)
        return
    kind = registry.task_kinds.get(task.kind)
    if kind and kind.undo:
        try:
            kind.undo(task)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception("undoing task %s after its failure failed too; error id %s", task.uuid, error_id)
            error += f"\n(Cleaning up after the failure failed too; see the worker log, error id {error_id}.)"
    finish(task, Status.FAILED, error=error, roll_up_parent=roll_up_parent)


def finish(task: Task, status: str, message: str | None = None, error: str = "",
           roll_up_parent: bool = True) -> bool:
    """End this attempt of the task. Written only while this attempt is the running one: False, and
    nothing written, when the reaper requeued or ended it meanwhile (another worker may be running it).
    A batch rolls its tasks' parents up itself (`roll_up_parent=False`)."""
    return _end(task, (Status.RUNNING,), status, message, error, roll_up_parent)


def end_from_outside(task: Task, status: str, error: str) -> bool:
    """End a task from outside its run (its host stopped answering): written only while this attempt is
    still queued or running; False, and nothing written, when it ended or was requeued meanwhile."""
    return _end(task, (Status.QUEUED, Status.RUNNING), status, None, error)


def _end(task: Task, while_in: tuple[str, ...], status: str, message: str | None, error: str,
         roll_up_parent: bool = True) -> bool:
    fields = {"status": status, "finished_at": timezone.now(), "error": error}
    if status == Status.SUCCEEDED:
        fields["percent"] = 100
    if message is not None:
        fields["message"] = message[:255]
    if not (task.parent_id and roll_up_parent):
        return _write_end(task, while_in, fields)  # one statement (a batch's task: the batch rolls up)
    with transaction.atomic():
        if not _write_end(task, while_in, fields):
            return False
        roll_up(task.parent_id)
    return True


def _write_end(task: Task, while_in: tuple[str, ...], fields: dict) -> bool:
    if not Task.objects.filter(pk=task.pk, status__in=while_in, attempts=task.attempts).update(**fields):
        log.warning("task %s attempt %s is no longer running; its end (%s) is dropped",
                    task.uuid, task.attempts, fields["status"])
        return False
    for name, value in fields.items():
        setattr(task, name, value)
    return True


def roll_up(parent_pk: int) -> None:
    """Recompute a bulk task from its children; the parent row lock makes concurrent children queue up."""
    parent = Task.objects.select_for_update().get(pk=parent_pk)
    counts = parent.children.aggregate(
        total=Count("id"),
        ended=Count("id", filter=Q(status__in=Task.ENDED)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        cancelled=Count("id", filter=Q(status=Status.CANCELLED)),
        running=Count("id", filter=Q(status=Status.RUNNING)),
    )
    total, ended, failed, cancelled = counts["total"], counts["ended"], counts["failed"], counts["cancelled"]
    parent.percent = 100 * ended // total if total else 100
    parent.message = (f"{ended} of {total} done" + (f", {failed} failed" if failed else "")
                      + (f", {cancelled} cancelled" if cancelled else ""))
    parent.heartbeat_at = timezone.now()
    if ended == total:
        succeeded = total - failed - cancelled
        parent.status = Status.FAILED if failed else Status.CANCELLED if cancelled else Status.SUCCEEDED
        parent.error = f"{failed} of {total} failed" if failed else ""
        if cancelled:
            parent.message = f"cancelled: {succeeded} of {total} done, {cancelled} cancelled" + (
                f", {failed} failed" if failed else "")
        parent.finished_at = timezone.now()
    elif ended or counts["running"]:
        parent.status = Status.RUNNING
        parent.started_at = parent.started_at or timezone.now()
    parent.save()


def start_bulk(parent: Task) -> None:
    """After creating children (some possibly ended at once), bring the parent up to date."""
    roll_up(parent.pk)
