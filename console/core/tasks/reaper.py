"""The reaper: what a lost worker left behind. A running task whose heartbeat went stale is requeued (or, after
its last attempt, failed where it ran); a task a lost worker took and never started, or one the broker never
took, is sent again."""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Task
from ..registry import registry
from .ending import fail
from .sending import requeue, send_unsent

log = logging.getLogger(__name__)
Status = Task.Status


def reap_stale() -> dict[str, int]:
    """Requeue (or, after the last attempt, fail) running tasks whose worker stopped beating.

    Without this a killed worker's task stays "running" until Redis redelivers its message (after
    FACET_BROKER_REDELIVER_SECONDS), and that delivery is dropped by the claim: the task is running."""
    cutoff = timezone.now() - timedelta(seconds=settings.FACET_TASK_STALE_SECONDS)
    requeued = failed = 0
    stale = Task.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff, children__isnull=True)
    for task in stale:
        with transaction.atomic():
            # Locked and read again: a heartbeat that came back since the list was read keeps the task.
            task = Task.objects.select_for_update().filter(
                pk=task.pk, status=Status.RUNNING, attempts=task.attempts, heartbeat_at__lt=cutoff).first()
            if task is None:
                continue
            if task.attempts < settings.FACET_TASK_MAX_ATTEMPTS:
                requeued += requeue(task, f"requeued: worker lost (no heartbeat for "
                                          f"{settings.FACET_TASK_STALE_SECONDS:.0f} s)", [Status.RUNNING])
            else:
                fail_where_it_ran(task, f"worker lost: no heartbeat for {settings.FACET_TASK_STALE_SECONDS:.0f} s, "
                                        f"{task.attempts} attempts made")
                failed += 1
    # Tasks a lost worker took from the broker and never started (a batch's, or one it was about to claim):
    # they beat from the moment it received them, and their message went with it.
    orphaned = Task.objects.filter(status=Status.QUEUED, heartbeat_at__lt=cutoff, children__isnull=True)
    for task in orphaned:
        with transaction.atomic():
            requeued += requeue(task, "requeued: its worker was lost before it started", [Status.QUEUED])
    requeued += send_unsent()
    return {"requeued": requeued, "failed": failed}


def fail_where_it_ran(task: Task, error: str) -> None:
    """Fail a task whose worker was lost. Its undo touches the VM's domain and files, so a task of a host's
    queue is failed by that host's worker (`facet.task.fail`); until that worker answers, its heartbeat is
    renewed here, so the reaper sends the failure again only if it is not done within the stale time. A
    host that never answers is found by the host check, which fails its tasks without undo."""
    kind = registry.task_kinds.get(task.kind)
    if task.queue == "default" or kind is None or kind.undo is None:
        fail(task, error)
        return
    Task.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now(),
                                           message=f"failing: undo sent to {task.queue}"[:255])
    args = [str(task.uuid), task.attempts, error]

    def hand_over() -> None:
        try:
            current_app.send_task("facet.task.fail", args=args, queue=task.queue)
        except Exception:
            log.exception("could not send the failure of task %s to %s; the reaper will retry", task.uuid,
                          task.queue)
    transaction.on_commit(hand_over)


def fail_here(task_uuid: str, attempt: int, error: str) -> None:
    """The worker of the task's queue fails it (with its undo), unless it ended or was requeued since."""
    task = Task.objects.filter(uuid=task_uuid, status=Status.RUNNING, attempts=attempt).first()
    if task is not None:
        fail(task, error)
