"""Creating tasks and handing them to the broker: a task row is written with the intent it carries, in the
request's transaction, and sent once that commits; a task whose message the broker never took is sent again."""

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

from celery import current_app
from django.db import transaction
from django.utils import timezone

from ..actors import Actor
from ..models import Task

log = logging.getLogger(__name__)
Status = Task.Status
BATCH_SIZE = 10  # tasks of one queue per message: a bulk's children reach a worker ten at a time
UNSENT_GRACE_SECONDS = 30  # a task created this long ago that never reached the broker is sent again
_sending_together = threading.local()


def create_task(actor: Actor, kind: str, entity=None, *, queue: str = "default", parent: Task | None = None,
                params: dict | None = None, enqueue: bool = True) -> Task:
    """Write the task row and, once the surrounding transaction commits, hand it to a worker."""
    task = Task.objects.create(**_row(actor, kind, entity, parent, params), queue=queue)
    if enqueue:
        together = getattr(_sending_together, "task_pks", None)
        if together is not None:
            together.append(task.pk)
        else:
            transaction.on_commit(lambda: send(task))
    return task


def create_tasks(actor: Actor, kind: str, entries: list[tuple[object, str, dict]], *,
                 parent: Task | None = None) -> list[Task]:
    """Tasks of one kind, one per (entity, queue, params), written in one statement and sent as
    `create_task` sends them (together, inside `sending_together`)."""
    tasks = Task.objects.bulk_create([Task(**_row(actor, kind, entity, parent, params), queue=queue)
                                      for entity, queue, params in entries], batch_size=500)
    together = getattr(_sending_together, "task_pks", None)
    if together is not None:
        together.extend(task.pk for task in tasks)
    else:
        transaction.on_commit(lambda: send_all(tasks))
    return tasks


def _row(actor: Actor, kind: str, entity, parent: Task | None, params: dict | None) -> dict:
    return {"kind": kind, "parent": parent, "params": params or {}, "created_by": actor.user, "attempts": 1,
            "entity_type": type(entity).__name__.lower() if entity is not None else "",
            "entity_uuid": getattr(entity, "uuid", None), "entity_name": str(getattr(entity, "name", ""))[:80]}


@contextlib.contextmanager
def sending_together(deliver: Callable[[list[Task]], None] | None = None) -> Iterator[None]:
    """Inside a transaction: the tasks created within are sent once it commits, all in one go, their Celery
    ids written in one statement (a bulk of a thousand children would otherwise write a thousand rows one by
    one, each fighting the worker for SQLite's write lock). Those whose savepoint rolled back are not sent.
    `deliver=run_here` runs them in this process instead, where no worker runs yet (the demo seed)."""
    task_pks: list[int] = []
    _sending_together.task_pks = task_pks
    try:
        yield
    finally:
        _sending_together.task_pks = None
    transaction.on_commit(lambda: (deliver or send_all)(
        list(Task.objects.filter(pk__in=task_pks, status=Status.QUEUED).order_by("id"))))


def end_at_once(actor: Actor, kind: str, entity, parent: Task | None, status: str, message: str,
                params: dict | None = None) -> Task:
    """A task written ended: one that needs no work (already done), cannot run (refused), or whose quick work
    was done within the caller's own transaction, which then holds the task's outcome and its effect together."""
    now = timezone.now()
    succeeded = status == Status.SUCCEEDED
    return Task.objects.create(**_row(actor, kind, entity, parent, params), status=status, started_at=now,
                               finished_at=now, percent=100 if succeeded else 0,
                               message=message[:255] if succeeded else "", error="" if succeeded else message)


def send(task: Task) -> None:
    send_all([task])


def send_all(tasks) -> None:
    """Hand the tasks to the broker and note their Celery ids: tasks of one queue go in batches of
    BATCH_SIZE, one message each (`facet.task.run_batch`), a lone task in its own (`facet.task.run`). A task
    the broker did not take stays queued without a Celery id, and the reaper sends it again; the request that
    asked for it still succeeds."""
    by_queue: dict[str, list[Task]] = {}
    for task in tasks:
        by_queue.setdefault(task.queue, []).append(task)
    sent = []
    for queue, queued in by_queue.items():
        for start in range(0, len(queued), BATCH_SIZE):
            batch = queued[start:start + BATCH_SIZE]
            celery_id = str(uuid.uuid4())
            try:
                if len(batch) == 1:
                    current_app.send_task("facet.task.run", args=[str(batch[0].uuid), batch[0].attempts],
                                          queue=queue, task_id=celery_id)
                else:
                    current_app.send_task("facet.task.run_batch", args=[[(str(t.uuid), t.attempts) for t in batch]],
                                          queue=queue, task_id=celery_id)
            except Exception:
                log.exception("could not send %d task(s) to the broker; the reaper will retry", len(batch))
                continue
            for task in batch:
                task.celery_id = celery_id
            sent += batch
    Task.objects.bulk_update(sent, ["celery_id"], batch_size=500)


def requeue(task: Task, reason: str, statuses, **fields) -> bool:
    """Queue the task's next attempt, if it is still in one of `statuses` at the attempt it had when read;
    False when something else changed it first (a heartbeat came back, a worker ended it)."""
    changed = Task.objects.filter(pk=task.pk, status__in=statuses, attempts=task.attempts).update(
        status=Status.QUEUED, attempts=task.attempts + 1, message=reason, error="", heartbeat_at=None,
        finished_at=None, celery_id="", **fields)
    if changed:
        task.refresh_from_db()
        transaction.on_commit(lambda: send(task))
    return bool(changed)


def send_unsent() -> int:
    """Send again the queued tasks that never reached the broker (it refused them); answers how many."""
    unsent = list(Task.objects.filter(status=Status.QUEUED, celery_id="", children__isnull=True,
                                      created_at__lt=timezone.now() - timedelta(seconds=UNSENT_GRACE_SECONDS)))
    send_all(unsent)
    return len(unsent)
