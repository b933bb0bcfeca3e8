"""Task lifecycle: create with the intent, enqueue on commit, run with heartbeat and progress, end,
roll up into a parent, and reap what a lost worker left behind.

A kind of task is declared once, on the function that does its work (`@task_kind("vm.clone")` on
`run_clone`), with the function that undoes written intent where a failure must (`undo_clone`). Every run
function is idempotent: a requeued task runs it again from the top and it skips what is already done."""

import contextlib
import functools
import logging
import operator
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace

from celery import current_app
from django.apps import apps
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import audit
from .actors import Actor
from .drivers import DriverError
from .errors import Conflict, InvalidRequest, ServiceError
from .models import Task
from .registry import TaskKind, registry

log = logging.getLogger(__name__)
stage_log = logging.getLogger(__name__ + ".stages")  # one line per task: the time of each stage
Status = Task.Status
UNSENT_GRACE_SECONDS = 30  # a task created this long ago that never reached the broker is sent again
_sending_together = threading.local()


class Progress:
    """Writes percent and message at most once a second (and always the last word)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        # The claim just wrote the row: a task done within a second (a bulk clone's child) writes no progress.
        self._last_write = time.monotonic()
        self.stages: dict[str, float] = {}  # seconds spent in each named stage, for the log
        self._stage: tuple[str, float] | None = None

    def __call__(self, percent: float, message: str | None = None) -> None:
        self.task.percent = max(0, min(99, int(percent)))
        if message is not None:
            self.task.message = message[:255]
        now = time.monotonic()
        if now - self._last_write >= 1.0:
            self._last_write = now
            Task.objects.filter(pk=self.task.pk).update(
                percent=self.task.percent, message=self.task.message, heartbeat_at=timezone.now())

    def stage(self, percent: float, name: str) -> None:
        """Begin a named stage of the work: its name is the task's message, its time goes to the log."""
        self.end_stage()
        self._stage = (name, time.monotonic())
        self(percent, name)

    def end_stage(self) -> None:
        if self._stage is not None:
            name, began = self._stage
            self.stages[name] = self.stages.get(name, 0.0) + time.monotonic() - began
            self._stage = None

    def part(self, start: float, end: float, message: str | None = None) -> Callable[[float], None]:
        """A callback mapping a step's own fraction [0, 1] into [start, end] percent."""
        return lambda fraction: self(start + (end - start) * fraction, message)


RunFunction = Callable[[Task, Progress], str | None]
UndoFunction = Callable[[Task], None]
BatchFunction = Callable[[list[tuple[Task, Progress]]], list[str]]


def task_kind(name: str, undo: UndoFunction | None = None, label: str | Callable[[Task], str] = "",
              discard: UndoFunction | None = None, run_batch: BatchFunction | None = None):
    """Declare the decorated function as the work of tasks of this kind (a second declaration of a kind is
    an error at start-up); `label` is how pages name such a task ("Clone VM" for "vm.clone"); `discard`
    makes its queued tasks cancellable, and `run_batch` runs a batch of them at once (see `TaskKind`)."""

    def register(run: RunFunction) -> RunFunction:
        registry.task_kinds.add(name, TaskKind(run=run, undo=undo, discard=discard, run_batch=run_batch))
        if label:
            registry.task_labels.add(name, label)
        return run

    return register


def task_label(task: Task) -> str:
    """How pages name a task: its kind's label, or the kind itself for a kind that has none."""
    label = registry.task_labels.get(task.kind) or task.kind
    return label(task) if callable(label) else label


@functools.cache
def _entity_models() -> dict[str, type]:
    """Task.entity_type (a model's class name, lower case) -> the model, for models with a uuid."""
    return {model.__name__.lower(): model for model in apps.get_models()
            if any(field.name == "uuid" for field in model._meta.fields)}


def entity_gone(task: Task) -> bool:
    """Whether the task's entity was deleted since (a create rolled back, a delete done)."""
    model = _entity_models().get(task.entity_type)
    return bool(task.entity_uuid and model and not model.objects.filter(uuid=task.entity_uuid).exists())


def link_entities(tasks) -> list[Task]:
    """Give each task `entity_url`, its entity's page, or "" when it has none or the entity is gone, so that
    no link leads to a page that no longer exists. One query per entity type."""
    tasks = list(tasks)
    wanted: dict[str, set] = {}
    for task in tasks:
        if task.entity_uuid:
            wanted.setdefault(task.entity_type, set()).add(task.entity_uuid)
    urls = {}
    for entity_type, uuids in wanted.items():
        model = _entity_models().get(entity_type)
        if model is not None and hasattr(model, "get_absolute_url"):
            urls.update((entity.uuid, entity.get_absolute_url()) for entity in model.objects.filter(uuid__in=uuids))
    for task in tasks:
        task.entity_url = urls.get(task.entity_uuid, "")
    return tasks


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


def run_here(tasks: list[Task]) -> None:
    """Run the tasks in this process, one after the other, as a worker would."""
    for task in tasks:
        execute(str(task.uuid), task.attempts)


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


BATCH_SIZE = 10  # tasks of one queue per message: a bulk's children reach a worker ten at a time


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


class Heartbeat(threading.Thread):
    """Keeps `heartbeat_at` fresh while a run function works, even inside one long driver call: of one
    running task (at its attempt), or of a batch's tasks still waiting for their turn or running. A beat the
    database refuses (locked, restarted, a dropped connection) is logged and the next one tried on a new
    connection: a heartbeat that ended for good would let the reaper hand the task to a second worker while
    this one still runs it."""

    def __init__(self, tasks: Q, name: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{name}")
        self.tasks, self.name_ = tasks, name
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.FACET_TASK_HEARTBEAT_SECONDS):
                self.beat()
        finally:
            connections.close_all()

    def beat(self) -> None:
        try:
            Task.objects.filter(self.tasks).update(heartbeat_at=timezone.now())
        except Exception:
            log.warning("heartbeat %s missed; trying again", self.name_, exc_info=True)
            connections.close_all()  # the next beat opens a fresh connection

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def _claim(task_uuid: str, attempt: int) -> Task | None:
    """Mark the task running, unless this delivery is stale (the task ended or was requeued since)."""
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(uuid=task_uuid).first()
        # Only a queued task of this attempt runs: a redelivery of a message whose task is already running
        # (the broker's visibility timeout passed) or was requeued since is dropped.
        if task is None or task.status != Status.QUEUED or task.attempts != attempt:
            return None
        now = timezone.now()
        task.status, task.heartbeat_at = Status.RUNNING, now
        task.started_at = task.started_at or now
        task.save(update_fields=["status", "heartbeat_at", "started_at"])
        return task


def received(items: list[tuple[str, int]]) -> None:
    """A worker took these tasks' message from the broker (Celery's `task_received`, in the worker's consumer,
    before a pool process claims them). The message now waits only in the broker's unacked set, which gives it
    back after the hour-long visibility timeout: a worker killed before its claim would leave the tasks queued
    that long. Their heartbeat from now on lets the reaper send them again once it is stale; the claim (or a
    batch's own heartbeat) takes over in a moment, and a live worker's late claim of a task sent again is
    dropped as a stale delivery."""
    if items:
        mine = functools.reduce(operator.or_, (Q(uuid=task_uuid, attempts=attempt) for task_uuid, attempt in items))
        Task.objects.filter(mine, status=Status.QUEUED).update(heartbeat_at=timezone.now())


def execute(task_uuid: str, attempt: int, in_batch: bool = False) -> Task | None:
    """Run one delivery of a task: what the Celery task `facet.task.run` does. (Celery's Django fixup
    closes stale database connections around each task.) In a batch, the batch beats for it and rolls its
    parent up; answers the task run, or None for a stale delivery."""
    task = _claim(task_uuid, attempt)
    if task is None:
        log.info("dropping stale delivery of task %s (attempt %s)", task_uuid, attempt)
        return None
    _run_claimed(task, in_batch)
    return task


def _run_claimed(task: Task, in_batch: bool) -> None:
    kind = registry.task_kinds[task.kind]
    heartbeat = None if in_batch else Heartbeat(Q(pk=task.pk, status=Status.RUNNING, attempts=task.attempts),
                                                str(task.pk))
    if heartbeat:
        heartbeat.start()
    progress = Progress(task)
    try:
        message = kind.run(task, progress)
    except (ServiceError, DriverError) as exc:
        fail(task, str(exc), roll_up_parent=not in_batch)
    except Exception:
        fail(task, unexpected_error(f"task {task.uuid} ({task.kind}, attempt {task.attempts})"),
             roll_up_parent=not in_batch)
    else:
        finish(task, Status.SUCCEEDED, message=message or "Done", roll_up_parent=not in_batch)
    finally:
        if heartbeat:
            heartbeat.stop()
        _log_stages(progress, f"task {task.uuid} ({task.kind})")


def _log_stages(progress: Progress, what: str) -> None:
    progress.end_stage()
    if progress.stages:
        stage_log.info("%s stages: %s", what,
                       ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in progress.stages.items()))


ROLL_UP_SECONDS = 1.0  # a batch brings its parents up to date this often, and at its end


def execute_batch(items: list[tuple[str, int]]) -> None:
    """Run a batch's tasks, as `facet.task.run_batch` does: those of a kind with a `run_batch` together (claimed
    at once), the others one after the other. From the moment the batch arrives its waiting tasks beat too: if
    this worker dies, the reaper sends the ones it never started again (their message went with the worker)
    and requeues those it was running."""
    mine = functools.reduce(operator.or_, (Q(uuid=task_uuid, attempts=attempt) for task_uuid, attempt in items))
    Task.objects.filter(mine, status=Status.QUEUED).update(heartbeat_at=timezone.now())
    heartbeat = Heartbeat(mine & Q(status__in=[Status.QUEUED, Status.RUNNING]), f"batch-{items[0][0]}")
    heartbeat.start()
    parents: set[int] = set()
    rolled_up = time.monotonic()
    try:
        together = _claim_together(mine)
        for tasks in together.values():
            _run_together(tasks)
            parents.update(task.parent_id for task in tasks if task.parent_id)
        ran = {(str(task.uuid), task.attempts) for tasks in together.values() for task in tasks}
        for task_uuid, attempt in items:
            if (task_uuid, attempt) in ran:
                continue
            task = execute(task_uuid, attempt, in_batch=True)
            if task is not None and task.parent_id:
                parents.add(task.parent_id)
            if parents and time.monotonic() - rolled_up >= ROLL_UP_SECONDS:
                _roll_up_all(parents)
                rolled_up = time.monotonic()
    finally:
        heartbeat.stop()
        _roll_up_all(parents)


def _claim_together(mine: Q) -> dict[str, list[Task]]:
    """Claim, as `_claim` claims one, a batch's queued tasks (at their attempt) whose kind runs in batches; by
    kind. A redelivered or requeued task is not among them (`execute` then drops it as stale)."""
    kinds = [name for name, kind in registry.task_kinds.items() if kind.run_batch]
    with transaction.atomic():
        tasks = list(Task.objects.select_for_update().filter(mine, status=Status.QUEUED, kind__in=kinds).order_by("id"))
        if tasks:
            now = timezone.now()
            Task.objects.filter(pk__in=[task.pk for task in tasks]).update(
                status=Status.RUNNING, heartbeat_at=now, started_at=Coalesce("started_at", Value(now)))
            for task in tasks:
                task.status, task.heartbeat_at, task.started_at = Status.RUNNING, now, task.started_at or now
    by_kind: dict[str, list[Task]] = {}
    for task in tasks:
        by_kind.setdefault(task.kind, []).append(task)
    return by_kind


def _run_together(tasks: list[Task]) -> None:
    """Run claimed tasks of one kind through its `run_batch`. Should it raise, every task runs again alone from
    the top (`run` is idempotent), which ends each with its own outcome: a failure then undoes that task only."""
    kind = registry.task_kinds[tasks[0].kind]
    progresses = [Progress(task) for task in tasks]
    try:
        messages = kind.run_batch(list(zip(tasks, progresses, strict=True)))
    except Exception:
        log.warning("a batch of %d %s tasks stopped on an error; running each alone", len(tasks), tasks[0].kind,
                    exc_info=True)
        for task in tasks:
            _run_claimed(task, in_batch=True)
        return
    for task, message in zip(tasks, messages, strict=True):
        finish(task, Status.SUCCEEDED, message=message or "Done", roll_up_parent=False)
    _log_stages(progresses[0], f"batch of {len(tasks)} tasks from {tasks[0].uuid} ({tasks[0].kind})")


def _roll_up_all(parents: set[int]) -> None:
    for parent_pk in sorted(parents):
        with transaction.atomic():
            roll_up(parent_pk)
    parents.clear()


def unexpected_error(what: str) -> str:
    """Log the exception being handled, traceback and all, under a new error id, and return the sentence
    a task shows instead: its readers (Viewers among them) see no file paths, URIs or code."""
    error_id = uuid.uuid4().hex[:12]
    log.exception("%s failed unexpectedly; error id %s", what, error_id)
    return f"The task stopped on an unexpected error; see the worker log, error id {error_id}."


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
            _requeue(child, f"rerun by {who}", [Status.FAILED, Status.CANCELLED], created_by=actor.user)
        if children:
            Task.objects.filter(pk=locked.pk).update(created_by=actor.user)
            roll_up(locked.pk)
        named = SimpleNamespace(uuid=locked.uuid, name=f"{locked.kind} {locked.entity_name}")
        audit.record(actor, "task.rerun", named, entity_type="task", first_requested_by=first_requester,
                     attempt=attempt, children_rerun=len(children))
    task.refresh_from_db()
    return task


def _requeue(task: Task, reason: str, statuses, **fields) -> bool:
    """Queue the task's next attempt, if it is still in one of `statuses` at the attempt it had when read;
    False when something else changed it first (a heartbeat came back, a worker ended it)."""
    changed = Task.objects.filter(pk=task.pk, status__in=statuses, attempts=task.attempts).update(
        status=Status.QUEUED, attempts=task.attempts + 1, message=reason, error="", heartbeat_at=None,
        finished_at=None, celery_id="", **fields)
    if changed:
        task.refresh_from_db()
        transaction.on_commit(lambda: send(task))
    return bool(changed)


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


def reap_stale() -> dict[str, int]:
    """Requeue (or, after the last attempt, fail) running tasks whose worker stopped beating.

    Without this a killed worker's task stays "running" until Redis redelivers it after the broker's
    one-hour visibility timeout; that late delivery is then dropped as stale by `_claim`."""
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
                requeued += _requeue(task, f"requeued: worker lost (no heartbeat for "
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
            requeued += _requeue(task, "requeued: its worker was lost before it started", [Status.QUEUED])
    unsent = Task.objects.filter(status=Status.QUEUED, celery_id="", children__isnull=True,
                                 created_at__lt=timezone.now() - timedelta(seconds=UNSENT_GRACE_SECONDS))
    unsent = list(unsent)
    send_all(unsent)
    requeued += len(unsent)
    return {"requeued": requeued, "failed": failed}
