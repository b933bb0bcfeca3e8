"""A worker runs a task: it claims the delivery (dropping a stale one), keeps the task's heartbeat fresh while
the run function works, and ends it with the function's outcome. A batch of a queue's tasks runs under one
heartbeat: those of a kind that runs in batches together (a bulk clone's ten clones, set-wise), the others one
after the other."""

import functools
import logging
import operator
import threading
import time
import uuid

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..drivers import DriverError
from ..errors import ServiceError
from ..models import Task
from ..registry import registry
from .ending import fail, finish, roll_up
from .kinds import Progress

log = logging.getLogger(__name__)
stage_log = logging.getLogger("console.core.tasks.stages")  # one line per run: the time of each stage
Status = Task.Status
ROLL_UP_SECONDS = 1.0  # a batch brings its parents up to date this often, and at its end


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
    back after FACET_BROKER_REDELIVER_SECONDS: a worker killed before its claim would leave the tasks queued
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


def run_here(tasks: list[Task]) -> None:
    """Run the tasks in this process, one after the other, as a worker would (`sending_together`'s
    `deliver` where no worker runs yet)."""
    for task in tasks:
        execute(str(task.uuid), task.attempts)


def unexpected_error(what: str) -> str:
    """Log the exception being handled, traceback and all, under a new error id, and return the sentence
    a task shows instead: its readers (Viewers among them) see no file paths, URIs or code."""
    error_id = uuid.uuid4().hex[:12]
    log.exception("%s failed unexpectedly; error id %s", what, error_id)
    return f"The task stopped on an unexpected error; see the worker log, error id {error_id}."
